"""What a doctor run leaves: ``doctor.json`` (everything), ``doctor.md`` (for people), ``best.toml``,
``report.html`` (the answer's run report with a Doctor section first) and the summary line.

Every probe is shown with its treatment, why it was proposed, its gradient-decay profile and
health, the slope of its early training loss and its validation score per rung; the text says why
the winner won, and plainly when the doctor could not help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import dumps_toml
from ..report.html import write_report
from ..report.page import Section, esc, fig_html, fmt, note, table
from ..run import RunDir
from .diagnosis import Diagnosis, headline, headline_text, learned
from .treatments import WHEN

__all__ = ["summary", "write_all", "write_best", "result_line", "markdown", "html_section", "DOCTOR_JSON",
           "DOCTOR_MD"]

DOCTOR_JSON = "doctor.json"
DOCTOR_MD = "doctor.md"


def _all_counts(p) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in p.slices:
        for v, n in s.counts.items():
            out[v] = out.get(v, 0) + int(n)
    return out


def _side(p, remedies: bool) -> dict[str, Any]:
    counts = _all_counts(p)
    s = p.last
    v = p.val_probe.last if p.val_probe is not None and p.val_probe.last is not None else s
    d: dict[str, Any] = {"verdict": headline(counts)[0] if counts else (s.end_verdict if s else None),
                         "health": headline_text(counts) if counts else "no gradient samples",
                         "val": v.val if v else None, "test": s.test if s else None,
                         "epochs": p.final_epochs or p.epochs_done(), "trained_s": round(p.trained_s, 1)}
    if remedies:
        d = {"remedies": p.candidate.remedies, **d}
    return d


def _why(winner, probes: list, metric: str) -> str:
    """Why the winner won: its score against the others at the last rung they shared, and its health."""
    s = winner.last
    if s is None:
        return "no probe finished a slice"
    rivals = [p for p in probes if p is not winner and p.last is not None and p.stage is None]
    parts = []
    name = metric.removeprefix("val_")
    for p in sorted(rivals, key=lambda p: -(p.pruned_at if p.pruned_at is not None else 99))[:2]:
        r = p.pruned_at if p.pruned_at is not None else p.last.rung
        mine = next((x for x in winner.slices if x.rung == r), s)
        theirs = p.slices[-1]
        parts.append(f"at rung {r} its {metric} was {fmt((mine.val or {}).get(name))} against "
                     f"{fmt((theirs.val or {}).get(name))} for {p.label} ({theirs.verdict or '-'} gradients)")
    health = headline_text(_all_counts(winner))
    decay = f", decay 10^{s.decay:+.1f} over the sequence" if s.decay is not None else ""
    lead = f"{winner.label} ranked first on {metric}"
    tied = [p for p in rivals if (p.last.val or {}).get(name) == (s.val or {}).get(name) and p.last.val]
    if tied and metric == "val_accuracy":
        lead += (f" (tied at {fmt((s.val or {}).get(name))} with {len(tied)} other probe(s); its lower validation "
                 f"loss, {fmt((s.val or {}).get('loss'))}, broke the tie)")
    return lead + ("; " + "; ".join(parts) if parts else "") + f". Its gradients: {health}{decay}."


def _message(answer, winner, plain, facts, metric: str, n: int) -> str:
    shown = answer.val_probe or answer
    after = shown.last.val if shown.last else None
    if answer.fallback_from:
        how = ("ended below the plain config on validation" if answer.fallback_why == "below" else
               "was not clearly better than the plain config on validation (the difference is within the noise "
               f"of {facts.n_val} validation samples)")
        msg = (f"The doctor could not help: the best treatment ({answer.fallback_from}) {how}, so the plain config "
               "stays.")
    elif answer is plain:
        msg = (f"The doctor could not improve on the plain config: none of the {n - 1} treatments scored better "
               f"on validation {metric} within the budget.")
    else:
        name = metric.removeprefix("val_")
        b, a = (plain.last.val or {}).get(name) if plain.last else None, (after or {}).get(name)
        bt = (plain.last.test or {}).get(name) if plain.last else None
        at = (answer.last.test or {}).get(name) if answer.last else None
        msg = (f"Treated with {answer.label}: validation {name} {fmt(b)} -> {fmt(a)}, test {name} {fmt(bt)} -> "
               f"{fmt(at)}.")
    if answer.val_probe is not None:
        msg += (f" The validation score is that of the same config trained without the validation series; the "
                f"answer then trained on all {facts.n_train + facts.n_val} series for the same number of steps.")
    if not learned(after, facts, metric):
        base = facts.baseline_loss()
        msg += (" The task is not solved: the result is no better than a model without memory"
                + (f" (baseline loss {base:.4g})." if base is not None else "."))
    return msg


def summary(plan, diag: Diagnosis, probes: list, winner, answer, plain, time_s: float, ps) -> dict[str, Any]:
    """Everything about the run (``doctor.json``)."""
    return {"config": str(plan.config_path), "time_s": round(time_s, 1), "metric": plan.metric,
            "facts": plan.facts.to_dict(), "diagnosis": diag.to_dict(),
            "probes": [p.summary() for p in probes], "winner": winner.label, "answer": answer.label,
            "before": _side(plain, False), "after": _side(answer, True),
            "why": _why(winner, probes, plan.metric),
            "message": _message(answer, winner, plain, plan.facts, plan.metric, len(probes)),
            "study": {"name": ps.name, "storage": ps.url}, "answer_run_dir": str(answer.rd.root)}


def result_line(s: dict[str, Any]) -> dict[str, Any]:
    """The JSON object ``lstmlab doctor`` prints last, exactly the shape of its spec (issue 13):
    ``{"before": {verdict, val, test}, "after": {remedies, verdict, val, test}, "probes": N, "time_s": ..}``.
    Everything else (health counts, epochs, the message) is in ``doctor.json``."""
    return {"before": {k: s["before"].get(k) for k in ("verdict", "val", "test")},
            "after": {k: s["after"].get(k) for k in ("remedies", "verdict", "val", "test")},
            "probes": len(s["probes"]), "time_s": s["time_s"]}


# ---------------------------------------------------------------------------------------------
# tables shared by the markdown and the HTML
# ---------------------------------------------------------------------------------------------
PROBE_HEAD = ["#", "treatment", "why proposed", "val per rung", "gradients", "decay (end)", "loss slope /min",
              "trained s", "outcome"]


def _unpruned(p: dict[str, Any], s: dict[str, Any]) -> str:
    if p.get("stage") == "ensemble":
        return "check on validation (trained without the validation series)" if p.get("why") is None \
            else f"check: {p['why']}; not used"
    return "winner" if p["label"] == s["winner"] else "not pruned (probing ended)"


def _probe_rows(s: dict[str, Any]) -> list[list[Any]]:
    name = s["metric"].removeprefix("val_")
    rows = []
    for p in s["probes"]:
        sl = p["slices"]
        scores = " / ".join(fmt((x["val"] or {}).get(name)) for x in sl) or "-"
        counts: dict[str, int] = {}
        for x in sl:
            for v, n in x["counts"].items():
                counts[v] = counts.get(v, 0) + n
        last = sl[-1] if sl else {}
        decay = last.get("decay")
        pruned = f"pruned at rung {p['pruned_at']}" if p["pruned_at"] is not None else None
        outcome = ("answer" + (f" ({pruned}; kept by the never-worse rule)" if pruned else "")
                   if p["run_dir"] == s["answer_run_dir"] else pruned or _unpruned(p, s))
        rows.append([p["index"], p["label"], p["reason"], scores, headline_text(counts) if counts else "-",
                     "-" if decay is None else f"10^{decay:+.1f}",
                     "-" if last.get("slope") is None else f"{last['slope']:+.2%}", p["trained_s"], outcome])
    return rows


def _side_rows(s: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for side in ("before", "after"):
        d = s[side]
        metrics = "; ".join(f"{k} {fmt(v)}" for k, v in (d.get("test") or {}).items())
        val = "; ".join(f"{k} {fmt(v)}" for k, v in (d.get("val") or {}).items())
        rows.append([side, ", ".join(d.get("remedies", [])) or "plain",
                     d.get("health") or "-", val or "-", metrics or "-", d.get("epochs"), d.get("trained_s")])
    return rows


SIDE_HEAD = ["", "treatment", "gradients", "validation", "test", "epochs", "trained s"]


def _md_table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return fmt(v).replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown(s: dict[str, Any]) -> str:
    """``doctor.md``."""
    d, f = s["diagnosis"], s["facts"]
    lines = [f"# lstmlab doctor: {s['config']}", "", s["message"], "",
             _md_table(SIDE_HEAD, _side_rows(s)), "",
             "## Diagnosis of the plain config", "",
             f"- gradients during the probe: {d['text']}",
             f"- at the end of the probe (diagnose on validation data): {d['end_verdict'] or '-'}"
             + (f", decay 10^{d['decay']:+.1f} over the sequence" if d.get("decay") is not None else ""),
             f"- learning: {'yes' if d['learned'] else 'no better than the memoryless baseline'}",
             f"- data: {f['kind']}, target per {'step' if f['target'] == 'per_step' else 'sequence'}, "
             f"{f['steps']} steps, {f['n_features'] or 'token'} features, {f['n_train']} training / "
             f"{f['n_val']} validation sequences", ""]
    if d.get("remedies"):
        lines += ["Remedies `lstmlab.diagnose` lists: " + "; ".join(f"`{r}`" for r in d["remedies"][:5]), ""]
    lines += ["## Probes", "", f"Selection on validation ({s['metric']}); successive halving in time slices; "
              f"Optuna study `{s['study']['name']}` in `{s['study']['storage']}`.", "",
              _md_table(PROBE_HEAD, _probe_rows(s)), "", "## Why the winner won", "", s["why"], "",
              "## When each treatment helps", ""]
    kinds = sorted({t["kind"] for p in s["probes"] for t in p["treatments"]})
    lines += [f"- `{k}`: {WHEN[k]}" for k in kinds] or ["- (no treatment was probed)"]
    lines += ["", "## Reproduce", "", "```", f"lstmlab train {s.get('best_toml', 'best.toml')} --run-dir RUN_DIR",
              "```", "", f"The answer's run directory: `{s['answer_run_dir']}`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------
def _profiles_figure(s: dict[str, Any]):
    """log10 ||dL/dh_t|| (relative to the last step) against the fraction of the sequence, per probe."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    drawn = 0
    for p in s["probes"]:
        prof = next((x["profile"] for x in reversed(p["slices"]) if x.get("profile")), None)
        if not prof:
            continue
        a = np.asarray(prof, dtype=np.float64)
        a = np.where(np.isfinite(a) & (a > 0), a, np.nan)
        ref = a[-1] if np.isfinite(a[-1]) else np.nanmax(a)
        pos = np.linspace(0, 1, len(a))
        ax.plot(pos, np.log10(a / ref), lw=1.5, label=f"{p['index']}: {p['label']} ({len(a)} steps)")
        drawn += 1
    if not drawn:
        return None
    ax.axhline(-3, color="0.5", ls=":", lw=1, label="vanishing below 10^-3")
    ax.set_xlabel("position in the sequence (fraction of the steps the recurrent layer runs)")
    ax.set_ylabel("log10 ||dL/dh_t|| / ||dL/dh_T||")
    ax.set_title("Gradient reaching each step at the end of each probe")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def html_section(s: dict[str, Any]) -> Section:
    """The Doctor section of ``report.html``."""
    body = [f"<p><b>{esc(s['message'])}</b></p>", table(SIDE_HEAD, _side_rows(s)),
            f"<h3>Diagnosis of the plain config</h3><p>{esc(s['diagnosis']['text'])}"
            + (f"; decay 10^{s['diagnosis']['decay']:+.1f} at the end of its probe" if s["diagnosis"].get("decay")
               is not None else "") + ".</p>",
            "<h3>Probes</h3>", table(PROBE_HEAD, _probe_rows(s)),
            f"<h3>Why the winner won</h3><p>{esc(s['why'])}</p>"]
    try:
        fig = _profiles_figure(s)
        if fig is not None:
            body.append(fig_html(fig, "Decay profiles of the probes (diagnose on validation data)"))
    except Exception as exc:  # noqa: BLE001 - a figure problem must not sink the section
        body.append(note(f"figure not drawn: {type(exc).__name__}: {exc}"))
    body.append(f"<p>Re-run the answer: <code>lstmlab train {esc(s.get('best_toml', 'best.toml'))} "
                "--run-dir RUN_DIR</code></p>")
    return Section("doctor", "Doctor", "".join(body))


