"""The demo's figures, table and self-contained page (``lstmlab demo``; figures embedded, no network)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np

from .diagnostics import detectors
from .run import RunDir

__all__ = ["plot_losses", "plot_gradients", "plot_decay", "write_html", "format_table", "COLORS"]

COLORS = {"SimpleRNN": "C3", "GRU": "C2", "LSTM": "C0", "Doctor": "C1"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _smooth(v: list[float], k: int) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if len(a) < k or k <= 1:
        return a
    c = np.cumsum(np.insert(np.nan_to_num(a, nan=0.0), 0, 0.0))
    return np.concatenate([np.full(k - 1, np.nan), (c[k:] - c[:-k]) / k])


def _labels(rows: list[dict]) -> dict[str, str]:
    return {r["model"]: r["label"] for r in rows}


def plot_losses(results: dict, rows: list[dict], s, baseline: float, path: Path) -> None:
    """Training loss per step (smoothed) and validation loss per epoch, every model, log scale."""
    fig = _figure(8.5, 4.6)
    ax = fig.subplots()
    per_epoch = math.ceil(s.n_train / s.batch_size)
    k = max(1, min(25, per_epoch // 2))
    labels = _labels(rows)
    for name, r in results.items():
        c = COLORS.get(name)
        v = _smooth(r["step_losses"], k)
        ax.plot(np.arange(1, len(v) + 1), v, color=c, lw=1.3, alpha=0.85, label=f"{labels[name]} train")
        val = r["history"].history.get("val_loss", [])
        ax.plot(np.arange(1, len(val) + 1) * per_epoch, val, "o--", color=c, ms=3.5, lw=0.8)
    ax.axhline(baseline, color="0.4", ls=":", lw=1.2, label=f"chance: ln 4 = {baseline:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy (dashed: validation)")
    ax.set_title(f"Temporal order, T = {s.steps}: same budget for every model")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    RunDir.save_figure(fig, path, dpi=110)


def _profile(report) -> np.ndarray | None:
    name = next(iter(report.per_step), None)
    prof = None if name is None else report.profile(name)
    if prof is None:
        return None
    a = np.asarray(prof, dtype=np.float64)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def plot_gradients(results: dict, rows: list[dict], s, path: Path) -> None:
    """||dL/dh_t|| against the input step it stands for (a patched layer's step covers k inputs),
    before and after training."""
    fig = _figure(10.0, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    labels = _labels(rows)
    for ax, when, title in ((axes[0], "start", "before training"), (axes[1], "end", "after training")):
        for name, r in results.items():
            rep = r[when]
            prof = _profile(rep)
            if prof is None:
                continue
            k = s.steps / len(prof)
            d = rep.worst_decay()
            tag = f" ({rep.verdict}, 10^{d:+.1f})" if d is not None else f" ({rep.verdict})"
            ax.plot(np.arange(1, len(prof) + 1) * k, prof, color=COLORS.get(name), lw=1.6, label=labels[name] + tag)
        ax.set_yscale("log")
        ax.set_xlabel("input step t")
        ax.set_title(f"||dL/dh_t||, {title}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("gradient norm (log scale)")
    fig.suptitle(f"Gradient reaching each step from the loss at t = {s.steps} (diagnose on {s.diagnose_batch} "
                 "test sequences)", fontsize=10)
    RunDir.save_figure(fig, path, dpi=110)


def plot_decay(results: dict, rows: list[dict], path: Path) -> None:
    """GradientMonitor samples: log10(||dL/dh_1|| / ||dL/dh_T||) over training, per model."""
    fig = _figure(8.5, 3.6)
    ax = fig.subplots()
    labels = _labels(rows)
    for name, r in results.items():
        recs = [rec for rec in r["records"] if rec.get("decay") is not None]
        if recs:
            ax.plot([rec["step"] for rec in recs], [rec["decay"] for rec in recs], ".-", color=COLORS.get(name),
                    label=labels[name])
    lo = math.log10(detectors.VANISHING_RATIO)
    ax.axhline(lo, color="C3", ls=":", lw=1, label=f"vanishing below 10^{lo:.0f}")
    ax.set_xlabel("training step")
    ax.set_ylabel("log10 ||dL/dh_1|| / ||dL/dh_T||")
    ax.set_title("Temporal decay of the gradient during training (GradientMonitor)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    RunDir.save_figure(fig, path, dpi=110)


def _fmt_decay(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}"


HEAD = ("model", "params", "test accuracy", "test loss", "decay before", "decay after", "gradients during training",
        "solved")


def _cells(r: dict) -> tuple:
    return (r["label"], f"{r['params']:,}", f"{r['test_accuracy']:.3f}", f"{r['test_loss']:.4f}",
            _fmt_decay(r["decay_start"]), _fmt_decay(r["decay_end"]), r["health"], "yes" if r["solved"] else "no")


def format_table(rows: list[dict], chance: float, solved: float) -> str:
    """The demo's table as text (what the terminal shows)."""
    lines = [HEAD] + [_cells(r) for r in rows]
    w = [max(len(str(row[i])) for row in lines) for i in range(len(HEAD))]
    text = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(text + [f"chance: accuracy {chance:.2f}; solved = test accuracy >= {solved}; decay = log10 "
                             "||dL/dh_1|| / ||dL/dh_T||, vanishing below -3; gradients: the verdicts of every "
                             "GradientMonitor sample"])


def story(rows: list[dict], info: dict) -> str:
    """What this run showed, in a few sentences."""
    by = {r["model"]: r for r in rows}
    plain = [r for r in rows if r["model"] != "Doctor"]
    failed = [r["label"] for r in plain if not r["solved"]]
    parts = []
    if failed:
        parts.append(f"{', '.join(failed)} stay{'s' if len(failed) == 1 else ''} near chance.")
    lstm = by.get("LSTM")
    if lstm is not None:
        parts.append(f"The LSTM's gradient monitor says: {lstm['health']}"
                     + (f" (decay 10^{lstm['decay_end']:+.1f} at the end)." if lstm["decay_end"] is not None else "."))
    doc = by.get("Doctor")
    if doc is not None and info.get("label"):
        outcome = "solves the task" if doc["solved"] else "does not solve the task in this budget"
        parts.append(f"The doctor prescribes {info['label']} ({info['reason']}); with the same budget it {outcome}: "
                     f"test accuracy {doc['test_accuracy']:.3f}, gradients {doc['health']}.")
    return " ".join(parts)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(rd: RunDir, rows: list[dict], s, chance: float, info: dict, figures: list[Path], wall_s: float) -> Path:
    """A self-contained page (figures embedded as base64, no network)."""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in _cells(r)) + "</tr>" for r in rows)
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in HEAD) + "</tr>" + body + "</table>"
    figs = "".join(f"<figure>{_img(p)}</figure>" for p in figures)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lstmlab demo: temporal order, T = {s.steps}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1040px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child {{ text-align: left; font-weight: 600; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} code {{ background: #f3f3f3; padding: 1px 4px; }}
</style></head><body>
<h1>Plain RNNs fail a long lag; the doctor's treatment solves it (temporal order, T = {s.steps})</h1>
<p>Each input is a sequence of {s.steps} random symbols; two relevant symbols (X or Y) appear around steps
{round(0.1 * s.steps)} and {round(0.5 * s.steps)}, and the class is their order (XX, XY, YX, YY). Chance is
{chance:.0%}: a model has to carry what it saw early across dozens of steps to the end.</p>
<p>Same budget for every model: {s.units} units, {s.n_train:,} training sequences, {s.epochs} epochs of batch
{s.batch_size} ({s.epochs * math.ceil(s.n_train / s.batch_size):,} steps), Adam {s.learning_rate:g},
<code>clipnorm={s.clipnorm:g}</code>, seed {s.seed}. The last row is the LSTM after the doctor's treatment
(<code>lstmlab doctor</code> probes several; this is its first prescription for the LSTM's diagnosis).</p>
{table}
<p><b>Gradients during training</b> counts the verdicts of every GradientMonitor sample; <b>decay</b> is
log10(||dL/dh<sub>1</sub>|| / ||dL/dh<sub>T</sub>||) from diagnose on {s.diagnose_batch} test sequences (below
&minus;3: <i>vanishing</i>). {html.escape(story(rows, info))}</p>
{figs}
<p style="color:#777">Generated by <code>lstmlab demo</code> in {wall_s:.0f} s.</p>
</body></html>
"""
    return RunDir.write_text(rd.path(RunDir.DEMO_PAGE), page)
