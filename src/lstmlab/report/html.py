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
    models: dict[str, Path] = field(default_factory=dict)
    state: dict | None = None
    histories: dict[str, dict[str, list]] = field(default_factory=dict)
    health_groups: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def model_path(self) -> Path | None:
        """The run's (first) model file."""
        return next(iter(self.models.values()), None)


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
    order = [str(m) for m in (_get(run.result, "settings", "models") or [])]
    run.diagnose_files.sort(key=lambda p: next((k for k, m in enumerate(order) if p.stem.endswith(m)),
                                               len(order)))
    meta = _read_json(rd / "data_meta.json")
    run.data_meta = meta if isinstance(meta, dict) else None
    state = _read_json(rd / "checkpoints" / "state.json")
    run.state = state if isinstance(state, dict) else None
    ckpt = rd / "checkpoints"
    for cand in (rd / "model.lstmlab", ckpt / "best.lstmlab", ckpt / "last.lstmlab"):
        if cand.is_file():
            run.models = {"model": cand}
            break
    else:  # several models side by side (e.g. lstmlab demo: SimpleRNN.lstmlab, GRU.lstmlab, ...)
        found = {p.stem: p for p in sorted(rd.glob("*.lstmlab"))}
        order = list(_get(run.result, "settings", "models") or [])
        run.models = {k: found[k] for k in order if k in found}
        run.models.update({k: v for k, v in found.items() if k not in run.models})
    res = run.result or {}
    hist = res.get("history")
    if isinstance(hist, dict) and hist and all(isinstance(v, dict) for v in hist.values()):
        run.histories = {str(k): v for k, v in hist.items()}
    recs = res.get("records")
    if not run.health and isinstance(recs, dict):
        run.health_groups = {str(k): [r for r in v if isinstance(r, dict)] for k, v in recs.items()
                             if isinstance(v, list)}
    return run


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


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
    models = res.get("models") or _get(res, "summary", "models")
    if isinstance(models, dict) and models and all(isinstance(v, dict) for v in models.values()):
        cols: list[str] = []
        for v in models.values():
            cols += [k for k, x in v.items() if k not in cols and not isinstance(x, (dict, list))]
        mrows = [[name] + [badge(v.get(c)) if c == "verdict" else v.get(c) for c in cols]
                 for name, v in models.items()]
        raw = tuple(k + 1 for k, c in enumerate(cols) if c == "verdict")
        body += "<h3>Models</h3>" + table(["model"] + cols, mrows, raw_cols=raw)
        for k in ("task", "steps", "baseline_mse"):
            v = res.get(k, _get(res, "summary", k))
            if v is not None:
                body += f"<p>{esc(k)}: <b>{esc(_fmt(v))}</b></p>"
    elif not rows and not run.result:
        body += note("No result.json in this run directory (the run may still be going or was cut short); "
                     "final metrics are not available.")
    return Section("summary", "Summary and test metrics", body)


def _config(run: RunData) -> Section:
    settings = _get(run.result, "settings")
    if run.config_text is None and isinstance(settings, dict):
        return Section("config", "Config", "<p class=\"sub\">settings (results.json)</p>"
                       f"<pre>{esc(json.dumps(settings, indent=1))}</pre>")
    if run.config_text is None:
        return Section("config", "Config", note("No config.resolved.toml / .json in this run directory."))
    body = f"<p class=\"sub\">{esc(run.config_file)}</p><pre>{esc(run.config_text)}</pre>"
    return Section("config", "Config", body)


def _curves(run: RunData) -> Section:
    if not run.metrics and run.histories:
        keys = []
        for h in run.histories.values():
            keys += [k for k in h if not k.startswith("val_") and k not in keys]
        fig = F.compare_curves(run.histories, keys=(["loss"] if "loss" in keys else []) +
                               [k for k in keys if k != "loss"][:2])
        return Section("curves", "Training curves", fig_html(
            fig, f"Per-epoch curves of {', '.join(run.histories)} (solid: training, dashed: validation).",
            "training curves"))
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
    found = []
    for path in run.diagnose_files:
        d = _read_json(path)
        if isinstance(d, dict):
            cands = [d] if "per_step" in d else [v for v in d.values()
                                                 if isinstance(v, dict) and "per_step" in v]
            if cands:
                found.append((path, cands[-1]))
    if len(found) == 1:
        return found[0][1], found[0][0].name
    if found:  # several models: their profiles on one plot
        profiles = {}
        for path, rep in found:
            model = path.stem.removeprefix("diagnose").strip("_-") or path.stem
            for name, prof in F.flow_profiles(rep).items():
                verdict = _get(rep, "decay", name, "verdict") or rep.get("verdict", "")
                profiles[f"{model} {name} ({verdict})"] = prof
        return profiles, ", ".join(p.name for p, _ in found)
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
    elif run.health_groups:
        fig = F.health_timeline(run.health_groups)
        cap = ("Gradient decay log10(||dL/dh_1|| / ||dL/dh_T||) per GradientMonitor sample of each model "
               f"({', '.join(run.health_groups)}), points coloured by verdict.")
        body.append(fig_html(fig, cap, "gradient health timeline"))
        rows = []
        for name, recs in run.health_groups.items():
            counts: dict[str, int] = {}
            for r in recs:
                counts[str(r.get("verdict"))] = counts.get(str(r.get("verdict")), 0) + 1
            last = recs[-1] if recs else {}
            rows.append([name, len(recs), " ".join(f"{badge(k)}&nbsp;{v}" for k, v in counts.items()),
                         badge(last.get("verdict", "-")), last.get("decay")])
        body.append(table(["model", "samples", "verdicts", "last verdict", "last log10 decay"], rows,
                          raw_cols=(2, 3)))
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


