"""``lstmlab demo``: SimpleRNN vs GRU vs LSTM on the adding problem, with gradient flow shown.

Three models of equal width get the same budget (data, epochs, batch size, optimizer, learning
rate, clipping) on the adding problem (Hochreiter & Schmidhuber 1997): two numbers marked in a
sequence of T random values must be added; always answering 1.0 scores MSE 1/6 ~= 0.167.  Gradient
flow is measured with :func:`lstmlab.diagnose` before and after training and sampled during
training by :class:`lstmlab.diagnostics.GradientMonitor`.  The run directory gets figures, an
``index.html`` page that embeds them, ``results.json`` and the diagnostics; the last printed
line is a JSON summary.

Defaults (T=100, 64 units, 10k examples, batch 64, Adam 2e-3, clipnorm 1, 20 epochs = 3140
steps) were measured on a 2-core CPU: the LSTM drops below MSE 0.01 after ~1900 steps and reaches
~1e-3 by the end; the whole demo takes 2-3 minutes there (see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .callbacks import Callback
from .data import load
from .diagnostics import GradientMonitor, detectors, diagnose
from .engine import fused_module
from .layers import GRU, LSTM, Dense, SimpleRNN
from .model import Sequential
from .report import write_report
from .run import RunDir
from .run.checkpoint import model_bytes
from .run.files import clean

__all__ = ["DemoSettings", "add_parser", "run", "run_demo"]

MODELS = ("SimpleRNN", "GRU", "LSTM")
SOLVED_MSE = 0.01


@dataclass
class DemoSettings:
    """Everything the demo's budget is made of (the same for every model)."""

    steps: int = 100             # sequence length T
    units: int = 64
    n_train: int = 10000
    n_val: int = 500
    n_test: int = 1000
    batch_size: int = 64
    epochs: int = 20
    learning_rate: float = 2e-3
    clipnorm: float = 1.0
    monitor_every: int = 100     # GradientMonitor sampling interval (steps)
    diagnose_batch: int = 256    # test examples used by diagnose() at start and end
    seed: int = 0
    threads: int = 1             # torch threads: small RNNs gain little from more, and one thread
    #                              stays fast when other programs share the CPU
    models: tuple[str, ...] = MODELS
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, steps: int | None = None) -> DemoSettings:
        """A tiny version for tests: seconds, not minutes (nothing is expected to be solved)."""
        return cls(steps=steps or 20, units=8, n_train=256, n_val=64, n_test=64, batch_size=64, epochs=2,
                   learning_rate=1e-2, monitor_every=2, diagnose_batch=32)


