"""Task benchmarks: one command per row, each a ``lstmlab train`` run plus the row's baselines.

    python benchmarks/tasks.py list             # the rows, cheapest first
    python benchmarks/tasks.py ROW [--quick]    # run one row; last line: a JSON object
    python benchmarks/tasks.py ROW --markdown   # ... and print the row for benchmarks/RESULTS.md

Each row writes its config (``config.toml``) and the usual run directory under
``runs/bench/ROW`` (``--run-root``).  ``--quick`` shrinks data and epochs to a smoke test (the
numbers then mean nothing).  Rows run on one CPU thread by default (``--threads``): small
recurrent nets gain little from more, and one thread stays fast when the CPU is shared.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


@dataclass
class Row:
    """One benchmark row: a config, what to report and what the literature says."""

    name: str
    title: str
    config: str                      # TOML with [data], [model], [train]
    metric: str                      # key of the result reported as "ours"
    published: str                   # the published number (text, with its setting)
    source: str                      # where it comes from
    quick: dict = field(default_factory=dict)  # replacements (old -> new) for --quick
    extra: Callable[[Any, dict], dict] | None = None  # row-specific numbers (baselines)
    judge: Callable[[dict], str] | None = None         # one-word verdict vs the target
    cost: str = ""                   # rough wall time on a 2-core CPU


def _adding(t: int, n_train: int, epochs: int) -> str:
    return f"""
[data]
source = "adding"
length = {t}
n_train = {n_train}
n_val = 1000
n_test = 1000

[model]
layers = [{{type = "LSTM", units = 64}}, {{type = "Dense", units = 1}}]

[train]
epochs = {epochs}
batch_size = 64
learning_rate = 2e-3
clipnorm = 1.0
"""


def _seasonal_naive(period: int) -> Callable[[Any, dict], dict]:
    """RMSE / MAE (original units) of 'same as one period ago', on the test windows.

    The inputs are the last ``window`` values of the series (scaled); ``x[:, -period]`` is the
    value one period before the target, mapped back with the feature scaler.
    """

    def extra(splits, result: dict) -> dict:
        fc = (result.get("test") or {}).get("forecast") or {}
        if fc.get("seasonal_period") == period:  # lstmlab's own baseline, in original units
            return {f"seasonal_naive_{period}_rmse": fc["seasonal_naive_rmse"],
                    f"seasonal_naive_{period}_mae": fc["seasonal_naive_mae"], "test_points": fc["windows"]}
        opts = splits.meta["options"]
        if splits.test.x.shape[1] < period or opts.get("transform", "none") != "none":
            from lstmlab.data import load  # same split, untransformed, a window that reaches back a period

            opts = dict(opts, window=max(period, splits.test.x.shape[1]), transform="none")
            splits = load(splits.meta["loader"], **opts)
        test = splits.test
        meta = splits.meta
        fx, fy = meta["feature_scaler"], meta["scaler"]
        col = fx.columns.index(fy.columns[0])
        prev = fx.inverse_transform(test.x[:, -period, :])[:, col]
        true = fy.inverse_transform(test.y)[:, 0]
        return {f"seasonal_naive_{period}_rmse": float(np.sqrt(np.mean((prev - true) ** 2))),
                f"seasonal_naive_{period}_mae": float(np.mean(np.abs(prev - true))),
                "test_points": int(len(true))}

    return extra


def _below(key: str, limit: float) -> Callable[[dict], str]:
    return lambda r: "solved" if r.get(key) is not None and r[key] < limit else "not solved"


def _beats(key: str, other: str) -> Callable[[dict], str]:
    def judge(r: dict) -> str:
        if r.get(key) is None or r.get(other) is None:
            return "?"
        return "beats it" if r[key] < r[other] else "worse"

    return judge


ROWS: dict[str, Row] = {}


def _row(row: Row) -> None:
    ROWS[row.name] = row


_row(Row(
    "digits", "scikit-learn digits (8 steps x 8 pixels), test accuracy", """
[data]
source = "digits"

[model]
layers = [{type = "LSTM", units = 64}, {type = "Dense"}]

