"""What a study leaves in the run directory: the ranked table of trials (``trials.csv``,
``trials.md``), the best config as a ready-to-run ``best.toml`` (plus ``best.json``) and figures
(``history.png``, ``importance.png``, ``health.png``: each trial's score next to its gradient-health
verdict).  Everything is read from the study, so any worker on any machine can write it."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..config import dumps_toml
from ..run import RunDir
from .objective import health_text
from .space import TuneSpec, short_names
from .storage import ledger

__all__ = ["trial_rows", "format_table", "markdown_table", "write_report", "best_config", "param_importances"]

VERDICT_COLOURS = {"healthy": "#2a9d8f", "vanishing": "#457b9d", "exploding": "#e63946", None: "#9e9e9e"}
_STATE_ORDER = {"complete": 0, "pruned": 1, "diverged": 2, "error": 3, "killed": 4, "interrupted": 4,
                "running": 5, "waiting": 6}


def _state(t) -> str:
    from optuna.trial import TrialState

    outcome = t.user_attrs.get("outcome")
    if t.state == TrialState.COMPLETE:
        return "complete"
    if t.state == TrialState.PRUNED:
        return "diverged" if outcome == "diverged" else "pruned"
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.WAITING:
        return "waiting"
    return "error" if outcome == "error" else "killed"


def trial_rows(trials, spec: TuneSpec) -> list[dict]:
    """One row per counted trial (and per trial that a retry replaced), best first."""
    led = ledger(trials)
    sign = 1.0 if spec.direction == "minimize" else -1.0
    retry_of = {new: old for old, new in led.replaced.items()}
    by_param = {p.key: p for p in spec.params}
    rows = []
    shown = led.counted + [t for t in trials if t.number in led.replaced and t.state.is_finished()]
    for t in shown:
        state = _state(t)
        note = []
        if t.number in retry_of:
            first = t.system_attrs.get("failed_trial", retry_of[t.number])
            note.append(f"retry of {first}")
        if t.number in led.replaced:
            state = "interrupted" if t.user_attrs.get("outcome") == "interrupted" else "killed"
            note.append(f"retried as {led.replaced[t.number]}")
        if t.user_attrs.get("error"):
            note.append(str(t.user_attrs["error"]))
        elif t.user_attrs.get("reason") and state != "complete":
            note.append(str(t.user_attrs["reason"]))
        value = t.value if t.values else None
        params = {k: by_param[k].decode(v) if k in by_param else v for k, v in t.params.items()}
        rows.append({"trial": t.number, "state": state, "value": value, "epochs": t.user_attrs.get("epochs"),
                     "time_s": t.user_attrs.get("time_s"), "verdict": t.user_attrs.get("verdict"),
                     "gradients": health_text(t.user_attrs.get("verdict"), t.user_attrs.get("health")),
                     "health": t.user_attrs.get("health") or {},
                     "worker": t.user_attrs.get("worker"), "params": params, "note": "; ".join(note),
                     "test": t.user_attrs.get("test")})

    def key(r: dict) -> tuple:
        v = r["value"]
        bad = v is None or not math.isfinite(v)
        return (_STATE_ORDER.get(r["state"], 9), bad, 0.0 if bad else sign * v, r["trial"])

    rows.sort(key=key)
    rank = 0
    for r in rows:
        r["rank"] = (rank := rank + 1) if r["state"] == "complete" else None
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _table(rows: list[dict], spec: TuneSpec) -> tuple[list[str], list[list[str]]]:
    names = short_names([p.key for p in spec.params])
    head = ["rank", "trial", "state", spec.metric, "epochs", "time_s", "gradients"] + \
        [names[p.key] for p in spec.params] + ["note"]
    body = [[_cell(r["rank"]), str(r["trial"]), r["state"], _cell(r["value"]), _cell(r["epochs"]),
             _cell(r["time_s"]), r["gradients"]] + [_cell(r["params"].get(p.key)) for p in spec.params]
            + [r["note"] or ""] for r in rows]
    return head, body


def format_table(rows: list[dict], spec: TuneSpec) -> str:
    """The ranked table as aligned text (what ``lstmlab tune`` prints)."""
    head, body = _table(rows, spec)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body])


def markdown_table(rows: list[dict], spec: TuneSpec) -> str:
    """The ranked table in Markdown."""
    head, body = _table(rows, spec)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(esc(c) for c in b) + " |" for b in body]
    return "\n".join(out)


def _csv(rows: list[dict], spec: TuneSpec) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "trial", "state", spec.metric, "epochs", "time_s", "verdict", "gradients", "worker"]
               + [p.key for p in spec.params] + ["note"])
    for r in rows:
        w.writerow([r["rank"] if r["rank"] is not None else "", r["trial"], r["state"],
                    "" if r["value"] is None else repr(r["value"]), _blank(r["epochs"]), _blank(r["time_s"]),
                    r["verdict"] or "", r["gradients"], r["worker"] or ""]
                   + [json.dumps(r["params"][p.key]) if isinstance(r["params"].get(p.key), (dict, list))
                      else r["params"].get(p.key, "") for p in spec.params] + [r["note"]])
    return buf.getvalue()


def _blank(v: Any) -> Any:
    return "" if v is None else v


def best_config(spec: TuneSpec, params: dict[str, Any]) -> dict:
    """The config (without ``[tune]``) with the best trial's values."""
    return spec.config_for(params)


