"""Figures for gradient health (matplotlib, no pyplot: works headless and leaves the user's backend alone)."""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np

from .detectors import EXPLODING_RATIO, VANISHING_RATIO


def new_figure(width: float, height: float):
    """A matplotlib Figure on an Agg canvas (no pyplot: headless, the user's backend untouched).

    Its texts are drawn as written: a ``$`` in a class label, token or feature name from a
    user's file is not TeX (matplotlib would raise on ``a$_$b``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _literal_figure_class()(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


@functools.cache
def _literal_figure_class():
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    class LiteralFigure(Figure):
        """A Figure that turns mathtext off for every text just before it is drawn."""

        def draw(self, renderer):
            for t in self.findobj(Text):
                t.set_parse_math(False)
            super().draw(renderer)

    return LiteralFigure


def save_figure(fig, path, dpi: int = 110) -> None:
    """Save ``fig`` as .png (at ``dpi``), .svg or .pdf by the extension of ``path``; folders are created."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise ValueError(f"path: expected a .png, .svg or .pdf file name, got {path!r}")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=dpi if ext == ".png" else None)


def _positive(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).copy()
    v[~np.isfinite(v) | (v <= 0)] = np.nan
    return v


def plot_report(report, path=None):
    """``||dL/dh_t||`` vs t (log scale) for every direction, and gate saturation (gates x time)."""
    names = list(report.per_step)
    rows = [(n, g) for n in names for g in report.per_gate_step.get(n, {})]
    fig = new_figure(9.0, 3.6 + 0.25 * max(len(rows), 4))
    ax, ax2 = fig.subplots(2, 1, height_ratios=[3, max(1.5, 0.35 * len(rows))])
    colors = [f"C{k % 10}" for k in range(len(names))]
    for n, c in zip(names, colors, strict=True):
        dh = report.per_step[n].get("dL_dh")
        if dh is None:
            continue
        d = report.decay.get(n, {})
        ratio = d.get("effective", d.get("log10_ratio"))
        verdict = d.get("verdict", "")
        tag = f" ({verdict}, 10^{ratio:+.1f})" if ratio is not None else f" ({verdict})"
        last = report.last_step.get(n, {}).get("dL_dh")
        if last is not None:
            ax.plot(np.arange(len(last)), _positive(last), color=c, lw=2, label=f"{n}: end-step loss{tag}")
            ax.plot(np.arange(len(dh)), _positive(dh), color=c, lw=1, ls="--", label=f"{n}: full loss")
        else:
            ax.plot(np.arange(len(dh)), _positive(dh), color=c, lw=2, label=f"{n}{tag}")
        dc = (report.last_step.get(n) or report.per_step[n]).get("dL_dc")
        if dc is not None:
            ax.plot(np.arange(len(dc)), _positive(dc), color=c, lw=1, ls=":", label=f"{n}: ||dL/dc_t||")
        bad = np.nonzero(~np.isfinite(np.asarray(dh, dtype=np.float64)))[0]
        if len(bad):
            ax.scatter(bad, np.full(len(bad), np.nanmax(_positive(dh)) if np.any(np.isfinite(_positive(dh)))
                                    else 1.0), marker="x", color="red", label=f"{n}: NaN/Inf")
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(f"gradient through time - verdict: {report.verdict}")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    if rows:
        t_max = max(len(report.per_gate_step[n][g]) for n, g in rows)
        img = np.full((len(rows), t_max), np.nan)
        for k, (n, g) in enumerate(rows):
            v = report.per_gate_step[n][g]
            img[k, :len(v)] = v
        im = ax2.imshow(img, aspect="auto", vmin=0.0, vmax=1.0, cmap="magma", interpolation="nearest")
        ax2.set_yticks(range(len(rows)), [f"{n} {g}" for n, g in rows], fontsize=7)
        ax2.set_xlabel("time step t")
        ax2.set_title("gate saturation (share of saturated units)")
        fig.colorbar(im, ax=ax2, fraction=0.03)
    else:
        ax2.set_axis_off()
    if path is not None:
        save_figure(fig, path)
    return fig


def _history_parts(history) -> tuple[dict, list[dict], list[dict]]:
    if hasattr(history, "history") and isinstance(history.history, dict) and hasattr(history, "records"):
        return history.history, list(history.records), list(getattr(history, "events", []))
    if hasattr(history, "history") and hasattr(history.history, "records"):  # a model
        h = history.history
        return h.history, list(h.records), list(h.events)
    if isinstance(history, dict):
        return (history.get("history", {}), list(history.get("records", [])),
                list(history.get("events", [])))
    raise ValueError(f"history: expected a History, a model with .history or History.to_dict(), "
                     f"got {type(history).__name__}")


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def plot_history(history, path=None):
    """Loss, metrics (per epoch) and gradient health (GradientMonitor records per step) over training.

    ``history``: the History that ``fit`` returns (or ``model.history``, or ``History.to_dict()``).
    Events (restores, clipping switched on, findings) are drawn as vertical lines on the gradient
    panels.  Saves to ``path`` (PNG / SVG) when given; returns the Figure.
    """
    hist, records, events = _history_parts(history)
    metrics = [k for k in hist if not k.startswith("val_") and k != "loss"]
    n_top = 1 + len(metrics)
    n_grad = 2 if records else 0
    fig = new_figure(9.0, 2.4 * (n_top + n_grad))
    axes = fig.subplots(n_top + n_grad, 1, squeeze=False)[:, 0]
    for ax, key in zip(axes[:n_top], ["loss"] + metrics, strict=True):
        for k, style in ((key, "-"), (f"val_{key}", "--")):
            vals = hist.get(k)
            if vals:
                ax.plot(np.arange(1, len(vals) + 1), [_num(v) for v in vals], style, marker="o", ms=3,
                        label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        if key == "loss" and any(_num(v) > 0 for v in hist.get("loss", [])):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if records:
        steps = [_num(r.get("step")) for r in records]
        ax = axes[n_top]
        for key in ("grad_norm", "param_norm", "loss"):
            vals = _positive(np.array([_num(r.get(key)) for r in records]))
            if np.any(np.isfinite(vals)):
                ax.plot(steps, vals, marker=".", label=key)
        ax.set_yscale("log")
        ax.set_ylabel("norm / loss")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("gradient health (GradientMonitor samples)")
        ax = axes[n_top + 1]
        keys = sorted({k for r in records for k in r if k.startswith("decay/")})
        for key in keys or ["decay"]:
            ax.plot(steps, [_num(r.get(key)) for r in records], marker=".", label=key)
        ax.axhline(math.log10(VANISHING_RATIO), color="tab:blue", ls=":", lw=1, label="vanishing threshold")
        ax.axhline(math.log10(EXPLODING_RATIO), color="tab:red", ls=":", lw=1, label="exploding threshold")
        ax.set_ylabel("log10 gradient ratio first/last step")
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        for e in events:
            s = _num(e.get("step"))
            if math.isfinite(s):
                for a in axes[n_top:]:
                    a.axvline(s, color="red" if e.get("event") == "restore" else "gray", alpha=0.5, lw=1)
                axes[n_top].annotate(str(e.get("event")), (s, 1.0), xycoords=("data", "axes fraction"),
                                     fontsize=6, rotation=90, va="top")
    if path is not None:
        save_figure(fig, path)
    return fig