[train]
epochs = 40
batch_size = 32
learning_rate = 3e-3
clipnorm = 1.0
""", "test_accuracy", "0.97 (SVC, 50/50 split; no standard LSTM number for the 8x8 set)",
    "scikit-learn example 'Recognizing hand-written digits' (plot_digits_classification)",
    quick={"epochs = 40": "epochs = 1"}, cost="~30 s"))

_row(Row(
    "japanese-vowels", "JapaneseVowels speaker id (270 train / 370 test), test accuracy", """
[data]
source = "japanese-vowels"
scale = "standard"

[model]
layers = [{type = "LSTM", units = 64}, {type = "Dense"}]

[train]
epochs = 60
batch_size = 16
learning_rate = 3e-3
clipnorm = 1.0
""", "test_accuracy",
    "0.9886 (ensemble of 11 LSTMs, resampled to 26 steps); 0.941 (Kudo et al. 1999, original method)",
    "Jap_Speak_Recog (Univ. Groningen ML course project, github.com/postnubilaphoebus/Jap_Speak_Recog); "
    "Kudo, Toyama & Shimbo, Pattern Recognition Letters 20 (1999)",
    quick={"epochs = 60": "epochs = 1"}, cost="~30 s"))

_row(Row(
    "airline", "Airline passengers, Brownlee's 67/33 split (96 train / 48 test months), test RMSE "
               "in thousands of passengers", """
[data]
source = "airline"
window = 12               # one year; transform = "auto" (default) picks log+seasonal-diff
val_fraction = 0.0
test_fraction = 0.33
scale = "minmax"

[model]
layers = [{type = "LSTM", units = 32}, {type = "Dense"}]

[train]
epochs = 300
batch_size = 8
learning_rate = 3e-3
clipnorm = 1.0
""", "test_rmse", "47.53 (LSTM(4), look_back=1, 100 epochs, batch 1; scaler fitted on all 144 months)",
    "J. Brownlee, 'Time Series Prediction with LSTM Recurrent Neural Networks in Python with Keras', "
    "machinelearningmastery.com (2016)",
    quick={"epochs = 300": "epochs = 2"}, extra=_seasonal_naive(12),
    judge=_beats("test_rmse", "seasonal_naive_12_rmse"), cost="~30 s"))

_row(Row(
    "sunspots", "Yearly sunspots 1700-2008 (last 15% = 46 years as test), test RMSE", """
[data]
source = "sunspots"
window = 22
scale = "standard"

[model]
layers = [{type = "LSTM", units = 32}, {type = "Dense"}]

[train]
epochs = 200
batch_size = 16
learning_rate = 2e-3
clipnorm = 1.0
[train.early_stopping]
patience = 40
""", "test_rmse", "no LSTM reference on this split; compared with the seasonal-naive (11-year) forecast",
    "-", quick={"epochs = 200": "epochs = 2"}, extra=_seasonal_naive(11),
    judge=_beats("test_rmse", "seasonal_naive_11_rmse"), cost="~40 s"))

_row(Row(
    "temporal-order-4", "Temporal order, 4 classes (task 6a), T=100, test accuracy", """
[data]
source = "temporal-order"
length = 100
classes = 4
n_train = 20000

[model]
layers = [{type = "LSTM", units = 64}, {type = "Dense"}]

[train]
epochs = 10
batch_size = 64
learning_rate = 3e-3
clipnorm = 1.0
""", "test_accuracy",
    "solved (all test sequences right, error < 0.3) after 31,390 training sequences on average",
    "Hochreiter & Schmidhuber 1997, Neural Computation 9(8), experiment 6a",
    quick={"epochs = 10": "epochs = 1", "n_train = 20000": "n_train = 256"},
    judge=lambda r: "solved" if (r.get("test_accuracy") or 0) >= 0.99 else "not solved", cost="~3 min"))

_row(Row(
    "temporal-order-4-chrono", "Temporal order, 4 classes (6a), T=100, LSTM with chrono initialisation "
                               "(forget-gate biases for lags up to 100), test accuracy", """
[data]
source = "temporal-order"
length = 100
classes = 4
n_train = 20000

[model]
layers = [{type = "LSTM", units = 64, bias_initializer = "chrono", chrono_max_len = 100}, {type = "Dense"}]

