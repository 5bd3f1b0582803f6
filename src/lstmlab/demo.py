"""``lstmlab demo``: plain recurrent models fail a long-lag task, the diagnosis says why, the doctor's
treatment solves it.

The task is temporal order (Hochreiter & Schmidhuber 1997, experiment 6a): in a sequence of T
random symbols two relevant ones (X or Y) appear around 0.1 T and 0.5 T; the class is their order
(XX, XY, YX, YY), so chance is 25 %.  SimpleRNN, GRU and LSTM of equal width get the same budget;
the GradientMonitor samples their gradient flow throughout training and each model's headline
verdict summarises all of its samples ("vanishing in 28/28 samples").  The plain LSTM's diagnosis
goes to the doctor (:func:`lstmlab.doctor.propose`), whose first prescription is trained with the
same budget.  The run directory gets figures, ``index.html``, ``results.json``, the diagnoses and
the models; the last printed line is a JSON summary.

Defaults (T = 100, 64 units, 6,000 sequences, batch 64, Adam 3e-3, clipnorm 1, 6 epochs = 564
steps per model) were checked on a 2-core CPU with seeds 0 and 1: the three plain models stay at
chance, the treated LSTM (patch(2) + chrono) reaches 100 % test accuracy; about 1-3 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .callbacks import Callback
from .cliutil import refuse, standalone
from .config import build_layers
from .data import load
from .demo_page import format_table, plot_decay, plot_gradients, plot_losses, write_html
from .diagnostics import GradientMonitor, diagnose
from .doctor import Diagnosis, apply, facts_from_splits, headline, headline_text, propose
from .doctor.diagnosis import learned
from .engine import fused_module
from .model import Sequential
from .report import write_report
from .run import RunDir
from .run.checkpoint import model_bytes
from .run.files import clean

__all__ = ["DemoSettings", "add_parser", "run", "run_demo"]

MODELS = ("SimpleRNN", "GRU", "LSTM")
DOCTOR = "Doctor"     # the treated LSTM's name in the run directory
SOLVED_ACCURACY = 0.99


@dataclass
class DemoSettings:
    """Everything the demo's budget is made of (the same for every model)."""

    steps: int = 100             # sequence length T
    units: int = 64
    n_train: int = 6000
    n_val: int = 500
    n_test: int = 1000
    batch_size: int = 64
    epochs: int = 6
    learning_rate: float = 3e-3
    clipnorm: float = 1.0
    monitor_every: int = 20      # GradientMonitor sampling interval (steps)
    diagnose_batch: int = 256    # test examples used by diagnose() at start and end
    seed: int = 0
    threads: int = 1             # torch threads: small RNNs gain little from more
    models: tuple[str, ...] = MODELS
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, steps: int | None = None) -> DemoSettings:
        """A tiny version for tests: seconds, not minutes (nothing is expected to be solved)."""
        return cls(steps=steps or 24, units=8, n_train=128, n_val=64, n_test=64, batch_size=64, epochs=2,
                   learning_rate=1e-2, monitor_every=1, diagnose_batch=32)


def engine_for(name: str) -> str:
    """The fastest engine for this cell on the CPU: the compiled fused engine for GRU and SimpleRNN
    (about 2x / 1.3x torch's kernels), "auto" for the LSTM.  Same equations either way."""
    if name in ("GRU", "SimpleRNN"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fused_module() is not None:
                return "fused"
    return "auto"


def _specs(name: str, s: DemoSettings, n_classes: int) -> list[dict]:
    return [{"type": name, "units": s.units, "seed": s.seed, "engine": engine_for(name)},
            {"type": "Dense", "units": n_classes, "activation": "softmax", "seed": s.seed + 1}]


def _model(specs: list[dict], s: DemoSettings, name: str) -> Sequential:
    torch.manual_seed(s.seed)
    model = Sequential(build_layers(specs), name=name.lower())
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", learning_rate=s.learning_rate,
                  clipnorm=s.clipnorm, metrics=["accuracy"])
    return model


class _Steps(Callback):
    """Every training step's loss (for the loss-curve figure) and a line per epoch."""

    def __init__(self, name: str, epochs: int, out) -> None:
        self.name, self.epochs, self.out, self.losses, self.t = name, epochs, out, [], time.time()

    def on_batch_end(self, batch, logs=None):
        self.losses.append(float((logs or {}).get("loss", math.nan)))

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.out(f"  {self.name:<9} epoch {epoch + 1:>2}/{self.epochs}  loss {logs.get('loss', math.nan):.4f}  "
                 f"val accuracy {logs.get('val_accuracy', math.nan):.3f}  ({time.time() - self.t:.1f}s)", flush=True)


