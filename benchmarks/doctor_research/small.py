"""Small training sets: an ensemble of P models (patch + chrono + z-norm) cross-fitted on K folds.

    python benchmarks/doctor_research/small.py ucr:ArrowHead --folds 4 --member-s 40 --augment 9 --tta 5

Member i trains on every fold but fold i (with ``--augment`` window-sliced copies), keeps its
best-on-fold-i weights, and predicts fold i (out-of-fold, OOF) and the test split. The ensemble
averages the members' softmax. One run reports, for the same members:
  - each member alone (member 0 = the round-1 protocol: 75 % train, 25 % validation),
  - the ensemble of the first m members, m = 1..K, with and without test-time crop averaging,
  - the OOF accuracy over all n training series (a selection score with n, not n/4, series).
``--full``: members train on the whole split instead, seeds differ, last weights (no selection).
Appends a JSON line to results/small.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import torch  # noqa: E402
import treat  # noqa: E402


def features(x: np.ndarray, diff: bool) -> np.ndarray:
    """Per-series z-normalised input, plus its first difference as extra channels with ``diff``."""
    z = treat.znorm(x)
    if not diff:
        return z
    d = np.diff(z, axis=1, prepend=z[:, :1])
    return np.concatenate([z, d / max(float(d.std()), 1e-8)], axis=2).astype(np.float32)


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """K disjoint index sets, each class dealt round-robin after a shuffle."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = [[] for _ in range(k)]
    j = 0
    for c in np.unique(y):
        for i in rng.permutation(np.flatnonzero(y == c)):
            out[j % k].append(int(i))
            j += 1
    return [np.sort(np.array(f, dtype=int)) for f in out]


def tta_views(x: np.ndarray, n: int, ratio: float) -> list[np.ndarray]:
    """The series itself plus ``n`` evenly placed ``ratio`` crops stretched to T (test-time averaging)."""
    if n <= 0:
        return [x]
    length = x.shape[1]
    w = max(2, int(round(ratio * length)))
    starts = np.linspace(0, length - w, n).round().astype(int)
    return [x] + [treat.crop_stretch(x, np.full(len(x), s), w) for s in starts]


def proba(model, views: list[np.ndarray]) -> np.ndarray:
    """Mean softmax over the views."""
    return np.mean([model.predict(v, batch_size=256) for v in views], axis=0)


def member(x, y, tr, va, t: treat.Treatment, n_out: int, seconds: float, seed: int):
    """Train one member on rows ``tr`` (augmented), keep the best weights on rows ``va`` (or the last)."""
    ev = va if len(va) else tr  # --full: no held-out rows; the probe then only logs the training fit
    d = treat.Data("m", "classification", x[tr], y[tr], x[ev], y[ev], x[ev], y[ev], n_out)
    model = treat.build_model(t, "classification", n_out, x.shape[1], seed)
    model.build(torch.as_tensor(x[:2]))
    probe = treat.Probe(d, seconds, 2.0, None)
    xa, ya = treat.window_slices(x[tr], y[tr], t.augment, seed=seed)
    model.fit(xa, ya, epochs=100_000, batch_size=t.batch, callbacks=[probe], verbose=0, seed=seed)
    if probe.best_state is not None and len(va):
        model.load_state_dict(probe.best_state)
    return model, model.global_step


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return round(float((p.argmax(1) == y).mean()), 4)


def run(a: argparse.Namespace) -> dict:
    d = treat.load_ucr(a.set.removeprefix("ucr:"), val_frac=0.0)
    x, y = features(d.meta["full_x"].astype(np.float32), a.diff), d.meta["full_y"]
    xte = features(d.xte, a.diff)
    length = x.shape[1]
    k = max(1, math.ceil(length / a.patch_steps))
    t = treat.Treatment(znorm=False, patch=k, chrono=max(3, math.ceil(length / k)), units=a.units,
                        bidir=a.bidir, augment=a.augment, dropout=a.dropout, wd=a.wd, lr=a.lr)
    folds = stratified_folds(y, a.folds, a.seed)
    views = tta_views(xte, a.tta, a.ratio)
    oof = np.zeros((len(y), d.n_out))
    members, p_plain, p_tta = [], [], []
    for i in range(a.members or a.folds):
        va = np.array([], dtype=int) if a.full else folds[i]
        tr = np.arange(len(y)) if a.full else np.setdiff1d(np.arange(len(y)), va)
        t0 = time.time()
        model, steps = member(x, y, tr, va, t, d.n_out, a.member_s, a.seed * 100 + i)
        if len(va):
            oof[va] = proba(model, tta_views(x[va], a.tta, a.ratio))
        p_plain.append(proba(model, views[:1]))
        p_tta.append(proba(model, views))
        members.append({"test": accuracy(p_plain[-1], d.yte), "test_tta": accuracy(p_tta[-1], d.yte),
                        "steps": steps, "s": round(time.time() - t0, 1)})
    covered = oof.sum(1) > 0
    if a.save:
        save = HERE / a.save  # a relative path is taken from this folder
        save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(save, test=np.array(p_plain), test_tta=np.array(p_tta), oof=oof, y=y, y_test=d.yte)
    ens = [accuracy(np.mean(p_plain[:m], 0), d.yte) for m in range(1, len(p_plain) + 1)]
    ens_tta = [accuracy(np.mean(p_tta[:m], 0), d.yte) for m in range(1, len(p_tta) + 1)]
    return {"set": d.name, "n_train": int(len(y)), "length": int(length), "classes": int(d.n_out),
            "treatment": t.label(), "diff": a.diff, "full": a.full, "folds": a.folds, "tta": a.tta,
            "seed": a.seed, "member_s": a.member_s, "members": members, "ensemble": ens, "ensemble_tta": ens_tta,
            "oof": accuracy(oof[covered], y[covered]) if covered.any() else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("set", help="ucr:NAME (an exported /work/ucr/NAME.npz)")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--members", type=int, default=0, help="train only the first M folds' members (0 = all)")
    p.add_argument("--member-s", type=float, default=40.0, help="seconds of training per member")
    p.add_argument("--full", action="store_true", help="members train on the whole split, last weights")
    p.add_argument("--augment", type=int, default=0, help="window-sliced copies per training series")
    p.add_argument("--ratio", type=float, default=0.9, help="crop length / T (slicing and TTA)")
    p.add_argument("--tta", type=int, default=0, help="test-time crops averaged with the series itself")
    p.add_argument("--diff", action="store_true", help="add the first difference as input channels")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--bidir", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--wd", type=float, default=None)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--patch-steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="")
    p.add_argument("--save", default="",
                   help="the members' test / OOF probabilities to this .npz (relative: to this folder)")
    p.add_argument("--out", default=str(HERE / "results" / "small.jsonl"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    r = run(a)
    r.update({"tag": a.tag, "total_s": round(time.time() - t0, 1),
              "argv": " ".join(sys.argv[1:] if argv is None else argv)})
    with open(a.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(r) + "\n")
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