[train]
epochs = 10
batch_size = 64
learning_rate = 3e-3
clipnorm = 1.0
""", "test_accuracy", "solved after 31,390 training sequences on average (original LSTM)",
    "Hochreiter & Schmidhuber 1997, experiment 6a; chrono init: Tallec & Ollivier 2018, 'Can recurrent "
    "neural networks warp time?'",
    quick={"epochs = 10": "epochs = 1", "n_train = 20000": "n_train = 256"},
    judge=lambda r: "solved" if (r.get("test_accuracy") or 0) >= 0.99 else "not solved", cost="~3 min"))

_row(Row(
    "adding-100", "Adding problem T=100 (LSTM 64), test MSE; solved < 0.01, baseline 0.167",
    _adding(100, 10000, 20), "test_mse",
    "solved: T=100 after 74,000 training sequences (criterion: absolute error < 0.04 on 2,000 in a row)",
    "Hochreiter & Schmidhuber 1997, experiment 4 (adding problem)",
    quick={"epochs = 20": "epochs = 1", "n_train = 10000": "n_train = 256"},
    judge=_below("test_mse", 0.01), cost="~1 min"))

_row(Row(
    "copy-100", "Copy memory T=100 (10 symbols, 8 categories), test cross-entropy per step vs the "
                "memoryless baseline 10 ln 8 / 120 = 0.173", """
[data]
source = "copy"
length = 100
n_train = 10000

[model]
layers = [{type = "LSTM", units = 128, return_sequences = true}, {type = "Dense"}]

[train]
epochs = 10
batch_size = 64
learning_rate = 2e-3
clipnorm = 1.0
""", "test_loss", "baseline 0.173 nats/step (T=100); LSTMs are reported to plateau at the baseline for long "
                  "lags",
    "Arjovsky, Shah & Bengio 2016, 'Unitary Evolution RNNs' (copying memory problem, baseline formula)",
    quick={"epochs = 10": "epochs = 1", "n_train = 10000": "n_train = 256"},
    judge=lambda r: "below baseline" if r.get("test_loss") is not None and r["test_loss"] < 0.9 * 0.1733
    else "at baseline", cost="~2 min"))

_row(Row(
    "temporal-order-8", "Temporal order, 8 classes (task 6b), T=100, test accuracy", """
[data]
source = "temporal-order"
length = 100
classes = 8
n_train = 20000

[model]
layers = [{type = "LSTM", units = 64}, {type = "Dense"}]

[train]
epochs = 10
batch_size = 64
learning_rate = 3e-3
clipnorm = 1.0
""", "test_accuracy", "solved after 571,100 training sequences on average",
    "Hochreiter & Schmidhuber 1997, experiment 6b",
    quick={"epochs = 10": "epochs = 1", "n_train = 20000": "n_train = 256"},
    judge=lambda r: "solved" if (r.get("test_accuracy") or 0) >= 0.99 else "not solved", cost="~3 min"))

_row(Row(
    "adding-200", "Adding problem T=200 (LSTM 64), test MSE; solved < 0.01",
    _adding(200, 20000, 12), "test_mse",
    "LSTM reaches ~0 MSE at T=200 and longer in Arjovsky et al. 2016 (adding-problem figure; quoted from "
    "memory, not re-checked); T=500 after 209,000 sequences in Hochreiter & Schmidhuber 1997",
    "Arjovsky, Shah & Bengio 2016; Hochreiter & Schmidhuber 1997",
    quick={"epochs = 12": "epochs = 1", "n_train = 20000": "n_train = 256"},
    judge=_below("test_mse", 0.01), cost="~5 min"))

_row(Row(
    "char-lm", "Character LM on Debian fortunes (first 400k characters), test bits per character", """
[data]
source = "fortunes"
max_chars = 400000
seq_len = 100

[model]
layers = [{type = "Embedding", output_dim = 32}, {type = "LSTM", units = 256, return_sequences = true},
          {type = "Dense"}]

