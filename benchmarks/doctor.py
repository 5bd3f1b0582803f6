"""Doctor benchmarks: one ``lstmlab doctor`` run per row, from a plain config, against a published anchor.

    python benchmarks/doctor.py list                     # the rows
    python benchmarks/doctor.py ROW [--budget-minutes M] # run one row; last line: a JSON object
    python benchmarks/doctor.py ROW --markdown           # ... and print its line of the Doctor table

Task rows (adding T=400 / T=1000, copy T=100, temporal-order-4) start from the same plain configs
as ``benchmarks/tasks.py``: no chrono, no patching set by hand.  ``ucr:NAME`` rows take a long
univariate classification set exported by ``benchmarks/doctor_research/export_ucr.py`` to
``/work/ucr/NAME.npz`` (``--ucr-dir``), write its official train and test splits as long-format CSV
(``id,step,value,label``) and give ``csv-sequences`` the test file as ``test_path`` (validation: a
stratified share of the training file), with a plain ``LSTM(64) + Dense`` config and a 5-minute
budget; the anchor is the 1-NN DTW test accuracy on the same split.  Rows run on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@dataclass(frozen=True)
class Row:
    name: str
    config: str            # the plain config (TOML)
    metric: str            # "test_loss" | "test_accuracy"
    target: float          # solved: below (loss) / at or above (accuracy)
    anchor: str            # the published number, with its source
    budget: float          # minutes


def _task(source: str, body: str, model: str, lr: float) -> str:
    return f"""[data]
source = "{source}"
{body}

[model]
layers = [{model}]

[train]
epochs = 10
batch_size = 64
learning_rate = {lr}
clipnorm = 1.0
"""


_ADD = '{type = "LSTM", units = 64}, {type = "Dense", units = 1}'
ROWS: dict[str, Row] = {r.name: r for r in (
    Row("adding-400", _task("adding", "length = 400\nn_train = 20000\nn_val = 1000\nn_test = 1000", _ADD, 2e-3),
        "test_loss", 0.01, "test MSE < 0.01 (Hochreiter & Schmidhuber 1997 solved the adding problem up to "
        "T = 1000; always answering 1.0 scores 0.167)", 30),
    Row("adding-1000", _task("adding", "length = 1000\nn_train = 20000\nn_val = 1000\nn_test = 1000", _ADD, 2e-3),
        "test_loss", 0.01, "test MSE < 0.01 (Hochreiter & Schmidhuber 1997, T = 1000)", 30),
    Row("copy-100", _task("copy", "length = 100\nn_train = 10000",
                          '{type = "LSTM", units = 128, return_sequences = true}, {type = "Dense"}', 2e-3),
        "test_loss", 0.1 * 10 * math.log(8) / 120, "per-step loss < 10% of the memoryless baseline 10 ln 8 / 120 "
        "= 0.173 (Tallec & Ollivier 2018 solve copy with chrono initialisation)", 30),
    Row("temporal-order-4", _task("temporal-order", "length = 100\nclasses = 4\nn_train = 20000",
                                  '{type = "LSTM", units = 64}, {type = "Dense"}', 3e-3),
        "test_accuracy", 0.99, "test accuracy >= 0.99 (Hochreiter & Schmidhuber 1997, experiment 6a)", 30),
)}

# 1-NN DTW (full window) test accuracy on the official split, computed with sktime's
# KNeighborsTimeSeriesClassifier(distance="dtw") by benchmarks/doctor_research/export_ucr.py
DTW = {"OSULeaf": 0.5909, "ArrowHead": 0.7029, "Trace": 1.0, "PickupGestureWiimoteZ_eq": 0.74, "ACSF1": 0.64,
       "GunPoint": 0.9067, "Coffee": 1.0, "Trace_n5": 0.97, "OSULeaf_n10": 0.467, "BasicMotions": 0.975}


def ucr_row(name: str, ucr_dir: Path, out: Path, seed: int = 0) -> Row:
    """Write the set's official splits as long-format CSV (one value column per channel) and return its row."""
    z = np.load(ucr_dir / f"{name}.npz", allow_pickle=False)
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x, y = z[f"x_{split}"], z[f"y_{split}"]
        names = ["value"] if x.shape[2] == 1 else [f"value{c}" for c in range(x.shape[2])]
        with open(out / f"{name}_{split}.csv", "w", encoding="utf-8") as fh:
            fh.write(f"id,step,{','.join(names)},label\n")
            for i in range(len(x)):
                for t in range(x.shape[1]):
                    if np.isfinite(x[i, t]).all():
                        values = ",".join(f"{float(v):.7g}" for v in x[i, t])
                        fh.write(f"{split}{i},{t},{values},{y[i]}\n")
    config = f"""[data]
source = "csv-sequences"
path = "{name}_train.csv"
test_path = "{name}_test.csv"
time_column = "step"
val_fraction = 0.25
seed = {seed}

[model]
layers = [{{type = "LSTM", units = 64}}, {{type = "Dense"}}]

[train]
epochs = 100
batch_size = 16
learning_rate = 3e-3
seed = {seed}
"""
    dtw = DTW.get(name)
    return Row(f"ucr:{name}", config, "test_accuracy", dtw if dtw is not None else 1.0,
               f"1-NN DTW test accuracy {dtw} (official split)" if dtw is not None else "no DTW number", 5)