# ---------------------------------------------------------------------------------------------
# parameter importance
# ---------------------------------------------------------------------------------------------
def param_importances(study, spec: TuneSpec) -> tuple[str, dict[str, float]]:
    """(method, {key: importance}): optuna's fANOVA, else the share of the score's variance that
    each parameter's values explain on their own (a one-way ANOVA over the finished trials)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]
    varying = [p.key for p in spec.params if len({json.dumps(t.params.get(p.key)) for t in done}) > 1]
    if len(done) < 3 or not varying:
        return "none", {}
    try:
        from optuna.importance import FanovaImportanceEvaluator, get_param_importances

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=varying)
        return "fANOVA", {k: float(v) for k, v in imp.items()}
    except Exception:  # noqa: BLE001 - sklearn missing, too few trials, ...
        return "variance explained", _anova(done, varying)


def _anova(trials, keys: list[str]) -> dict[str, float]:
    y = np.array([t.value for t in trials], dtype=float)
    total = float(((y - y.mean()) ** 2).sum()) or 1.0
    out = {}
    for k in keys:
        vals = [t.params.get(k) for t in trials]
        if all(isinstance(v, (int, float)) for v in vals) and len(set(vals)) > 5:
            edges = np.quantile(np.asarray(vals, float), [0.2, 0.4, 0.6, 0.8])
            groups = np.digitize(np.asarray(vals, float), edges)
        else:
            idx = {json.dumps(v): i for i, v in enumerate(dict.fromkeys(json.dumps(v) for v in vals))}
            groups = np.array([idx[json.dumps(v)] for v in vals])
        between = sum(len(y[groups == g]) * (y[groups == g].mean() - y.mean()) ** 2 for g in set(groups))
        out[k] = float(between / total)
    s = sum(out.values()) or 1.0
    return dict(sorted(((k, v / s) for k, v in out.items()), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _figures(rows: list[dict], spec: TuneSpec, importance: tuple[str, dict], rd: RunDir) -> list[str]:
    """Draw the three figures into the run directory; their file names."""
    figs = {RunDir.TUNE_HISTORY: _history_figure(rows, spec), RunDir.TUNE_IMPORTANCE: _importance_figure(
        importance, spec), RunDir.TUNE_HEALTH: _health_figure(rows, spec)}
    return [rd.save_figure(fig, rd.path(name), dpi=110).name for name, fig in figs.items()]


def _history_figure(rows: list[dict], spec: TuneSpec):
    """Each trial's score by trial number, and the best so far."""
    from matplotlib.figure import Figure

    metric, sign = spec.metric, (1 if spec.direction == "minimize" else -1)
    by_number = sorted((r for r in rows if r["value"] is not None and math.isfinite(r["value"])),
                       key=lambda r: r["trial"])
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    done = [r for r in by_number if r["state"] == "complete"]
    other = [r for r in by_number if r["state"] != "complete"]
    if done:
        ax.scatter([r["trial"] for r in done], [r["value"] for r in done], s=22, color="#1d3557",
                   label="complete", zorder=3)
        best, xs, ys = None, [], []
        for r in done:
            if best is None or sign * r["value"] < sign * best:
                best = r["value"]
            xs.append(r["trial"])
            ys.append(best)
        ax.step(xs, ys, where="post", color="#e76f51", label="best so far")
    if other:
        ax.scatter([r["trial"] for r in other], [r["value"] for r in other], s=22, marker="x",
                   color="#9e9e9e", label="pruned (last reported)", zorder=2)
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"optimisation history ({spec.options['sampler']}, {spec.direction} {metric})")
    if done or other:
        ax.legend(frameon=False)
    return fig