def _data_table(run: RunData) -> dict | None:
    """The ``[data]`` table of the run's config; for a run without one (``lstmlab demo``) a small
    table rebuilt from ``results.json`` (task, steps, seed), or None."""
    data = _get(run.config, "data")
    if isinstance(data, dict) and "source" in data:
        return dict(data)
    res = run.result or {}
    task = res.get("task") or _get(res, "summary", "task")
    if not isinstance(task, str):
        return None
    from ..data import resolve_source

    try:
        src = resolve_source(task)
    except ValueError:
        return None
    steps = _get(res, "settings", "steps") or res.get("steps") or _get(res, "summary", "steps")
    seed = _get(res, "settings", "seed")
    table = {"source": src.name, "length": steps, "seed": seed, "n_train": 16, "n_val": 16, "n_test": 16}
    return {k: v for k, v in table.items() if v is not None and (k == "source" or k in src.options)}


def _load_examples(run: RunData, n: int) -> tuple[dict | None, str | None]:
    """A few examples from the run's data: ``{"x", "y", "lengths", "split", "meta", ...}`` or a reason."""
    data = _data_table(run)
    if data is None:
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


def _attention_one(model, ex: dict, label: str) -> list[str]:
    from ..attention import explain

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


def _attention(models: dict[str, Any], ex: dict | None, why: str | None) -> Section:
    title = "Attention"
    if not models:
        return Section("attention", title, note("No model file in this run directory; nothing to explain."))
    from ..attention import attention_layers

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
    from ..trace import trace

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


def _gates(models: dict[str, Any], ex: dict | None, why: str | None) -> Section:
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


def _model(models: dict[str, Any], run: RunData, errors: dict[str, str]) -> Section:
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
        body.append(note("No model file (model.lstmlab) in this run directory."))
    return Section("model", "Model", "".join(body))


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
def _load_models(run: RunData, limit: int = 4) -> tuple[dict[str, Any], dict[str, str]]:
    """Load up to ``limit`` of the run's models (eval mode); errors by name for the others."""
    from .. import attention  # noqa: F401 - registers the Attention layer for load_model
    from ..model import load_model

    models, errors = {}, {}
    for name, path in list(run.models.items())[:limit]:
        try:
            try:
                model = load_model(path)
            except Exception:  # noqa: BLE001 - the weights may still load without the optimizer
                model = load_model(path, compile=False)
            model.eval()
            models[name] = model
        except Exception as exc:  # noqa: BLE001
            errors[name] = f"{type(exc).__name__}: {exc}"
    return models, errors


def build_html(run_dir: str | os.PathLike, examples: int = 3, title: str | None = None) -> str:
    """The report page for ``run_dir`` as one HTML string."""
    run = read_run(run_dir)
    models, errors = _load_models(run)
    first = next(iter(models.values()), None)
    ex, why = None, "no model"
    if models:
        try:
            ex, why = _load_examples(run, examples)
        except Exception as exc:  # noqa: BLE001
            ex, why = None, f"loading the data failed ({type(exc).__name__}: {exc})"
    sections = [
        _guard("summary", "Summary and test metrics", lambda: _summary(run)),
        _guard("curves", "Training curves", lambda: _curves(run)),
        _guard("gradients", "Gradient health", lambda: _health(run, first, ex)),
        _guard("attention", "Attention", lambda: _attention(models, ex, why)),
        _guard("gates", "Gate activations", lambda: _gates(models, ex, why)),
        _guard("model", "Model", lambda: _model(models, run, errors)),
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
