"""The report's sections that run the model on a few examples of its data: attention, gate
activations, and the model summary."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data import load, resolve_source
from ..run import RunDir
from . import figures as F
from .page import Section, esc, fig_html, fmt, note, table
from .rundata import RunData, get

__all__ = ["load_examples", "attention_section", "gates_section", "model_section"]

def _data_table(run: RunData) -> dict | None:
    """The ``[data]`` table of the run's config; for a run without one (``lstmlab demo``) a small
    table rebuilt from ``results.json`` (task, steps, seed), or None."""
    data = get(run.config, "data")
    if isinstance(data, dict) and "source" in data:
        return dict(data)
    res = run.result or {}
    task = res.get("task") or get(res, "summary", "task")
    if not isinstance(task, str):
        return None
    try:
        src = resolve_source(task)
    except ValueError:
        return None
    steps = get(res, "settings", "steps") or res.get("steps") or get(res, "summary", "steps")
    seed = get(res, "settings", "seed")
    opts = {"source": src.name, "length": steps, "seed": seed, "n_train": 16, "n_val": 16, "n_test": 16}
    return {k: v for k, v in opts.items() if v is not None and (k == "source" or k in src.options)}


def load_examples(run: RunData, n: int) -> tuple[dict | None, str | None]:
    """A few examples from the run's data: ``{"x", "y", "lengths", "split", "meta", ...}`` or a reason."""
    data = _data_table(run)
    if data is None:
        return None, "the config has no [data] table with a source"
    opts = {k: v for k, v in data.items() if k != "source"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            splits = load(data["source"], **opts)
        except TypeError:
            splits = load(data["source"], **{k: v for k, v in opts.items() if v is not None})
    for name in ("test", "val", "train"):
        part = getattr(splits, name)
        if len(part) > 0:
            break
    else:
        return None, "the data have no examples"
    k = min(n, len(part))
    m = min(32, len(part))
    return {"x": part.x[:k], "y": part.y[:k], "lengths": None if part.lengths is None else part.lengths[:k],
            "x_diag": part.x[:m], "y_diag": part.y[:m],
            "lengths_diag": None if part.lengths is None else part.lengths[:m],
            "split": name, "meta": splits.meta}, None


def _label(meta: Mapping, v: Any) -> str:
    names = meta.get("class_names") or meta.get("classes")
    a = np.asarray(v)
    if a.ndim == 0 and names and np.issubdtype(a.dtype, np.integer) and 0 <= int(a) < len(names):
        return str(names[int(a)])
    if a.ndim == 0:
        return fmt(a.item())
    if a.size <= 4:
        return ", ".join(fmt(float(x)) for x in a.reshape(-1))
    return f"array {a.shape}"


def _tokens(meta: Mapping, ids: np.ndarray) -> list[str]:
    vocab = meta.get("vocab")
    if vocab is None:
        return [str(int(i)) for i in ids]
    return [str(vocab[int(i)]) if 0 <= int(i) < len(vocab) else "?" for i in ids]


def _predict(model, ex: dict) -> np.ndarray | None:
    try:
        return model.predict(ex["x"], lengths=ex["lengths"])
    except Exception:  # noqa: BLE001 - predictions are decoration
        return None


def _pred_text(meta: Mapping, pred: np.ndarray | None, b: int) -> str:
    if pred is None:
        return ""
    p = pred[b]
    if p.ndim == 1 and meta.get("kind") == "classification" and p.size > 1:
        k = int(np.argmax(p))
        return f"predicted {_label(meta, np.int64(k))} ({p[k]:.0%})"
    if p.ndim <= 1 and p.size <= 4:
        return "predicted " + ", ".join(fmt(float(v)) for v in np.asarray(p).reshape(-1))
    return ""


def _attention_one(model, ex: dict, label: str) -> list[str]:
    from ..layers import explain

    meta = ex["meta"]
    weights = explain(model, ex["x"], lengths=ex["lengths"])
    pred = _predict(model, ex)
    out = []
    for b in range(len(weights)):
        n = int(ex["lengths"][b]) if ex["lengths"] is not None else weights.shape[1]
        head = f"{label}example {b}: label {_label(meta, ex['y'][b])}"
        extra = _pred_text(meta, pred, b)
        head += f", {extra}" if extra else ""
        x = np.asarray(ex["x"][b])
        w = weights[b, :n]
        if x.ndim == 1:  # token ids
            fig = F.attention_text(_tokens(meta, x[:n]), w, title=head)
        else:
            fig = F.attention_series(x[:n], w, title=head, feature_names=meta.get("feature_names"))
        peak = int(np.argmax(w))
        cap = (f"{head}. Shading (and bars) = attention weight of each step; peak at step {peak} "
               f"(weight {w[peak]:.2f}, uniform would be {1 / max(n, 1):.2f}).")
        out.append(fig_html(fig, cap, f"attention {label}example {b}"))
    return out


def attention_section(models: dict[str, Any], ex: dict | None, why: str | None) -> Section:
    title = "Attention"
    if not models:
        return Section("attention", title, note("No model file in this run directory; nothing to explain."))
    from ..layers import attention_layers

    with_att = {k: m for k, m in models.items() if attention_layers(m)}
    if not with_att:
        names = ", ".join(models)
        which = "This model has no" if len(models) == 1 else f"None of the models ({names}) has an"
        return Section("attention", title, note(
            f"{which} Attention layer. Add ll.Attention() after a recurrent layer with "
            "return_sequences=True to see which steps each prediction draws on."))
    if ex is None:
        return Section("attention", title, note(f"No examples to explain: {why}."))
    body = [f"<p class=\"sub\">Attention weights on the first {len(ex['x'])} {esc(ex['split'])} examples "
            "(each row sums to 1 over the valid steps, 0 on padding).</p>"]
    for name, model in with_att.items():
        label = f"{name}: " if len(models) > 1 else ""
        if label:
            body.append(f"<h3>{esc(name)}</h3>")
        body += _attention_one(model, ex, label)
    return Section("attention", title, "".join(body))


def _gates_one(model, ex: dict, label: str, max_directions: int) -> list[str]:
    from ..tracing import trace

    tr = trace(model, ex["x"][:1], lengths=None if ex["lengths"] is None else ex["lengths"][:1])
    out = []
    for name, entry in list(tr.items())[:max_directions]:
        fig = F.gate_heatmap(entry, 0, title=f"{label}{name} ({entry['cell'].upper()}), example 0")
        cap = f"{label}{name}: mean activation per gate (top) and per unit (below) at each step."
        out.append(fig_html(fig, cap, f"gate heat map {label}{name}"))
        stats = []
        mask = entry["mask"][0]
        for g in list(entry["gates"]) + ["h"]:
            v = entry[g][0][mask]
            if v.size:
                sat = float(np.mean((v < 0.05) | (v > 0.95))) if g not in ("g", "n", "h") else \
                    float(np.mean(np.abs(v) > 0.95))
                stats.append([F.GATE_LABELS.get(g, g), float(v.mean()), float(v.min()), float(v.max()), sat])
        out.append(table(["gate / state", "mean", "min", "max", "saturated share"], stats))
    if len(tr) > max_directions:
        out.append(note(f"{len(tr) - max_directions} more recurrent directions not shown."))
    return out


def gates_section(models: dict[str, Any], ex: dict | None, why: str | None) -> Section:
    title = "Gate activations"
    if not models:
        return Section("gates", title, note("No model file in this run directory; no gates to show."))
    if ex is None:
        return Section("gates", title, note(f"No examples to trace: {why}."))
    body = [f"<p class=\"sub\">Gates and states on {esc(ex['split'])} example 0 "
            f"(label {esc(_label(ex['meta'], ex['y'][0]))}), recomputed step by step from the weights. "
            "Forget gates near 1 keep the cell state; near 0 they erase it.</p>"]
    for name, model in models.items():
        label = f"{name}: " if len(models) > 1 else ""
        if label:
            body.append(f"<h3>{esc(name)}</h3>")
        try:
            body += _gates_one(model, ex, label, 3 if len(models) == 1 else 1)
        except ValueError as exc:
            body.append(note(f"{label}{exc}"))
    return Section("gates", title, "".join(body))


def model_section(models: dict[str, Any], run: RunData, errors: dict[str, str]) -> Section:
    body = []
    for name, path in run.models.items():
        model = models.get(name)
        if model is None:
            body.append(note(f"Could not load {path.name}: {errors.get(name, 'unknown error')}"))
            continue
        try:
            text = model.summary(print_fn=None)
        except Exception:  # noqa: BLE001
            text = repr(model)
        body.append(f"<p class=\"sub\">{esc(path.name)}</p><pre>{esc(text)}</pre>")
    if not body:
        body.append(note(f"No model file ({RunDir.MODEL}) in this run directory."))
    return Section("model", "Model", "".join(body))
