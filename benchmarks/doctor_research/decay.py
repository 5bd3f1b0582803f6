"""Gradient decay at initialisation (``ll.diagnose``, log10 of dL/dh over the steps the recurrent
layer sees) for the plain model and each treatment, on every task and set: no training, seconds.

    python benchmarks/doctor_research/decay.py > benchmarks/doctor_research/results/decay.md
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import torch  # noqa: E402
import treat  # noqa: E402

TASKS = [("adding", 400), ("adding", 1000), ("copy", 100), ("temporal-order-4", 100)]
SETS = ["GunPoint", "OSULeaf", "ArrowHead", "Trace", "PickupGestureWiimoteZ_eq", "ACSF1"]


def variants(length: int, units: int) -> dict[str, treat.Treatment]:
    k = max(1, math.ceil(length / 50))
    plain = treat.Treatment(units=units)
    return {"plain": plain, "chrono T": replace(plain, chrono=length), "patch k": replace(plain, patch=k),
            "patch k + chrono T/k": replace(plain, patch=k, chrono=math.ceil(length / k)),
            "mean readout": replace(plain, readout="mean"), "GRU": replace(plain, cell="gru")}


def row(d: treat.Data, units: int) -> str:
    length = d.xtr.shape[1]
    cells = []
    for t in variants(length, units).values():
        model = treat.build_model(t, d.kind, d.n_out, length, seed=0)
        x = treat.znorm(d.xtr) if d.kind == "classification" and d.baseline is None else d.xtr
        model.build(torch.as_tensor(x[:2]))
        v = treat.decay_at_init(model, replace(d, xtr=x), x)
        cells.append(f"{v:.1f}" if isinstance(v, float) else "-")
    return f"| {d.name} | {length} | " + " | ".join(cells) + " |"


def main() -> int:
    torch.set_num_threads(1)
    print("| set | T | " + " | ".join(variants(100, 64)) + " |")
    print("|---|---|" + "---|" * len(variants(100, 64)))
    for name, length in TASKS:
        d = treat.load_task(name, length, n_train=256)
        print(row(d, 128 if name == "copy" else 64), flush=True)
    for name in SETS:
        print(row(treat.load_ucr(name), 64), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
