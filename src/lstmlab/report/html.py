"""One self-contained HTML report for a run directory (``lstmlab report RUN_DIR``).

The page has inline CSS, figures embedded as base64 PNG, no scripts and no network access, so
it can be mailed, archived or opened from disk.  Sections: summary and test metrics, config,
training curves, gradient health (timeline with verdicts, the remedies applied, gradient flow
through time), model, attention and gate examples.  Each section whose inputs are missing says
so in a note instead of failing.

Inputs read from the run directory (all optional): ``result.json`` (or ``results.json``),
``config.resolved.json`` / ``config.resolved.toml``, ``metrics.jsonl``,
``gradient_health.jsonl`` (records, and lines with an ``"event"`` key), ``events.jsonl``,
``diagnose*.json``, ``data_meta.json`` and the model (``model.lstmlab``, else
``checkpoints/best.lstmlab`` / ``checkpoints/last.lstmlab``).  Examples for the attention and
gate figures are loaded with :func:`lstmlab.data.load` from the config's ``[data]`` table.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import figures as F

__all__ = ["write_report", "build_html", "RunData", "read_run"]

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --soft: #f6f8fa;
        --ok: #2e7d32; --van: #1565c0; --exp: #c62828; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 64px; }
header { border-bottom: 2px solid var(--line); margin-bottom: 12px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 34px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
nav { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; }
nav a { margin-right: 14px; color: var(--van); text-decoration: none; white-space: nowrap; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px;
      overflow-x: auto; font-size: 12px; line-height: 1.4; max-height: 420px; }
figure { margin: 12px 0 18px; }
figure img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.note { background: #fff8c5; border: 1px solid #d4a72c66; border-radius: 6px; padding: 8px 12px;
        margin: 8px 0; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px;
         font-weight: 600; background: var(--muted); }
.badge.healthy { background: var(--ok); } .badge.vanishing { background: var(--van); }
.badge.exploding, .badge.nan, .badge.diverged { background: var(--exp); }
.badge.completed { background: var(--ok); }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 140px;
        background: var(--soft); }
.card .k { color: var(--muted); font-size: 12px; } .card .v { font-size: 20px; font-weight: 600; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; border-top: 1px solid var(--line);
         padding-top: 8px; }
"""


# ---------------------------------------------------------------------------------------------
# reading a run directory
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass
class RunData:
    """What the report found in a run directory (every field may be empty)."""

    run_dir: Path
    config: dict | None = None
    config_text: str | None = None
    config_file: str | None = None
    result: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    health: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    diagnose_files: list[Path] = field(default_factory=list)
    data_meta: dict | None = None
    model_path: Path | None = None
    state: dict | None = None


def read_run(run_dir: str | os.PathLike) -> RunData:
    """Collect the files of ``run_dir``; raise ``FileNotFoundError`` if it is not a directory."""
    rd = Path(run_dir)
    if not rd.is_dir():
        raise FileNotFoundError(f"RUN_DIR: {str(rd)!r} is not a directory")
    run = RunData(rd)
    js, toml = rd / "config.resolved.json", rd / "config.resolved.toml"
    if js.is_file():
        run.config = _read_json(js)
    if toml.is_file():
        run.config_text, run.config_file = toml.read_text(encoding="utf-8", errors="replace"), toml.name
        if run.config is None:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            try:
                run.config = tomllib.loads(run.config_text)
            except ValueError:
                run.config = None
    elif isinstance(run.config, dict):
        run.config_text, run.config_file = json.dumps(run.config, indent=1), js.name
    for name in ("result.json", "results.json"):
        res = _read_json(rd / name)
        if isinstance(res, dict):
            run.result = res
            break
    run.metrics = F.read_jsonl(rd / "metrics.jsonl")
    rows = F.read_jsonl(rd / "gradient_health.jsonl")
    run.health = [r for r in rows if "event" not in r]
    run.events = [r for r in rows if "event" in r] + F.read_jsonl(rd / "events.jsonl")
    if run.result and isinstance(run.result.get("events"), list):
        run.events += [e for e in run.result["events"] if isinstance(e, dict)]
    run.events.sort(key=lambda e: F._num(e.get("step")) if math.isfinite(F._num(e.get("step"))) else 0.0)
    run.diagnose_files = sorted(rd.glob("diagnose*.json"))
    meta = _read_json(rd / "data_meta.json")
    run.data_meta = meta if isinstance(meta, dict) else None
    state = _read_json(rd / "checkpoints" / "state.json")
    run.state = state if isinstance(state, dict) else None
    ckpt = rd / "checkpoints"
    for cand in (rd / "model.lstmlab", ckpt / "best.lstmlab", ckpt / "last.lstmlab"):
        if cand.is_file():
            run.model_path = cand
            break
    else:
        found = sorted(rd.glob("*.lstmlab"))
        run.model_path = found[0] if found else None
    return run


