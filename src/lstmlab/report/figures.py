"""Figures for looking inside a model (matplotlib, Agg canvas, no pyplot).

Every function returns a ``matplotlib.figure.Figure`` and saves it when ``path`` is given
(``.png``, ``.svg`` or ``.pdf``); :func:`png_bytes` / :func:`data_uri` turn a figure into
embeddable PNG data.

* :func:`attention_text` - tokens shaded by attention weight
* :func:`attention_series` - a time series with its steps shaded by attention weight
* :func:`gate_heatmap` - gate x time for one example of a :func:`lstmlab.trace` entry
* :func:`gradient_flow` - ``||dL/dh_t||`` vs t (log scale) from a GradientReport or a record
* :func:`training_curves` - loss and metrics per epoch from ``metrics.jsonl`` rows
* :func:`health_timeline` - gradient decay per GradientMonitor sample, coloured by verdict, with events
"""

from __future__ import annotations

import base64
import io
import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import cells
from ..diagnostics.detectors import EXPLODING_RATIO, VANISHING_RATIO
from ..diagnostics.plots import new_figure, save_figure
from ..run.files import read_jsonl

__all__ = ["attention_text", "attention_series", "gate_heatmap", "gradient_flow", "training_curves",
           "health_timeline", "compare_curves", "png_bytes", "data_uri", "read_jsonl", "flow_profiles"]

VERDICT_COLORS = {"healthy": "#2e7d32", "vanishing": "#1565c0", "exploding": "#c62828", "nan": "#6a1b9a"}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _finish(fig, path):
    if path is not None:
        save_figure(fig, path, dpi=100)
    return fig


def _int_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def data_uri(fig, dpi: int = 100) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (for self-contained HTML)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _positive(v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).copy()
    a[~np.isfinite(a) | (a <= 0)] = np.nan
    return a


def _weights_1d(weights, length: int | None = None) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if length is not None:
        w = w[:length]
    return np.nan_to_num(w, nan=0.0)


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------
def _show_token(tok: str) -> str:
    return {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "": "\u2205"}.get(tok, tok)


def attention_text(tokens: Sequence[str], weights, title: str | None = None, path=None,
                   width: float = 9.0, fontsize: float = 9.0):
    """Tokens laid out like text, each on a background whose darkness is its attention weight.

    ``tokens`` and ``weights`` (T,) are aligned; extra weights (padding) are ignored.
    """
    from matplotlib import colormaps

    char_in = 0.6 * fontsize / 72  # width of one monospace character, inches
    chars_per_line = max(20, int((width - 0.4) / char_in))
    tokens = [str(t) for t in tokens]
    w = _weights_1d(weights, len(tokens))
    if len(w) < len(tokens):
        w = np.concatenate([w, np.zeros(len(tokens) - len(w))])
    top = float(w.max()) if len(w) and w.max() > 0 else 1.0
    gap = 0 if all(len(t) <= 1 for t in tokens) else 1  # characters: no gaps between them
    lines: list[list[int]] = [[]]
    used = 0
    for k, tok in enumerate(tokens):
        n = len(_show_token(tok)) + gap
        if used + n > chars_per_line and lines[-1]:
            lines.append([])
            used = 0
        lines[-1].append(k)
        used += n
    fig = new_figure(width, 0.9 + 0.32 * len(lines))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(0, chars_per_line)
    ax.set_ylim(len(lines), -0.2)
    cmap = colormaps["Oranges"]
    for row, idx in enumerate(lines):
        x = 0.0
        for k in idx:
            s = _show_token(tokens[k])
            level = w[k] / top
            ax.text(x, row + 0.5, s, family="monospace", fontsize=fontsize, va="center", ha="left",
                    color="white" if level > 0.6 else "black",
                    bbox={"boxstyle": f"square,pad={0.15 if gap else 0.0}", "edgecolor": "none",
                          "facecolor": cmap(0.05 + 0.9 * level)})
            x += len(s) + gap
    peak = int(np.argmax(w)) if len(w) else 0
    head = title or "attention over the input"
    if len(w):
        head += f"  (peak {w[peak]:.2f} on token {peak}: {_show_token(tokens[peak])!r})"
    ax.set_title(head, fontsize=9, loc="left")
    return _finish(fig, path)


