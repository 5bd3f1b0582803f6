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
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..diagnostics import diagnose
from ..run import RunDir
from . import figures as F
from .examples import attention_section, gates_section, load_examples, model_section
from .page import CSS, Section, badge, esc, fig_html, fmt, guard, note, table
from .rundata import RunData, get, load_models, read_run

__all__ = ["write_report", "build_html", "RunData", "read_run"]


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
        cards.append(("epochs", esc(fmt(epochs))))
    test = res.get("test") if isinstance(res.get("test"), dict) else None
    for k, v in (test or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            cards.append((f"test {k}", esc(fmt(v))))
    if res.get("time_s") is not None:
        cards.append(("training time", esc(f"{fmt(res['time_s'])} s")))
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
                if not isinstance(v, dict):  # the forecast table below shows the nested one
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
    body += _forecast(res)
    models = res.get("models") or get(res, "summary", "models")
    if isinstance(models, dict) and models and all(isinstance(v, dict) for v in models.values()):
        cols: list[str] = []
        for v in models.values():
            cols += [k for k, x in v.items() if k not in cols and not isinstance(x, (dict, list))]
        mrows = [[name] + [badge(v.get(c)) if c == "verdict" else v.get(c) for c in cols]
                 for name, v in models.items()]
        raw = tuple(k + 1 for k, c in enumerate(cols) if c == "verdict")
        body += "<h3>Models</h3>" + table(["model"] + cols, mrows, raw_cols=raw)
        for k in ("task", "steps", "baseline_mse"):
            v = res.get(k, get(res, "summary", k))
            if v is not None:
                body += f"<p>{esc(k)}: <b>{esc(fmt(v))}</b></p>"
    elif not rows and not run.result:
        body += note("No result.json in this run directory (the run may still be going or was cut short); "
                     "final metrics are not available.")
    return Section("summary", "Summary and test metrics", body)


def _forecast(res: dict) -> str:
    """The model against the persistence and seasonal-naive forecasts, in the series' own units."""
    rows, steps = [], []
    for split in ("val", "test"):
        fc = get(res, split, "forecast")
        if not isinstance(fc, dict):
            continue
        m = fc.get("seasonal_period")
        rows += [[split, f"model (transform {fc.get('transform')})", fc.get("rmse"), fc.get("mae"), fc.get("mase")],
                 [split, "persistence", fc.get("persistence_rmse"), fc.get("persistence_mae"), None],
                 [split, f"seasonal naive (m={m})", fc.get("seasonal_naive_rmse"), fc.get("seasonal_naive_mae"), None]]
        per_step = fc.get("per_step_rmse")
        if isinstance(per_step, list) and len(per_step) > 1:
            steps.append([split] + per_step)
    if not rows:
        return ""
    out = ("<h3>Forecast in original units</h3>" + table(["split", "forecast", "RMSE", "MAE", "MASE"], rows)
           + note("Scored on the same windows; MASE is the model's MAE over the in-sample MAE of the "
                  "seasonal-naive one-step forecast on the training rows (below 1: better than it)."))
    if steps:
        width = max(len(r) for r in steps) - 1
        out += "<h4>RMSE per step ahead</h4>" + table(["split"] + [f"t+{j + 1}" for j in range(width)], steps)
    return out


def _config(run: RunData) -> Section:
    settings = get(run.result, "settings")
    if run.config_text is None and isinstance(settings, dict):
        return Section("config", "Config", "<p class=\"sub\">settings (results.json)</p>"
                       f"<pre>{esc(json.dumps(settings, indent=1))}</pre>")
    if run.config_text is None:
        return Section("config", "Config", note(f"No {RunDir.CONFIG_TOML} / .json in this run directory."))
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
        return Section("curves", "Training curves", note(f"No {RunDir.METRICS} (or it is empty): no curves."))
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
        d = RunDir.read_json(path)
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
                verdict = get(rep, "decay", name, "verdict") or rep.get("verdict", "")
                profiles[f"{model} {name} ({verdict})"] = prof
        return profiles, ", ".join(p.name for p, _ in found)
    if model is not None and examples is not None:
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
    body = _health_records(run) + _remedies_applied(run) + _gradient_flow(run, model, examples)
    return Section("gradients", "Gradient health", "".join(body))


def _health_records(run: RunData) -> list[str]:
    """The GradientMonitor's samples: timeline figure, verdict counts, where the verdict changed."""
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
        body.append(note(f"No {RunDir.HEALTH} records: the GradientMonitor was off or the run wrote "
                         "none."))
    return body


def _remedies_applied(run: RunData) -> list[str]:
    body = ["<h3>Remedies applied and findings</h3>"]
    if run.events:
        rows = []
        for e in run.events:
            skip = ("step", "event", "action", "remedies", "epoch")
            detail = e.get("message") or ", ".join(f"{k}={fmt(v)}" for k, v in e.items() if k not in skip)
            rem = e.get("remedies") or []
            rows.append([e.get("step"), e.get("event"), e.get("action", ""), detail,
                         "<br>".join(esc(r) for r in rem[:3]) if rem else ""])
        body.append(table(["step", "event", "action", "detail", "suggested remedies"], rows, raw_cols=(4,)))
    else:
        body.append("<p>None recorded: no clipping, restores or weight decay were switched on during the "
                    "run.</p>")
    return body


def _gradient_flow(run: RunData, model, examples) -> list[str]:
    body = ["<h3>Gradient flow through time</h3>"]
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
    return body


def build_html(run_dir: str | os.PathLike, examples: int = 3, title: str | None = None,
               extra: Sequence[Section] = ()) -> str:
    """The report page for ``run_dir`` as one HTML string; ``extra`` sections (e.g. the doctor's) come first."""
    run = read_run(run_dir)
    models, errors = load_models(run)
    first = next(iter(models.values()), None)
    ex, why = None, "no model"
    if models:
        try:
            ex, why = load_examples(run, examples)
        except Exception as exc:  # noqa: BLE001
            ex, why = None, f"loading the data failed ({type(exc).__name__}: {exc})"
    sections = list(extra) + [
        guard("summary", "Summary and test metrics", lambda: _summary(run)),
        guard("curves", "Training curves", lambda: _curves(run)),
        guard("gradients", "Gradient health", lambda: _health(run, first, ex)),
        guard("attention", "Attention", lambda: attention_section(models, ex, why)),
        guard("gates", "Gate activations", lambda: gates_section(models, ex, why)),
        guard("model", "Model", lambda: model_section(models, run, errors)),
        guard("config", "Config", lambda: _config(run)),
    ]
    name = title or f"lstmlab report: {Path(run_dir).resolve().name}"
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
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


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, examples: int = 3,
                 extra: Sequence[Section] = ()) -> Path:
    """Write the self-contained HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``).

    Returns the path written.  Missing inputs become notes in the page, never errors; only a
    ``run_dir`` that does not exist raises (``FileNotFoundError``).
    """
    page = build_html(run_dir, examples=examples, extra=extra)
    rd = RunDir(run_dir)
    return rd.write_text(Path(out) if out is not None else rd.report, page)