def write_best(rd: RunDir, answer, header: str) -> Path:
    """``best.toml``: the answer's config with its final number of epochs."""
    cfg = answer.config(answer.final_epochs or answer.epochs_done())
    return rd.write_text(rd.path(rd.BEST_TOML), dumps_toml(cfg, header=header))


def write_all(rd: RunDir, s: dict[str, Any], answer, out) -> None:
    """best.toml, doctor.json, doctor.md and report.html into the doctor's run directory."""
    header = (f"written by lstmlab doctor: {s['answer']} ({s['message']})\n"
              f"re-run: lstmlab train best.toml --run-dir RUN_DIR")
    s["best_toml"] = str(write_best(rd, answer, header))
    rd.write_json(rd.path(DOCTOR_JSON), s)
    rd.write_text(rd.path(DOCTOR_MD), markdown(s))
    try:
        write_report(answer.rd.root, out=rd.report, extra=[html_section(s)])
        out(f"wrote {rd.report}", flush=True)
    except Exception as exc:  # noqa: BLE001 - the report never fails the run
        out(f"warning: report.html not written ({type(exc).__name__}: {exc})", flush=True)
    out(s["message"], flush=True)
    out(f"wrote {rd.path(DOCTOR_MD)}, {rd.path(DOCTOR_JSON)}, {s['best_toml']}", flush=True)