_LINE_COLORS = ("#1f3b73", "#2e7d32", "#6a1b9a", "#000000", "#00838f", "#8d6e63", "#c2185b", "#546e7a")


def attention_series(values, weights, title: str | None = None, path=None, feature_names=None,
                     width: float = 9.0):
    """A time series (T,) or (T, F) with each step shaded by its attention weight; weights below."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    steps = v.shape[0]
    w = _weights_1d(weights, steps)
    if len(w) < steps:
        w = np.concatenate([w, np.zeros(steps - len(w))])
    top = float(w.max()) if w.max() > 0 else 1.0
    fig = new_figure(width, 3.2)
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1])
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    # one image behind the lines: step t shaded by w[t] / max(w)
    ax.imshow((w / top)[None, :], extent=(-0.5, steps - 0.5, lo - pad, hi + pad), aspect="auto",
              cmap="Oranges", vmin=0.0, vmax=2.2, interpolation="nearest", zorder=0)
    show = min(v.shape[1], 8)
    names = list(feature_names or [f"x[{k}]" for k in range(v.shape[1])])
    for k in range(show):
        ax.plot(np.arange(steps), v[:, k], lw=1.3, color=_LINE_COLORS[k % len(_LINE_COLORS)],
                label=names[k] if k < len(names) else f"x[{k}]")
    if show < v.shape[1]:
        ax.text(0.99, 0.02, f"first {show} of {v.shape[1]} features", transform=ax.transAxes, ha="right",
                fontsize=7)
    if show <= 4:
        ax.legend(fontsize=7, loc="upper left")
    ax.set_ylabel("input")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "attention over a time series (shading = weight)", fontsize=9, loc="left")
    ax2.bar(np.arange(steps), w, color="tab:orange", width=0.9)
    ax2.set_xlim(-0.5, steps - 0.5)
    ax2.set_ylabel("weight")
    ax2.set_xlabel("time step t")
    ax2.grid(True, alpha=0.3)
    _int_ticks(ax2)
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------------
# gates
# ---------------------------------------------------------------------------------------------
GATE_LABELS = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o",
               "r": "reset gate r", "z": "update gate z", "n": "candidate n", "c": "cell state c",
               "h": "hidden state h"}


def gate_heatmap(entry: Mapping[str, Any], example: int = 0, title: str | None = None, path=None,
                 max_units: int = 32, width: float = 9.0):
    """Gate x time for one example of a :func:`lstmlab.trace` entry.

    Top: the mean activation over units of each gate and state (rows) at each valid step.  Below:
    one units x time panel per gate (first ``max_units`` units).
    """
    cell = str(entry.get("cell", cells.LSTM.name))
    spec = cells.CELLS.get(cell)
    gates = list(entry.get("gates", ())) or []
    rows = [g for g in gates if g in entry] + [s for s in ("c", "h") if s in entry]
    if not rows:
        raise ValueError("entry: expected a trace entry with gate arrays (i, f, g, o / r, z, n) or h")
    lengths = entry.get("lengths")
    steps = np.asarray(entry[rows[0]]).shape[1]
    n = int(lengths[example]) if lengths is not None else steps
    arrays = {k: np.asarray(entry[k], dtype=np.float64)[example, :n] for k in rows}  # (n, H)
    units = arrays[rows[0]].shape[1]
    shown = min(units, max_units)
    panels = [g for g in gates if g in arrays] or [k for k in ("h",) if k in arrays]  # SimpleRNN: h
    fig = new_figure(width, 1.2 + 0.32 * len(rows) + 1.05 * len(panels))
    axes = fig.subplots(1 + len(panels), 1, sharex=True, squeeze=False,
                        height_ratios=[max(1.2, 0.32 * len(rows))] + [1.0] * len(panels))[:, 0]
    mean = np.stack([arrays[k].mean(1) for k in rows])
    im = axes[0].imshow(mean, aspect="auto", cmap="viridis", interpolation="nearest",
                        vmin=min(-1.0, float(np.nanmin(mean))) if "c" in rows else -1.0,
                        vmax=max(1.0, float(np.nanmax(mean))) if "c" in rows else 1.0)
    axes[0].set_yticks(range(len(rows)), [GATE_LABELS.get(k, k) for k in rows], fontsize=7)
    axes[0].set_title(title or f"{cell.upper()} gates over time (example {example}, mean over {units} units)",
                      fontsize=9, loc="left")
    fig.colorbar(im, ax=axes[0], fraction=0.025, pad=0.01)
    for ax, g in zip(axes[1:], panels, strict=True):
        a = arrays[g][:, :shown].T
        sig = spec is not None and g in spec.gates and spec.gate_kind(g) == "sigmoid"
        im = ax.imshow(a, aspect="auto", interpolation="nearest", cmap="magma" if sig else "coolwarm",
                       vmin=0.0 if sig else -1.0, vmax=1.0)
        ax.set_ylabel(f"{g}\nunits", fontsize=7)
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01)
    axes[-1].set_xlabel("time step t")
    _int_ticks(axes[-1])
    if shown < units:
        axes[-1].text(1.0, -0.45, f"units 0..{shown - 1} of {units}", transform=axes[-1].transAxes,
                      ha="right", fontsize=7)
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------
def flow_profiles(source) -> dict[str, np.ndarray]:
    """``{direction: ||dL/dh_t|| (T,)}`` from a GradientReport, ``GradientReport.to_dict()``, a
    gradient_health record holding ``per_step``, or a plain ``{name: array}`` mapping.

    The end-step-loss profile (``last_step``) is preferred where present, as the verdict is.
    Raises ``ValueError`` when the source has no per-step profile (e.g. a summary record).
    """
    if hasattr(source, "per_step") and not isinstance(source, Mapping):
        per_step, last = source.per_step, getattr(source, "last_step", {}) or {}
    elif isinstance(source, Mapping) and "per_step" in source:
        per_step, last = source.get("per_step") or {}, source.get("last_step") or {}
    elif isinstance(source, Mapping) and source and all(
            isinstance(v, (list, tuple, np.ndarray)) for v in source.values()):
        return {str(k): np.asarray(v, dtype=np.float64) for k, v in source.items()}
    else:
        raise ValueError("source: expected a GradientReport, its to_dict() or a record with 'per_step'; "
                         "this one has no per-step gradient profile")
    out = {}
    for name, d in per_step.items():
        prof = (last.get(name) or {}).get("dL_dh") if isinstance(last.get(name), Mapping) else None
        if prof is None and isinstance(d, Mapping):
            prof = d.get("dL_dh")
        if prof is not None:
            out[str(name)] = np.asarray([_num(v) for v in prof], dtype=np.float64)
    if not out:
        raise ValueError("source: its per_step section holds no dL_dh profile")
    return out


def gradient_flow(source, title: str | None = None, path=None, width: float = 9.0):
    """``||dL/dh_t||`` against t on a log scale, one line per recurrent direction.

    ``source``: anything :func:`flow_profiles` accepts.  A steep fall towards t = 0 is the
    vanishing-gradient problem; a rise is the exploding one.
    """
    profiles = flow_profiles(source)
    verdict = getattr(source, "verdict", None) or (source.get("verdict") if isinstance(source, Mapping)
                                                   else None)
    decay = getattr(source, "decay", None) or (source.get("decay") if isinstance(source, Mapping) else None)
    fig = new_figure(width, 3.4)
    ax = fig.add_subplot()
    for k, (name, prof) in enumerate(profiles.items()):
        label = name
        d = (decay or {}).get(name) if isinstance(decay, Mapping) else None
        if isinstance(d, Mapping) and d.get("log10_ratio") is not None:
            label += f" (10^{_num(d['log10_ratio']):+.1f}, {d.get('verdict', '')})"
        ax.plot(np.arange(len(prof)), _positive(prof), lw=2, color=f"C{k % 10}", label=label)
        bad = np.nonzero(~np.isfinite(prof))[0]
        if len(bad):
            ax.scatter(bad, np.ones(len(bad)), marker="x", color="red", label=f"{name}: NaN/Inf")
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.grid(True, which="both", alpha=0.3)
    _int_ticks(ax)
    head = title or "gradient flow through time"
    if verdict:
        head += f" - verdict: {verdict}"
    ax.set_title(head, fontsize=10, loc="left")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _finish(fig, path)


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
_SKIP = {"epoch", "time_s", "global_step", "lr", "grad_norm", "gradient_verdict", "diverged"}


def training_curves(rows: Iterable[Mapping[str, Any]] | str | os.PathLike, title: str | None = None,
                    path=None, width: float = 9.0):
    """Loss and every metric per epoch (train solid, validation dashed) from ``metrics.jsonl`` rows
    (or the file's path).  Epochs whose gradient verdict was not healthy are marked."""
    if isinstance(rows, (str, os.PathLike)):
        rows = read_jsonl(rows)
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("rows: no epochs to plot (metrics.jsonl is empty)")
    keys = []
    for r in rows:
        for k, v in r.items():
            base = k[4:] if k.startswith("val_") else k
            if k in _SKIP or base in keys or not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            keys.append(base)
    if "loss" in keys:
        keys.remove("loss")
        keys.insert(0, "loss")
    keys = keys[:4] or ["loss"]
    epochs = np.array([_num(r.get("epoch", k + 1)) for k, r in enumerate(rows)])
    fig = new_figure(width, 2.3 * len(keys) + 0.4)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=True):
        for k, style in ((key, "-"), (f"val_{key}", "--")):
            vals = np.array([_num(r.get(k)) for r in rows])
            if np.any(np.isfinite(vals)):
                ax.plot(epochs, vals, style, marker="o", ms=3, label=k)
        if key == "loss":
            vals = np.array([_num(r.get("loss")) for r in rows])
            if np.all(vals[np.isfinite(vals)] > 0) and np.any(np.isfinite(vals)):
                ax.set_yscale("log")
        ax.set_ylabel(key)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for r, e in zip(rows, epochs, strict=True):
        v = r.get("gradient_verdict")
        if v and v != "healthy":
            for ax in axes:
                ax.axvspan(e - 0.5, e + 0.5, color=VERDICT_COLORS.get(v, "gray"), alpha=0.12, lw=0)
        if r.get("diverged"):
            axes[0].axvline(e, color="red", lw=1)
    axes[0].set_title(title or "training curves", fontsize=10, loc="left")
    axes[-1].set_xlabel("epoch")
    _int_ticks(axes[-1])
    return _finish(fig, path)