# ---------------------------------------------------------------------------------------------
# one model
# ---------------------------------------------------------------------------------------------
class _StepLosses:
    """Callback collecting every training step's loss (for the loss-curve figure)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        outer = self

        class _CB(Callback):
            def on_batch_end(self, batch, logs=None):
                outer.losses.append(float((logs or {}).get("loss", math.nan)))

        self.callback = _CB()


def engine_for(name: str) -> str:
    """The fastest engine for this cell on the CPU (measured: B=64, T=100, H=64, one thread).

    The compiled fused engine runs GRU and SimpleRNN steps about 2x / 1.3x faster than torch's
    native CPU kernels; for the LSTM the native kernel is the fastest.  Same equations either way.
    """
    if name in ("GRU", "SimpleRNN"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fused_module() is not None:
                return "fused"
    return "auto"


def _build(name: str, s: DemoSettings) -> Sequential:
    torch.manual_seed(s.seed)
    cls = {"SimpleRNN": SimpleRNN, "GRU": GRU, "LSTM": LSTM}[name]
    layer = cls(s.units, seed=s.seed, engine=engine_for(name))
    model = Sequential([layer, Dense(1, seed=s.seed + 1)], name=name.lower())
    model.compile(loss="mse", optimizer="adam", learning_rate=s.learning_rate, clipnorm=s.clipnorm)
    return model


def _profile(report, which: str = "dL_dh") -> list[float] | None:
    name = next(iter(report.per_step), None)
    if name is None:
        return None
    prof = report.profile(name) if which == "dL_dh" else report.per_step[name].get(which)
    return None if prof is None else [float(v) for v in prof]


def _train_one(name: str, s: DemoSettings, data, out) -> dict:
    x, y = (torch.from_numpy(a) for a in (data.train.x, data.train.y))
    vx, vy = (torch.from_numpy(a) for a in (data.val.x, data.val.y))
    tx, ty = (torch.from_numpy(a) for a in (data.test.x, data.test.y))
    dx, dy = tx[:s.diagnose_batch], ty[:s.diagnose_batch]
    t0 = time.time()
    model = _build(name, s)
    model.build(x[:2])
    start = diagnose(model, dx, dy)
    monitor = GradientMonitor(every=s.monitor_every, on_vanishing="ignore", on_exploding="ignore",
                              on_nan="stop", on_slow_loss="ignore", on_param_growth="ignore")
    steps = _StepLosses()

    class _Progress(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            out(f"  {name:<9} epoch {epoch + 1:>2}/{s.epochs}  loss {logs.get('loss', math.nan):.4f}  "
                f"val MSE {logs.get('val_loss', math.nan):.4f}  ({time.time() - self.t:.1f}s)", flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.fit(x, y, epochs=s.epochs, batch_size=s.batch_size, validation_data=(vx, vy),
                         callbacks=[monitor, steps.callback, _Progress()], verbose=0, seed=s.seed)
    train_s = time.time() - t0
    test_mse = float(model.evaluate(tx, ty, batch_size=500))
    end = diagnose(model, dx, dy)
    return {"model": model, "history": hist, "step_losses": steps.losses, "start": start, "end": end,
            "test_mse": test_mse, "train_s": train_s, "records": list(hist.records),
            "params": model.count_params()}


# ---------------------------------------------------------------------------------------------
# figures and page
# ---------------------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


COLORS = {"SimpleRNN": "C3", "GRU": "C2", "LSTM": "C0"}


def _smooth(v: list[float], k: int) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if len(a) < k or k <= 1:
        return a
    c = np.cumsum(np.insert(np.nan_to_num(a, nan=0.0), 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([np.full(k - 1, np.nan), out])


def plot_losses(results: dict, s: DemoSettings, baseline: float, path: Path) -> None:
    """Training loss per step (smoothed) and validation MSE per epoch, all models, log scale."""
    fig = _figure(8.5, 4.6)
    ax = fig.subplots()
    steps_per_epoch = math.ceil(s.n_train / s.batch_size)
    k = max(1, min(50, steps_per_epoch // 2))
    for name, r in results.items():
        c = COLORS.get(name, None)
        v = _smooth(r["step_losses"], k)
        ax.plot(np.arange(1, len(v) + 1), v, color=c, lw=1.3, alpha=0.85,
                label=f"{name} train (mean of {k} steps)")
        val = r["history"].history.get("val_loss", [])
        ax.plot(np.arange(1, len(val) + 1) * steps_per_epoch, val, "o--", color=c, ms=3.5, lw=0.8,
                label=f"{name} validation")
    ax.axhline(baseline, color="0.4", ls=":", lw=1.2, label=f"baseline: always 1.0 (MSE {baseline:.3f})")
    ax.axhline(SOLVED_MSE, color="k", ls="-.", lw=0.8, label=f"solved (MSE {SOLVED_MSE})")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("MSE")
    ax.set_title(f"Adding problem, T = {s.steps}: same budget for every model")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    RunDir.save_figure(fig, path, dpi=110)


def _positive(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def plot_gradients(results: dict, s: DemoSettings, path: Path) -> None:
    """||dL/dh_t|| vs t (log scale) per model, before and after training."""
    fig = _figure(10.0, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, when, title in ((axes[0], "start", "before training"), (axes[1], "end", "after training")):
        for name, r in results.items():
            rep = r[when]
            prof = _profile(rep)
            if prof is None:
                continue
            d = rep.worst_decay()
            tag = f" ({rep.verdict}, 10^{d:+.1f})" if d is not None else f" ({rep.verdict})"
            ax.plot(np.arange(1, len(prof) + 1), _positive(prof), color=COLORS.get(name), lw=1.6,
                    label=f"{name}{tag}")
        ax.set_yscale("log")
        ax.set_xlabel("time step t")
        ax.set_title(f"||dL/dh_t||, {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("gradient norm (log scale)")
    fig.suptitle(f"Gradient reaching each step from the loss at t = {s.steps} "
                 f"(diagnose on {s.diagnose_batch} test sequences)", fontsize=10)
    RunDir.save_figure(fig, path, dpi=110)


def plot_decay(results: dict, s: DemoSettings, path: Path) -> None:
    """GradientMonitor samples: log10(||dL/dh_1|| / ||dL/dh_T||) over training, per model."""
    fig = _figure(8.5, 3.6)
    ax = fig.subplots()
    for name, r in results.items():
        recs = [rec for rec in r["records"] if rec.get("decay") is not None]
        if recs:
            ax.plot([rec["step"] for rec in recs], [rec["decay"] for rec in recs], ".-",
                    color=COLORS.get(name), label=name)
    lo = math.log10(detectors.VANISHING_RATIO)
    ax.axhline(lo, color="C3", ls=":", lw=1, label=f"vanishing below 10^{lo:.0f}")
    ax.set_xlabel("training step")
    ax.set_ylabel("log10 ||dL/dh_1|| / ||dL/dh_T||")
    ax.set_title("Temporal decay of the gradient during training (GradientMonitor)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    RunDir.save_figure(fig, path, dpi=110)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(run_dir: Path, rows: list[dict], s: DemoSettings, baseline: float, figures: list[Path],
               wall_s: float) -> Path:
    """A self-contained page (figures embedded as base64, no network)."""
    head = ("model", "parameters", "test MSE", "MSE / baseline", "decay before", "decay after", "verdict",
            "solved", "train time")
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r["model"], f"{r['params']:,}", f"{r['test_mse']:.4f}", f"{r['test_mse'] / baseline:.3f}",
            _fmt_decay(r["decay_start"]), _fmt_decay(r["decay_end"]), r["verdict"],
            "yes" if r["solved"] else "no", f"{r['train_s']:.0f} s")) + "</tr>"
        for r in rows)
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + body + "</table>"
    figs = "".join(f"<figure>{_img(p)}</figure>" for p in figures)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lstmlab demo: adding problem, T = {s.steps}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em;
       color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; font-weight: 600; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>RNN vs GRU vs LSTM on the adding problem (T = {s.steps})</h1>
<p>Each input is a sequence of {s.steps} random numbers with two of them marked; the target is
their sum. A model without memory can do no better than always answering 1.0, which scores
MSE = 1/6 &asymp; {baseline:.3f}. A model that solves the task has to carry the first marked number
across up to {s.steps} steps.</p>
<p>Same budget for every model: {s.units} units, {s.n_train:,} training sequences, {s.epochs} epochs of
batch {s.batch_size} ({s.epochs * math.ceil(s.n_train / s.batch_size):,} steps), Adam with learning rate
{s.learning_rate:g}, <code>clipnorm={s.clipnorm:g}</code>, seed {s.seed}. Test set: {s.n_test:,}
sequences. Solved means test MSE &lt; {SOLVED_MSE}.</p>
{table}
<p><b>Decay</b> is log10(||dL/dh<sub>1</sub>|| / ||dL/dh<sub>T</sub>||): how many decades the gradient
loses on its way back from the last step to the first (diagnose on {s.diagnose_batch} test sequences).
Below &minus;3 the verdict is <i>vanishing</i>: what happened at the start of the sequence can no longer
shape the weights. {_story(rows)}</p>
{figs}
<p style="color:#777">Generated by <code>lstmlab demo</code> in {wall_s:.0f} s.</p>
</body></html>
"""
    return RunDir.write_text(RunDir(run_dir).path(RunDir.DEMO_PAGE), page)