# ---------------------------------------------------------------------------------------------
# HTML pieces
# ---------------------------------------------------------------------------------------------
def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return "; ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def badge(text: Any) -> str:
    t = esc(text)
    return f'<span class="badge {t}">{t}</span>'


def table(head: list[str], rows: list[list[Any]], raw_cols: tuple[int, ...] = ()) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        cells = []
        for k, v in enumerate(r):
            if k in raw_cols:
                cells.append(f"<td>{v}</td>")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                cells.append(f'<td class="num">{esc(_fmt(v))}</td>')
            else:
                cells.append(f"<td>{esc(_fmt(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def fig_html(fig, caption: str, alt: str | None = None) -> str:
    """A ``<figure>`` with the figure embedded as a base64 PNG."""
    uri = F.data_uri(fig)
    return (f'<figure><img src="{uri}" alt="{esc(alt or caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


@dataclass
class Section:
    key: str
    title: str
    body: str


# ---------------------------------------------------------------------------------------------
# the sections
# ---------------------------------------------------------------------------------------------
def _summary(run: RunData) -> Section:
    res = run.result or {}
    cards = []
    status = res.get("status") or (run.state or {}).get("status")
    if status:
        cards.append(("status", badge(status)))
    verdicts = [r.get("verdict") for r in run.health if r.get("verdict")]
    if verdicts:
        cards.append(("last gradient verdict", badge(verdicts[-1])))
    epochs = res.get("epochs") or (run.metrics[-1].get("epoch") if run.metrics else None)
    if epochs is not None:
        cards.append(("epochs", esc(_fmt(epochs))))
    test = res.get("test") if isinstance(res.get("test"), dict) else None
    for k, v in (test or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            cards.append((f"test {k}", esc(_fmt(v))))
    if res.get("time_s") is not None:
        cards.append(("training time", esc(f"{_fmt(res['time_s'])} s")))
    body = ""
    if cards:
        body += '<div class="cards">' + "".join(
            f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{v}</div></div>' for k, v in cards
        ) + "</div>"
    rows = []
    for split in ("val", "test"):
        part = res.get(split)
        if isinstance(part, dict):
            for k, v in part.items():
                rows.append([split, k, v])
    base = res.get("baseline")
    if isinstance(base, dict):
        for k, v in base.items():
            rows.append(["baseline", k, v])
    for k in ("best_epoch", "monitor", "best", "diverged_epoch"):
        if res.get(k) is not None:
            rows.append(["run", k, res[k]])
    if rows:
        body += "<h3>Final metrics</h3>" + table(["split", "metric", "value"], rows)
    elif not run.result:
        body += note("No result.json in this run directory (the run may still be going or was cut short); "
                     "final metrics are not available.")
    return Section("summary", "Summary and test metrics", body)


def _config(run: RunData) -> Section:
    if run.config_text is None:
        return Section("config", "Config", note("No config.resolved.toml / .json in this run directory."))
    body = f"<p class=\"sub\">{esc(run.config_file)}</p><pre>{esc(run.config_text)}</pre>"
    return Section("config", "Config", body)


def _curves(run: RunData) -> Section:
    if not run.metrics:
        return Section("curves", "Training curves", note("No metrics.jsonl (or it is empty): no curves."))
    fig = F.training_curves(run.metrics)
    last = run.metrics[-1]
    shown = {k: v for k, v in last.items() if k not in ("time_s", "global_step")}
    body = fig_html(fig, "Loss and metrics per epoch (solid: training, dashed: validation; shaded epochs "
                         "had a vanishing/exploding gradient verdict).", "training curves")
    body += "<h3>Last epoch</h3>" + table(list(shown), [list(shown.values())])
    return Section("curves", "Training curves", body)


def _flow_source(run: RunData, model, examples) -> tuple[Any, str] | None:
    """The best gradient-flow source: a health record with per_step, a diagnose*.json, or a fresh
    ``diagnose`` of the final model on the examples."""
    for rec in reversed(run.health):
        if isinstance(rec.get("per_step"), dict):
            return rec, f"GradientMonitor sample at training step {rec.get('step')}"
    for path in run.diagnose_files:
        d = _read_json(path)
        if isinstance(d, dict):
            cands = [d] if "per_step" in d else [v for v in d.values()
                                                 if isinstance(v, dict) and "per_step" in v]
            if cands:
                return cands[-1], f"{path.name}"
    if model is not None and examples is not None:
        try:
            from ..diagnostics import diagnose
        except ImportError:
            return None
        x, y, lengths = examples["x_diag"], examples["y_diag"], examples["lengths_diag"]
        loss = None
        if getattr(model, "loss_name", None) is None:
            loss = ((run.config or {}).get("train") or {}).get("loss") or None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = diagnose(model, x, y, loss=loss, lengths=lengths)
        return rep, f"lstmlab.diagnose of the final model on {len(x)} {examples['split']} examples"
    return None


def _health(run: RunData, model, examples) -> Section:
    body = []
    if run.health or run.events:
        try:
            fig = F.health_timeline(run.health, run.events)
            cap = ("Gradient decay log10(||dL/dh_1|| / ||dL/dh_T||) per GradientMonitor sample, coloured by "
                   "verdict (dotted lines: vanishing / exploding thresholds); vertical lines are events.")
            body.append(fig_html(fig, cap, "gradient health timeline"))
        except ValueError as exc:
            body.append(note(f"gradient-health timeline skipped: {exc}"))
        counts: dict[str, int] = {}
        for r in run.health:
            counts[str(r.get("verdict"))] = counts.get(str(r.get("verdict")), 0) + 1
        if counts:
            body.append("<p>Verdicts over " + esc(len(run.health)) + " samples: " +
                        " ".join(f"{badge(k)}&nbsp;{v}" for k, v in counts.items()) + "</p>")
        changes = []
        prev = None
        for r in run.health:
            v = r.get("verdict")
            if v != prev:
                changes.append([r.get("epoch"), r.get("step"), badge(v), r.get("decay"), r.get("grad_norm"),
                                r.get("loss")])
                prev = v
        if changes:
            head = ["epoch", "step", "verdict", "log10 decay", "grad norm", "loss"]
            body.append("<h3>Verdict timeline</h3><p class=\"sub\">Each row is a sample where the verdict "
                        "changed.</p>" + table(head, changes, raw_cols=(2,)))
    else:
        body.append(note("No gradient_health.jsonl records: the GradientMonitor was off or the run wrote "
                         "none."))
    body.append("<h3>Remedies applied and findings</h3>")
    if run.events:
        rows = []
        for e in run.events:
            skip = ("step", "event", "action", "remedies", "epoch")
            detail = e.get("message") or ", ".join(f"{k}={_fmt(v)}" for k, v in e.items() if k not in skip)
            rem = e.get("remedies") or []
            rows.append([e.get("step"), e.get("event"), e.get("action", ""), detail,
                         "<br>".join(esc(r) for r in rem[:3]) if rem else ""])
        body.append(table(["step", "event", "action", "detail", "suggested remedies"], rows, raw_cols=(4,)))
    else:
        body.append("<p>None recorded: no clipping, restores or weight decay were switched on during the "
                    "run.</p>")
    body.append("<h3>Gradient flow through time</h3>")
    try:
        src = _flow_source(run, model, examples)
    except Exception as exc:  # noqa: BLE001 - a report section must not sink the report
        src = None
        body.append(note(f"diagnose failed: {type(exc).__name__}: {exc}"))
    if src is not None:
        try:
            fig = F.gradient_flow(src[0])
            cap = (f"||dL/dh_t|| against t, log scale ({src[1]}). A line that falls steeply towards t = 0 "
                   "means early steps get no learning signal (vanishing); a rising one means exploding "
                   "gradients.")
            body.append(fig_html(fig, cap, "gradient flow"))
            rem = getattr(src[0], "remedies", None) or (src[0].get("remedies") if isinstance(src[0], dict)
                                                         else None)
            if rem:
                body.append("<p>Remedies suggested for this profile:</p><ol>" +
                            "".join(f"<li>{esc(r)}</li>" for r in rem) + "</ol>")
        except ValueError as exc:
            body.append(note(f"gradient-flow plot skipped: {exc}"))
    elif not any("diagnose failed" in b for b in body):
        body.append(note("No per-step gradient profile available (no model or data to run diagnose on)."))
    return Section("gradients", "Gradient health", "".join(body))


def _load_examples(run: RunData, n: int) -> tuple[dict | None, str | None]:
    """A few examples from the run's data: ``{"x", "y", "lengths", "split", "meta", ...}`` or a reason."""
    cfg = run.config or {}
    data = cfg.get("data") if isinstance(cfg, dict) else None
    if not isinstance(data, dict) or "source" not in data:
        return None, "the config has no [data] table with a source"
    from ..data import load

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
        return _fmt(a.item())
    if a.size <= 4:
        return ", ".join(_fmt(float(x)) for x in a.reshape(-1))
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
        return "predicted " + ", ".join(_fmt(float(v)) for v in np.asarray(p).reshape(-1))
    return ""


def _attention(run: RunData, model, ex: dict | None, why: str | None) -> Section:
    title = "Attention"
    if model is None:
        return Section("attention", title, note("No model file in this run directory; nothing to explain."))
    from ..attention import attention_layers, explain

    if not attention_layers(model):
        return Section("attention", title, note(
            "This model has no Attention layer. Add ll.Attention() after a recurrent layer with "
            "return_sequences=True to see which steps each prediction draws on."))
    if ex is None:
        return Section("attention", title, note(f"No examples to explain: {why}."))
    meta = ex["meta"]
    weights = explain(model, ex["x"], lengths=ex["lengths"])
    pred = _predict(model, ex)
    body = [f"<p class=\"sub\">Attention weights of the first {len(weights)} {esc(ex['split'])} examples "
            "(each row sums to 1 over the valid steps).</p>"]
    for b in range(len(weights)):
        n = int(ex["lengths"][b]) if ex["lengths"] is not None else weights.shape[1]
        head = f"example {b}: label {_label(meta, ex['y'][b])}"
        extra = _pred_text(meta, pred, b)
        head += f", {extra}" if extra else ""
        x = np.asarray(ex["x"][b])
        if x.ndim == 1:  # token ids
            fig = F.attention_text(_tokens(meta, x[:n]), weights[b, :n], title=head)
        else:
            fig = F.attention_series(x[:n], weights[b, :n], title=head,
                                     feature_names=meta.get("feature_names"))
        w = weights[b, :n]
        peak = int(np.argmax(w))
        cap = (f"{head}. Shading (and bars) = attention weight of each step; peak at step {peak} "
               f"(weight {w[peak]:.2f}, uniform would be {1 / max(n, 1):.2f}).")
        body.append(fig_html(fig, cap, f"attention example {b}"))
    return Section("attention", title, "".join(body))


def _gates(run: RunData, model, ex: dict | None, why: str | None, max_directions: int = 3) -> Section:
    title = "Gate activations"
    if model is None:
        return Section("gates", title, note("No model file in this run directory; no gates to show."))
    if ex is None:
        return Section("gates", title, note(f"No examples to trace: {why}."))
    from ..trace import trace

    tr = trace(model, ex["x"][:1], lengths=None if ex["lengths"] is None else ex["lengths"][:1])
    if not tr:
        return Section("gates", title, note("The model has no recurrent layer."))
    body = [f"<p class=\"sub\">Gates and states of {esc(ex['split'])} example 0 "
            f"(label {esc(_label(ex['meta'], ex['y'][0]))}), recomputed step by step from the weights. "
            "Forget gates near 1 keep the cell state; near 0 they erase it.</p>"]
    for name, entry in list(tr.items())[:max_directions]:
        fig = F.gate_heatmap(entry, 0, title=f"{name} ({entry['cell'].upper()}), example 0")
        cap = f"{name}: mean activation per gate (top) and per unit (below) at each step."
        body.append(fig_html(fig, cap, f"gate heat map {name}"))
        stats = []
        mask = entry["mask"][0]
        for g in list(entry["gates"]) + ["h"]:
            v = entry[g][0][mask]
            if v.size:
                sat = float(np.mean((v < 0.05) | (v > 0.95))) if g not in ("g", "n", "h") else \
                    float(np.mean(np.abs(v) > 0.95))
                stats.append([F.GATE_LABELS.get(g, g), float(v.mean()), float(v.min()), float(v.max()), sat])
        body.append(table(["gate / state", "mean", "min", "max", "saturated share"], stats))
    if len(tr) > max_directions:
        body.append(note(f"{len(tr) - max_directions} more recurrent directions not shown."))
    return Section("gates", title, "".join(body))


def _model(model, run: RunData, error: str | None) -> Section:
    if model is None:
        msg = f"Could not load the model: {error}" if error else "No model file (model.lstmlab) in this run."
        return Section("model", "Model", note(msg))
    try:
        text = model.summary(print_fn=None)
    except Exception:  # noqa: BLE001
        text = repr(model)
    return Section("model", "Model", f"<p class=\"sub\">{esc(run.model_path.name)}</p><pre>{esc(text)}</pre>")


def _guard(key: str, title: str, make: Callable[[], Section]) -> Section:
    """Run a section builder; on any error return a note with the error instead."""
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - one broken section must not sink the report
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Section(key, title, note(f"This section could not be built: {last}"))


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
def build_html(run_dir: str | os.PathLike, examples: int = 3, title: str | None = None) -> str:
    """The report page for ``run_dir`` as one HTML string."""
    run = read_run(run_dir)
    model, model_error = None, None
    if run.model_path is not None:
        try:
            from .. import attention  # noqa: F401 - registers the Attention layer for load_model
            from ..model import load_model

            try:
                model = load_model(run.model_path)
            except Exception:  # noqa: BLE001 - the weights may still load without the optimizer
                model = load_model(run.model_path, compile=False)
            model.eval()
        except Exception as exc:  # noqa: BLE001
            model_error = f"{type(exc).__name__}: {exc}"
    ex, why = None, "no model"
    if model is not None:
        try:
            ex, why = _load_examples(run, examples)
        except Exception as exc:  # noqa: BLE001
            ex, why = None, f"loading the data failed ({type(exc).__name__}: {exc})"
    sections = [
        _guard("summary", "Summary and test metrics", lambda: _summary(run)),
        _guard("curves", "Training curves", lambda: _curves(run)),
        _guard("gradients", "Gradient health", lambda: _health(run, model, ex)),
        _guard("attention", "Attention", lambda: _attention(run, model, ex, why)),
        _guard("gates", "Gate activations", lambda: _gates(run, model, ex, why)),
        _guard("model", "Model", lambda: _model(model, run, model_error)),
        _guard("config", "Config", lambda: _config(run)),
    ]
    name = title or f"lstmlab report: {Path(run_dir).resolve().name}"
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    from .. import __version__

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             # nothing is fetched: images are data: URIs, no scripts
             "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
             "img-src data:; style-src 'unsafe-inline'\">",
             f"<title>{esc(name)}</title><style>{CSS}</style></head><body><main>",
             f"<header><h1>{esc(name)}</h1><p class=\"sub\">run directory "
             f"<code>{esc(Path(run_dir).resolve())}</code> &middot; generated {esc(now)} by lstmlab "
             f"{esc(__version__)}</p></header>",
             "<nav>" + "".join(f'<a href="#{s.key}">{esc(s.title)}</a>' for s in sections) + "</nav>"]
    for s in sections:
        parts.append(f'<section id="{esc(s.key)}"><h2>{esc(s.title)}</h2>{s.body}</section>')
    parts.append("<footer>Self-contained report: figures are embedded PNG images; the page loads nothing "
                 "from the network and runs no scripts.</footer></main></body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, examples: int = 3) -> Path:
    """Write the self-contained HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``).

    Returns the path written.  Missing inputs become notes in the page, never errors; only a
    ``run_dir`` that does not exist raises (``FileNotFoundError``).
    """
    page = build_html(run_dir, examples=examples)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