def compare_curves(histories: Mapping[str, Mapping[str, Sequence[float]]], keys: Sequence[str] = ("loss",),
                   title: str | None = None, path=None, width: float = 9.0):
    """Several runs on shared axes: ``histories[name][key]`` is a per-epoch list (Keras History
    style); train solid, ``val_<key>`` dashed, one colour per run."""
    if not histories:
        raise ValueError("histories: no runs to compare")
    keys = [k for k in keys if any(h.get(k) for h in histories.values())] or ["loss"]
    fig = new_figure(width, 2.6 * len(keys) + 0.4)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, keys, strict=True):
        positive = True
        for c, (name, hist) in enumerate(histories.items()):
            for k, style in ((key, "-"), (f"val_{key}", "--")):
                vals = np.array([_num(v) for v in hist.get(k) or []])
                if vals.size and np.any(np.isfinite(vals)):
                    positive &= bool(np.all(vals[np.isfinite(vals)] > 0))
                    ax.plot(np.arange(1, len(vals) + 1), vals, style, color=f"C{c % 10}", marker="o", ms=3,
                            label=f"{name} {k}")
        if key == "loss" and positive:
            ax.set_yscale("log")
        ax.set_ylabel(key)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title(title or "training curves", fontsize=10, loc="left")
    axes[-1].set_xlabel("epoch")
    _int_ticks(axes[-1])
    return _finish(fig, path)