def _story(rows: list[dict]) -> str:
    """One or two sentences that say what this run showed."""
    by = {r["model"]: r for r in rows}
    parts = []
    start_vanish = [r["model"] for r in rows if r["verdict_start"] == "vanishing"]
    if start_vanish:
        parts.append(f"Before training the gradient vanishes in {', '.join(start_vanish)}.")
    solved = [r["model"] for r in rows if r["solved"]]
    failed = [r["model"] for r in rows if not r["solved"]]
    healed = [m for m in solved if by[m]["verdict"] == "healthy"]
    if healed:
        parts.append(f"Training opens a path for it in {', '.join(healed)} (the gates learn to keep "
                     "information, the LSTM's cell state carries it), and they solve the task.")
    if failed:
        still = [m for m in failed if by[m]["verdict"] == "vanishing"]
        parts.append(f"{', '.join(failed)} stay{'s' if len(failed) == 1 else ''} near the baseline"
                     + (f"; {', '.join(still)} still loses the gradient on the way back." if still else "."))
    return " ".join(parts)


def _fmt_decay(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}"


# ---------------------------------------------------------------------------------------------
# the demo
# ---------------------------------------------------------------------------------------------
def run_demo(settings: DemoSettings, run_dir: str | Path = "runs/demo", out=print) -> dict:
    """Train the three models, write the run directory, return the summary dict."""
    s = settings
    wall0 = time.time()
    rd = RunDir(run_dir)
    run_dir = rd.root
    run_dir.mkdir(parents=True, exist_ok=True)
    data = load("adding", length=s.steps, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test, seed=s.seed)
    baseline = float(data.meta["baseline"]["mse"])
    baseline_test = float(data.meta["baseline"]["test_mse"])
    n_steps = s.epochs * math.ceil(s.n_train / s.batch_size)
    out(f"lstmlab demo: adding problem, T = {s.steps}; SimpleRNN, GRU and LSTM with {s.units} units each, "
        f"{s.epochs} epochs x {math.ceil(s.n_train / s.batch_size)} steps (batch {s.batch_size}, Adam "
        f"{s.learning_rate:g}, clipnorm {s.clipnorm:g}). Baseline (always 1.0): MSE {baseline:.3f}.",
        flush=True)
    results: dict[str, dict] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(s.threads)))
    try:
        for name in s.models:
            out(f"training {name} ...", flush=True)
            results[name] = _train_one(name, s, data, out)
    finally:
        torch.set_num_threads(threads)
    rows = []
    for name, r in results.items():
        rows.append({"model": name, "params": r["params"], "test_mse": r["test_mse"],
                     "decay_start": r["start"].worst_decay(), "decay_end": r["end"].worst_decay(),
                     "verdict_start": r["start"].verdict, "verdict": r["end"].verdict,
                     "solved": r["test_mse"] < SOLVED_MSE, "train_s": r["train_s"]})
    figures = [rd.path(name) for name in rd.DEMO_FIGURES]
    plot_losses(results, s, baseline, figures[0])
    plot_gradients(results, s, figures[1])
    plot_decay(results, s, figures[2])
    for name, r in results.items():
        reports = {"start": r["start"].to_dict(), "end": r["end"].to_dict()}
        rd.write_json(rd.diagnose_json(name), reports, indent=None)
        rd.write_bytes(rd.named_model(name), model_bytes(r["model"]))
    wall_s = time.time() - wall0
    write_html(run_dir, rows, s, baseline, figures, wall_s)
    table = format_table(rows, baseline, baseline_test)
    out(table, flush=True)
    summary = {"task": "adding", "steps": s.steps,
               "models": {r["model"]: {"test_mse": round(r["test_mse"], 6), "verdict": r["verdict"],
                                       "decay": None if r["decay_end"] is None else round(r["decay_end"], 3),
                                       "solved": r["solved"]} for r in rows},
               "baseline_mse": round(baseline, 6), "train_steps": n_steps, "wall_s": round(wall_s, 1),
               "run_dir": str(run_dir)}
    rd.write_json(rd.demo_result, {
        "summary": summary, "settings": {k: v for k, v in vars(s).items() if k != "extra"},
        "rows": rows, "history": {n: r["history"].history for n, r in results.items()},
        "records": {n: r["records"] for n, r in results.items()}})
    out(f"wrote {rd.path(rd.DEMO_PAGE)} (figures: {', '.join(p.name for p in figures)}) in {wall_s:.0f} s",
        flush=True)
    try:  # the full HTML report (curves, gradient health, gates); never fails the run
        out(f"wrote {write_report(run_dir)}", flush=True)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"report: {exc}", RuntimeWarning, stacklevel=2)
    return clean(summary)