def _train_one(name: str, specs: list[dict], s: DemoSettings, data, out) -> dict:
    x, y = (torch.from_numpy(a) for a in (data.train.x, data.train.y))
    vx, vy = (torch.from_numpy(a) for a in (data.val.x, data.val.y))
    tx, ty = (torch.from_numpy(a) for a in (data.test.x, data.test.y))
    dx, dy = tx[:s.diagnose_batch], ty[:s.diagnose_batch]
    t0 = time.time()
    model = _model(specs, s, name)
    model.build(x[:2])
    start = diagnose(model, dx, dy)
    monitor = GradientMonitor(every=s.monitor_every, on_vanishing="ignore", on_exploding="ignore", on_nan="stop",
                              on_slow_loss="ignore", on_param_growth="ignore")
    steps = _Steps(name, s.epochs, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.fit(x, y, epochs=s.epochs, batch_size=s.batch_size, validation_data=(vx, vy),
                         callbacks=[monitor, steps], verbose=0, seed=s.seed)
    train_s = time.time() - t0
    test_loss, test_acc = model.evaluate(tx, ty, batch_size=500)
    end = diagnose(model, dx, dy)
    counts = dict(Counter(r["verdict"] for r in hist.records if r.get("verdict")))
    return {"model": model, "history": hist, "step_losses": steps.losses, "start": start, "end": end,
            "test_loss": float(test_loss), "test_accuracy": float(test_acc), "train_s": train_s,
            "records": list(hist.records), "params": model.count_params(), "counts": counts, "specs": specs}


def prescribe(plain: dict, s: DemoSettings, data) -> tuple[str, list[dict], str]:
    """The doctor's first prescription for the plain LSTM: ``(label, layer specs, reason)``."""
    end = plain["end"]
    facts = facts_from_splits(data)
    h = plain["history"].history
    val = {"loss": h["val_loss"][-1], "accuracy": h["val_accuracy"][-1]}
    diag = Diagnosis(verdict=headline(plain["counts"])[0], counts=plain["counts"], end_verdict=end.verdict,
                     decay=end.worst_decay(), cells=("lstm",), learned=learned(val, facts, "val_accuracy"),
                     clipped=True)
    model_only = ("cell", "series_norm", "patch", "width", "depth", "bidirectional", "layer_norm", "chrono", "readout")
    cand = next((c for c in propose(diag, facts) if c.treatments and all(t.kind in model_only for t in c.treatments)),
                None)  # the demo's training settings are fixed: the first prescription that changes the model
    if cand is None:
        return "plain", plain["specs"], "the diagnosis asks for no treatment"
    treated = apply({"model": {"layers": plain["specs"]}}, facts, cand.treatments)
    return cand.label, treated["model"]["layers"], cand.reason


def _row(name: str, r: dict, label: str | None = None) -> dict:
    verdict, text = headline(r["counts"])[0], headline_text(r["counts"])
    return {"model": name, "label": label or name, "params": r["params"], "test_accuracy": r["test_accuracy"],
            "test_loss": r["test_loss"], "decay_start": r["start"].worst_decay(), "decay_end": r["end"].worst_decay(),
            "verdict_start": r["start"].verdict, "verdict": verdict, "health": text,
            "solved": r["test_accuracy"] >= SOLVED_ACCURACY, "train_s": r["train_s"]}


def _train_all(s: DemoSettings, data, out) -> tuple[dict, dict]:
    n_classes = int(data.meta["n_classes"])
    results: dict[str, dict] = {}
    for name in s.models:
        out(f"training {name} ...", flush=True)
        results[name] = _train_one(name, _specs(name, s, n_classes), s, data, out)
    info = {"label": None, "reason": None}
    if "LSTM" in results:
        label, specs, reason = prescribe(results["LSTM"], s, data)
        info = {"label": label, "reason": reason}
        out(f"the doctor, from the LSTM's diagnosis ({_row('LSTM', results['LSTM'])['health']}): {label} "
            f"({reason}); training it ...", flush=True)
        results[DOCTOR] = _train_one(DOCTOR, specs, s, data, out)
    return results, info


def run_demo(settings: DemoSettings, run_dir: str | Path = "runs/demo", out=print) -> dict:
    """Train the plain models and the doctor's treatment, write the run directory, return the summary."""
    s = settings
    wall0 = time.time()
    rd = RunDir(run_dir)
    rd.root.mkdir(parents=True, exist_ok=True)
    data = load("temporal-order", length=s.steps, classes=4, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test,
                seed=s.seed)
    chance = float(data.meta["baseline"]["accuracy"])
    out(f"lstmlab demo: temporal order, T = {s.steps} (4 classes, chance {chance:.0%}); {', '.join(s.models)} with "
        f"{s.units} units each, then the doctor's treatment; {s.epochs} epochs x "
        f"{math.ceil(s.n_train / s.batch_size)} steps each (batch {s.batch_size}, Adam {s.learning_rate:g}, "
        f"clipnorm {s.clipnorm:g}).", flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(s.threads)))
    try:
        results, info = _train_all(s, data, out)
    finally:
        torch.set_num_threads(threads)
    rows = [_row(n, r, f"LSTM + {info['label']}" if n == DOCTOR else None) for n, r in results.items()]
    return _write(rd, s, data, results, rows, info, chance, wall0, out)