def health_timeline(records: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]],
                    events: Sequence[Mapping[str, Any]] = (), title: str | None = None, path=None,
                    width: float = 9.0):
    """Gradient decay ``log10 ||dL/dh_1|| / ||dL/dh_T||`` per GradientMonitor sample (points coloured
    by verdict), the gradient norm, and a vertical line for every event (remedy applied, finding).

    ``records``: one run's records, or ``{run name: records}`` to compare runs."""
    groups = dict(records) if isinstance(records, Mapping) else {"": list(records)}
    if not any(groups.values()) and not events:
        raise ValueError("records: no gradient-health samples to plot")
    fig = new_figure(width, 4.2)
    ax, ax2 = fig.subplots(2, 1, sharex=True)
    seen: set[str] = set()
    for g, (group, recs) in enumerate(groups.items()):
        steps = np.array([_num(r.get("step")) for r in recs])
        keys = sorted({k for r in recs for k in r if k.startswith("decay/")}) or ["decay"]
        for k, key in enumerate(keys):
            vals = np.array([_num(r.get(key)) for r in recs])
            if np.any(np.isfinite(vals)):
                label = f"{group} {key}".strip() if group else key
                ax.plot(steps, vals, lw=1, color=f"C{(g + k) % 10}", alpha=0.7, label=label)
        dec = np.array([_num(r.get("decay")) for r in recs])
        for verdict, color in VERDICT_COLORS.items():
            sel = np.array([r.get("verdict") == verdict for r in recs], dtype=bool)
            if sel.any():
                y = np.where(np.isfinite(dec[sel]), dec[sel], 0.0)
                ax.scatter(steps[sel], y, s=18, color=color, zorder=3,
                           label=None if verdict in seen else verdict)
                seen.add(verdict)
    ax.axhline(math.log10(VANISHING_RATIO), color=VERDICT_COLORS["vanishing"], ls=":", lw=1)
    ax.axhline(math.log10(EXPLODING_RATIO), color=VERDICT_COLORS["exploding"], ls=":", lw=1)
    ax.set_ylabel("log10 decay")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or "gradient health during training", fontsize=10, loc="left")
    for g, (group, recs) in enumerate(groups.items()):
        steps = np.array([_num(r.get("step")) for r in recs])
        for k, key in enumerate(("grad_norm", "param_norm")):
            vals = _positive([_num(r.get(key)) for r in recs])
            if np.any(np.isfinite(vals)):
                ax2.plot(steps, vals, marker=".", color=f"C{(2 * g + k) % 10}",
                         label=f"{group} {key}".strip())
    ax2.set_yscale("log")
    ax2.set_ylabel("norm")
    ax2.set_xlabel("training step")
    ax2.grid(True, which="both", alpha=0.3)
    for e in events:
        s = _num(e.get("step"))
        if not math.isfinite(s):
            continue
        color = "red" if e.get("event") in ("restore", "nan", "stop") else "gray"
        for a in (ax, ax2):
            a.axvline(s, color=color, lw=1, alpha=0.6)
        ax.annotate(textwrap.shorten(str(e.get("event", "")), 18), (s, 1.0),
                    xycoords=("data", "axes fraction"), fontsize=7, rotation=90, va="top", ha="right")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _int_ticks(ax2)
    return _finish(fig, path)