def format_table(rows: list[dict], baseline: float, baseline_test: float | None = None) -> str:
    head = ("model", "params", "test MSE", "vs baseline", "decay before", "decay after", "verdict", "solved")
    lines = [head]
    for r in rows:
        ratio = f"{r['test_mse'] / baseline:.3f}x"
        lines.append((r["model"], f"{r['params']:,}", f"{r['test_mse']:.4f}", ratio,
                      _fmt_decay(r["decay_start"]), _fmt_decay(r["decay_end"]), r["verdict"],
                      "yes" if r["solved"] else "no"))
    w = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
    text = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * x for x in w))
    note = f"baseline (always predict 1.0): MSE {baseline:.3f}"
    if baseline_test is not None:
        note += f" (on this test set {baseline_test:.3f})"
    note += f"; solved = test MSE < {SOLVED_MSE}; decay = log10 ||dL/dh_1|| / ||dL/dh_T||, vanishing below -3"
    return "\n".join(text + [note])


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab demo``."""
    p = subparsers.add_parser("demo", help="SimpleRNN vs GRU vs LSTM on the adding problem (about 3 minutes)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, metavar="T",
                   help="sequence length T of the adding problem (default 100)")
    p.add_argument("--quick", action="store_true", help="a tiny run that takes seconds (for tests)")
    p.add_argument("--run-dir", default="runs/demo",
                   help=f"where figures and {RunDir.DEMO_PAGE} go (default runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per model (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab demo``; the last printed line is the JSON summary."""
    try:
        for arg in ("steps", "epochs"):
            v = getattr(args, arg, None)
            if v is not None and v < (2 if arg == "steps" else 1):
                raise ValueError(f"--{arg}: expected an integer >= {2 if arg == 'steps' else 1}, got {v}")
        s = DemoSettings.quick(args.steps) if args.quick else DemoSettings()
        if args.steps is not None:
            s.steps = args.steps
        if args.epochs is not None:
            s.epochs = args.epochs
        s.seed = int(getattr(args, "seed", 0) or 0)
        summary = run_demo(s, args.run_dir)
    except (ValueError, OSError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"lstmlab demo: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lstmlab")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["demo"] + list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