def _metric(result: dict, side: str, metric: str) -> float | None:
    part = (result.get(side) or {}).get("test") or {}
    v = part.get(metric.removeprefix("test_"))
    return float(v) if isinstance(v, (int, float)) else None


def run_row(row: Row, budget: float, run_dir: Path, threads: int) -> dict:
    from lstmlab.doctor import DoctorSettings, doctor

    cfg = run_dir / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(row.config, encoding="utf-8")
    t0 = time.time()
    res = doctor(cfg, run_dir / "doctor", budget_minutes=budget, settings=DoctorSettings(threads=threads),
                 out=lambda *a, **k: print(*a, **{**k, "flush": True}))
    full = json.loads((run_dir / "doctor" / "doctor.json").read_text(encoding="utf-8"))  # health, message
    after, before = _metric(res, "after", row.metric), _metric(res, "before", row.metric)
    met = after is not None and (after < row.target if row.metric == "test_loss" else after >= row.target)
    return {"row": row.name, "metric": row.metric, "before": before, "before_verdict": full["before"]["health"],
            "after": after, "after_verdict": full["after"]["health"], "treatment": " + ".join(res["after"]["remedies"])
            or "plain", "target": row.target, "met": met, "anchor": row.anchor, "budget_minutes": budget,
            "wall_s": round(time.time() - t0, 1), "probes": res["probes"], "message": full["message"],
            "run_dir": str(run_dir / "doctor")}


def markdown(r: dict) -> str:
    def num(v):
        return "-" if v is None else f"{v:.4g}"

    return (f"| {r['row']} | {r['metric']} {num(r['before'])} ({r['before_verdict']}) | {r['treatment']} | "
            f"**{num(r['after'])}** ({r['after_verdict']}) | {'met' if r['met'] else 'not met'} | "
            f"{r['wall_s'] / 60:.1f} min (budget {r['budget_minutes']:g}) | {r['anchor']} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("row", help="a row name, ucr:NAME, or 'list'")
    p.add_argument("--budget-minutes", type=float, default=None, help="override the row's budget")
    p.add_argument("--run-root", default=str(ROOT / "runs" / "bench-doctor"), help="where run directories go")
    p.add_argument("--ucr-dir", default="/work/ucr", help="folder of NAME.npz files (x_train, y_train, x_test, y_test)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--markdown", action="store_true", help="also print the Doctor table row")
    p.add_argument("--seed", type=int, default=0, help="ucr rows: the seed of the validation split and of training")
    a = p.parse_args(argv)
    if a.row == "list":
        for row in ROWS.values():
            print(f"{row.name:<18} {row.budget:>4g} min  {row.anchor}")
        print(f"ucr:NAME           5 min  sets in {a.ucr_dir}: {', '.join(sorted(DTW))}")
        return 0
    run_dir = Path(a.run_root) / a.row.replace(":", "-")
    if run_dir.exists() and any(run_dir.iterdir()):
        print(f"doctor.py: error: {run_dir} exists; remove it or choose another --run-root", file=sys.stderr)
        return 2
    if a.row.startswith("ucr:"):
        row = ucr_row(a.row[4:], Path(a.ucr_dir), run_dir, a.seed)
    elif a.row in ROWS:
        row = ROWS[a.row]
    else:
        print(f"doctor.py: error: unknown row {a.row!r} (rows: {', '.join(ROWS)}, ucr:NAME)", file=sys.stderr)
        return 2
    r = run_row(row, a.budget_minutes or row.budget, run_dir, a.threads)
    (run_dir / "row.json").write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    if a.markdown:
        print(markdown(r))
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