[train]
epochs = 10
batch_size = 32
learning_rate = 3e-3
clipnorm = 1.0
""", "test_bits_per_char", "no published number for this corpus; the unigram baseline is given, and "
                           "char-LSTMs on English prose typically reach ~1.5-2 bpc with enough training",
    "unigram baseline computed by lstmlab.data; Graves 2013 'Generating Sequences with RNNs' for the "
    "range on larger corpora",
    quick={"epochs = 10": "epochs = 1", "max_chars = 400000": "max_chars = 20000"},
    judge=_beats("test_bits_per_char", "unigram_bits_per_char"), cost="~6 min"))

_row(Row(
    "adding-400", "Adding problem T=400 (LSTM 64), test MSE; solved < 0.01",
    _adding(400, 20000, 12), "test_mse",
    "LSTM reaches ~0 MSE at T=400 in Arjovsky et al. 2016 (adding-problem figure; quoted from memory)",
    "Arjovsky, Shah & Bengio 2016",
    quick={"epochs = 12": "epochs = 1", "n_train = 20000": "n_train = 256"},
    judge=_below("test_mse", 0.01), cost="~10 min"))


# ---------------------------------------------------------------------------------------------
def _flatten(result: dict) -> dict:
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        for k, v in (result.get(split) or {}).items():
            name = {"loss": "loss", "accuracy": "accuracy", "bits_per_char": "bits_per_char",
                    "rmse_original_units": "rmse", "mae_original_units": "mae"}.get(k, k)
            out[f"{split}_{name}"] = v
    return out


def run_row(row: Row, quick: bool, run_root: Path) -> dict:
    """Train the row's config with ``lstmlab train`` and collect its numbers."""
    from lstmlab.train import _clean, load_data, train

    text = row.config
    if quick:
        for old, new in row.quick.items():
            text = text.replace(old, new)
    run_dir = run_root / (row.name + ("-quick" if quick else ""))
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cfg = run_dir / "config.toml"
    cfg.write_text(text.lstrip(), encoding="utf-8")
    t0 = time.time()
    result = train(cfg, run_dir / "run", out=lambda *a, **k: print(*a, **{**k, "flush": True}))
    wall = time.time() - t0
    flat = _flatten(result)
    if "test_loss" in flat and row.metric == "test_mse":
        flat["test_mse"] = flat["test_loss"]
    base = result.get("baseline") or {}
    if "unigram_test_cross_entropy" in base:
        flat["unigram_bits_per_char"] = base["unigram_test_cross_entropy"] / math.log(2)
    if "persistence_test_rmse" in base:
        flat["persistence_rmse"] = base["persistence_test_rmse"]
    if row.extra is not None:
        from lstmlab.config import load_config

        splits = load_data(load_config(cfg))
        flat.update(row.extra(splits, result))
    out = {"row": row.name, "quick": quick, "ours": flat.get(row.metric), "metric": row.metric,
           "published": row.published, "source": row.source, "status": result["status"],
           "epochs": result["epochs"], "wall_s": round(wall, 1), "numbers": flat,
           "command": f"python benchmarks/tasks.py {row.name}" + (" --quick" if quick else ""),
           "run_dir": str(run_dir / "run")}
    if row.judge is not None:
        out["verdict"] = row.judge(flat)
    (run_dir / "row.json").write_text(json.dumps(_clean(out), indent=1) + "\n")
    return _clean(out)


def markdown(r: dict, row: Row) -> str:
    """One table row for the '## Tasks' section of benchmarks/RESULTS.md."""
    ours = r["ours"]
    shown = "-" if ours is None else f"{ours:.4g}"
    nums = r["numbers"]
    extra = [f"{k} {v:.4g}" for k, v in nums.items() if isinstance(v, float) and "mae" not in k
             and ("naive" in k or "persistence" in k or "unigram" in k)]
    verdict = r.get("verdict", "")
    more = f" ({'; '.join(extra)})" if extra else ""
    return (f"| {row.name} | `{r['command']}` | {row.metric} = **{shown}**{more} | {verdict} | "
            f"{row.published} | {row.source} | {r['wall_s']:.0f} s |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("row", help="a row name, or 'list'")
    p.add_argument("--quick", action="store_true", help="tiny data and 1-2 epochs (smoke test)")
    p.add_argument("--run-root", default=str(ROOT / "runs" / "bench"), help="where run directories go")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--markdown", action="store_true", help="also print the RESULTS.md table row")
    args = p.parse_args(argv)
    if args.row == "list":
        for row in ROWS.values():
            print(f"{row.name:<18} {row.cost:>8}  {row.title}")
        return 0
    if args.row not in ROWS:
        import difflib

        close = difflib.get_close_matches(args.row, list(ROWS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"tasks.py: error: unknown row {args.row!r}{hint} (rows: {', '.join(ROWS)})", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, args.threads))
    row = ROWS[args.row]
    r = run_row(row, args.quick, Path(args.run_root))
    if args.markdown:
        print(markdown(r, row))
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