def _write(rd: RunDir, s: DemoSettings, data, results: dict, rows: list[dict], info: dict, chance: float,
           wall0: float, out) -> dict:
    figures = [rd.path(name) for name in rd.DEMO_FIGURES]
    plot_losses(results, rows, s, math.log(4), figures[0])
    plot_gradients(results, rows, s, figures[1])
    plot_decay(results, rows, figures[2])
    for name, r in results.items():
        rd.write_json(rd.diagnose_json(name), {"start": r["start"].to_dict(), "end": r["end"].to_dict()}, indent=None)
        rd.write_bytes(rd.named_model(name), model_bytes(r["model"]))
    wall_s = time.time() - wall0
    write_html(rd, rows, s, chance, info, figures, wall_s)
    out(format_table(rows, chance, SOLVED_ACCURACY), flush=True)
    summary = {"task": "temporal-order", "steps": s.steps,
               "models": {r["model"]: {"test_accuracy": round(r["test_accuracy"], 4), "verdict": r["verdict"],
                                       "health": r["health"], "solved": r["solved"], "label": r["label"],
                                       "decay": None if r["decay_end"] is None else round(r["decay_end"], 3)}
                          for r in rows},
               "treatment": info["label"], "chance_accuracy": chance, "wall_s": round(wall_s, 1),
               "run_dir": str(rd.root)}
    rd.write_json(rd.demo_result, {
        "summary": summary, "settings": {k: v for k, v in vars(s).items() if k != "extra"} | {
            "models": list(results)}, "rows": rows, "history": {n: r["history"].history for n, r in results.items()},
        "records": {n: r["records"] for n, r in results.items()}})
    out(f"wrote {rd.path(rd.DEMO_PAGE)} (figures: {', '.join(p.name for p in figures)}) in {wall_s:.0f} s", flush=True)
    try:  # the full HTML report (curves, gradient health, gates); never fails the run
        out(f"wrote {write_report(rd.root)}", flush=True)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"report: {exc}", RuntimeWarning, stacklevel=2)
    return clean(summary)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab demo``."""
    p = subparsers.add_parser("demo", help="plain RNNs fail a long-lag task, the diagnosis, the doctor's fix "
                                           "(1-3 minutes)", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, metavar="T",
                   help="sequence length T of the temporal-order task (default 100, at least 20)")
    p.add_argument("--quick", action="store_true", help="a tiny run that takes seconds (for tests)")
    p.add_argument("--run-dir", default="runs/demo",
                   help=f"where figures and {RunDir.DEMO_PAGE} go (default runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per model (default 6)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab demo``; the last printed line is the JSON summary."""
    try:
        for arg, low in (("steps", 20), ("epochs", 1)):
            v = getattr(args, arg, None)
            if v is not None and v < low:
                raise ValueError(f"--{arg}: expected an integer >= {low}, got {v}")
        s = DemoSettings.quick(args.steps) if args.quick else DemoSettings()
        if args.steps is not None:
            s.steps = args.steps
        if args.epochs is not None:
            s.epochs = args.epochs
        s.seed = int(getattr(args, "seed", 0) or 0)
        summary = run_demo(s, args.run_dir)
    except (ValueError, OSError) as exc:
        return refuse("demo", exc, args)
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return standalone("demo", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