def _importance_figure(importance: tuple[str, dict], spec: TuneSpec):
    """The parameters' importances for the metric."""
    from matplotlib.figure import Figure

    method, imp = importance
    fig = Figure(figsize=(7, 0.6 + 0.45 * max(1, len(imp))), layout="constrained")
    ax = fig.add_subplot()
    if imp:
        names = short_names(list(imp))
        keys = list(imp)[::-1]
        ax.barh([names[k] for k in keys], [imp[k] for k in keys], color="#457b9d")
        ax.set_xlabel("importance")
        ax.set_title(f"parameter importance ({method}, {spec.metric})")
    else:
        ax.text(0.5, 0.5, "too few finished trials for importances", ha="center", va="center")
        ax.set_axis_off()
    return fig


def _health_figure(rows: list[dict], spec: TuneSpec):
    """Each trial's score (ranked) coloured by its gradient-health verdict."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    ranked = [r for r in rows if r["value"] is not None and math.isfinite(r["value"])]
    fig = Figure(figsize=(max(6.0, 0.35 * len(ranked) + 2), 4), layout="constrained")
    ax = fig.add_subplot()
    if ranked:
        colours = [VERDICT_COLOURS.get(r["verdict"], VERDICT_COLOURS[None]) for r in ranked]
        bars = ax.bar(range(len(ranked)), [r["value"] for r in ranked], color=colours)
        top = max(r["value"] for r in ranked)
        if top > 0 and any(len(r["health"]) > 1 for r in ranked):
            ax.set_ylim(top=top * 1.3)  # room for the notes above the bars
        for b, r in zip(bars, ranked, strict=True):
            if r["state"] != "complete":
                b.set_hatch("//")
            others = [f"{n} {v}" for v, n in r["health"].items() if v != r["verdict"]]
            if others:  # checks during training that disagreed with the final verdict
                ax.annotate(", ".join(others), (b.get_x() + b.get_width() / 2, b.get_height()),
                            xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                            rotation=90, fontsize=7, color="#555555")
        ax.set_xticks(range(len(ranked)), [str(r["trial"]) for r in ranked], fontsize=8)
        seen = list(dict.fromkeys(r["verdict"] for r in ranked))
        handles = [Patch(color=VERDICT_COLOURS.get(v, VERDICT_COLOURS[None]), label=v or "no record")
                   for v in seen]
        if any(r["state"] != "complete" for r in ranked):
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="pruned"))
        ax.legend(handles=handles, frameon=False, fontsize=8)
    ax.set_xlabel("trial (ranked)")
    ax.set_ylabel(spec.metric)
    ax.set_title("score and gradient-health verdict per trial")
    return fig


def write_report(study, spec: TuneSpec, run_dir: Path, figures: bool = True) -> dict:
    """Write the table, best config and figures; return a summary (also ``best.json``)."""
    rd = RunDir(run_dir)
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(trials, spec)
    rd.write_text(rd.path(rd.TRIALS_CSV), _csv(rows, spec))
    led = ledger(trials)
    title = (f"# lstmlab tune: study {study.study_name}\n\n{spec.options['sampler']} sampler, "
             f"{spec.direction} {spec.metric}; {len(led.finished)} finished trials"
             + (f", {len(led.skipped)} skipped (duplicate grid point or over budget)" if led.skipped else "")
             + "\n\n")
    rd.write_text(rd.path(rd.TRIALS_MD), title + markdown_table(rows, spec) + "\n")
    summary: dict[str, Any] = {"study": study.study_name, "metric": spec.metric, "direction": spec.direction,
                               "finished": len(led.finished), "running": len(led.running),
                               "waiting": len(led.waiting), "skipped": len(led.skipped),
                               "complete": sum(1 for r in rows if r["state"] == "complete"),
                               "pruned": sum(1 for r in rows if r["state"] in ("pruned", "diverged")),
                               "failed": sum(1 for r in rows if r["state"] == "error"),
                               "best": None, "table": str(rd.path(rd.TRIALS_MD))}
    best = next((r for r in rows if r["rank"] == 1), None)
    if best is not None:
        cfg = best_config(spec, best["params"])
        header = (f"best of lstmlab tune study {study.study_name!r}: trial {best['trial']}, {spec.metric} = "
                  f"{best['value']!r}\nre-train: lstmlab train best.toml --run-dir RUN_DIR")
        rd.write_text(rd.path(rd.BEST_TOML), dumps_toml(cfg, header=header))
        summary["best"] = {"trial": best["trial"], "value": best["value"], "params": best["params"],
                           "gradients": best["gradients"], "config": str(rd.path(rd.BEST_TOML)),
                           "test": best.get("test")}
    importance = param_importances(study, spec)
    summary["importance"] = {"method": importance[0], "values": importance[1]}
    if figures:
        summary["figures"] = _figures(rows, spec, importance, rd)
    rd.write_json(rd.path(rd.BEST_JSON), summary)
    summary["rows"] = rows
    return summary
