"""One probe: train one treatment on one task or UCR set within a time budget; print a JSON line.

    export PYTHONPATH=src
    python benchmarks/doctor_research/probe.py adding --length 400 --patch auto --chrono auto
    python benchmarks/doctor_research/probe.py ucr:GunPoint --znorm --patch auto --readout mean

``auto`` settings are the data-derived rules under study:
    patch k   = ceil(T / 50)            (about 50 recurrent steps whatever T is)
    chrono    = ceil(T / k)             (T_max = the length the recurrent layer sees)
Every result (with its validation curve) is appended to benchmarks/doctor_research/results/*.jsonl.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import torch  # noqa: E402
import treat  # noqa: E402

# target "key" (the score the probe ranks by) at which a probe stops early: solved with margin
TARGETS = {"adding": -0.005, "copy": None, "temporal-order-4": 0.995}


def _int_or_auto(v: str) -> str | int | None:
    if v in ("auto", "none"):
        return None if v == "none" else v
    return int(v)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("set", help="adding | copy | temporal-order-4 | ucr:NAME")
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--budget", type=float, default=300.0, help="seconds of training")
    p.add_argument("--eval-s", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cell", default="lstm")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--patch", type=_int_or_auto, default=1)
    p.add_argument("--patch-steps", type=int, default=50, help="target recurrent steps of --patch auto")
    p.add_argument("--chrono", type=_int_or_auto, default=None)
    p.add_argument("--readout", default="last", choices=("last", "mean", "attn"))
    p.add_argument("--bidir", action="store_true")
    p.add_argument("--layer-norm", action="store_true")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clipnorm", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--znorm", action="store_true")
    p.add_argument("--tbptt", type=int, default=None)
    p.add_argument("--val-frac", type=float, default=0.25, help="UCR: share of train held out for validation")
    p.add_argument("--augment", type=int, default=0, help="window-sliced copies per training series")
    p.add_argument("--no-target", action="store_true", help="train the whole budget even when solved")
    p.add_argument("--tag", default="", help="free text stored with the result")
    p.add_argument("--out", default=str(HERE / "results" / "probes.jsonl"))
    return p.parse_args(argv)


def treatment(a: argparse.Namespace, length: int) -> treat.Treatment:
    """Resolve the ``auto`` rules against the sequence length."""
    k = math.ceil(length / a.patch_steps) if a.patch == "auto" else int(a.patch or 1)
    chrono = math.ceil(length / k) if a.chrono == "auto" else a.chrono
    return treat.Treatment(cell=a.cell, units=a.units, depth=a.depth, patch=max(1, k), chrono=chrono,
                           readout=a.readout, bidir=a.bidir, layer_norm=a.layer_norm, lr=a.lr,
                           clipnorm=a.clipnorm, batch=a.batch, znorm=a.znorm, tbptt=a.tbptt,
                           augment=a.augment)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    torch.set_num_threads(1)
    if a.set.startswith("ucr:"):
        d = treat.load_ucr(a.set[4:], val_frac=a.val_frac, seed=a.seed)
        target = None  # a handful of validation series: train the whole budget, keep the best
    else:
        d = treat.load_task(a.set, a.length, a.n_train, seed=0)
        target = TARGETS[a.set]
        if a.set == "copy":
            target = -0.05 * d.baseline
    t = treatment(a, d.xtr.shape[1])
    t0 = time.time()
    r = treat.run(d, t, a.budget, eval_s=a.eval_s, target=None if a.no_target else target, seed=a.seed)
    r.update({"length": int(d.xtr.shape[1]), "baseline": d.baseline, "tag": a.tag,
              "total_s": round(time.time() - t0, 1), "argv": " ".join(sys.argv[1:] if argv is None else argv)})
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(r) + "\n")
    short = {k: v for k, v in r.items() if k not in ("curve", "settings")}
    short["curve_tail"] = r["curve"][-3:]
    print(json.dumps(short), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
