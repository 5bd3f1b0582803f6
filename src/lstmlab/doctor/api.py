"""``doctor(config, run_dir, budget_minutes=10)``: diagnose a config, probe treatments, train the winner.

1. **Plain probe**: the config as given trains one slice under the GradientMonitor; its samples,
   :func:`lstmlab.diagnose` on validation data and its progress against the memoryless baseline
   make the :class:`~lstmlab.doctor.diagnosis.Diagnosis`.
2. **Candidates** from the diagnosis and the data (:mod:`lstmlab.doctor.candidates`).
3. **Probing**: an Optuna study, one trial per candidate, successive halving in time slices
   (:mod:`lstmlab.doctor.study`) within ``probe_share`` of the budget; the plain config competes too.
4. **The winner** (best validation score) trains on, to as many epochs as the rest of the budget
   allows, and its config becomes ``best.toml`` (``lstmlab train best.toml`` repeats it).  On a
   small set of continuous series to classify, the winner becomes an ensemble instead
   (:mod:`lstmlab.doctor.small`).
5. **Never worse**: if the winner ends below the plain config on validation, the plain config is
   the answer and the report says that the doctor could not help.

Everything is written into ``run_dir``: ``probes/NN-label/`` (one ``lstmlab train`` run directory
per candidate), ``study.db``, ``best.toml``, ``doctor.json``, ``doctor.md`` and ``report.html``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import ConfigError, validate
from ..run import RunDir, RunDirError
from . import report, small
from .candidates import Candidate, propose
from .diagnosis import Diagnosis, clearly_better, headline, learned
from .plan import Plan, make_plan
from .probe import EPOCH_CAP, Probe
from .study import Budget, DoctorError, ProbeStudy, halve, rank, solved
from .treatments import apply

__all__ = ["doctor", "DoctorSettings"]

PROBES = "probes"


@dataclass
class DoctorSettings:
    """The knobs of a doctor run (the defaults are what ``lstmlab doctor`` uses)."""

    probe_share: float = 0.6     # of the budget for probing; the rest trains the winner
    min_slice_s: float = 5.0     # the shortest slice a probe trains (it ends at an epoch boundary)
    max_candidates: int = 6      # the plain config included
    diagnose_batch: int = 256    # validation samples for lstmlab.diagnose
    threads: int | None = None   # torch threads during the run (None: leave as is)
    ensemble_steps: int = small.STEPS         # small training sets: optimizer steps per ensemble member
    min_ensemble_steps: int = small.MIN_STEPS  # fewer fit in the budget: the probes' winner trains on instead
    extra: dict = field(default_factory=dict)


def _check_args(budget_minutes: float, rd: RunDir) -> None:
    """Read only: the budget is a positive number; the run directory is absent or empty (the doctor writes
    a fresh one) and passes :meth:`RunDir.check` (no link, not another kind of run, not in use)."""
    if isinstance(budget_minutes, bool) or not isinstance(budget_minutes, (int, float)) \
            or not math.isfinite(budget_minutes) or budget_minutes <= 0:
        raise DoctorError(f"--budget-minutes: expected a positive number of minutes, got {budget_minutes!r}")
    try:
        rd.check("doctor")
    except RunDirError as exc:
        raise DoctorError(str(exc)) from None
    if rd.root.is_dir() and any(rd.root.iterdir()):
        raise DoctorError(f"--run-dir {rd.root}: is not empty; the doctor writes a fresh directory (choose another)")


def doctor(config: str | os.PathLike, run_dir: str | os.PathLike, budget_minutes: float = 10.0,
           storage: str | None = None, study: str | None = None, out: Callable = print,
           settings: DoctorSettings | None = None) -> dict[str, Any]:
    """Diagnose ``config``, probe treatments within ``budget_minutes``, train the winner; return the
    summary (the JSON line ``lstmlab doctor`` prints last).  See the module doc."""
    s = settings or DoctorSettings()
    rd = RunDir(run_dir)
    _check_args(budget_minutes, rd)
    t0 = time.monotonic()
    plan = make_plan(config, s.diagnose_batch)
    share = min(s.probe_share, small.PROBE_SHARE) if small.applies(plan) else s.probe_share
    budget = Budget(end=t0 + 60.0 * budget_minutes, probe_end=t0 + 60.0 * budget_minutes * share)
    try:
        lock = rd.claim("doctor")
    except RunDirError as exc:
        raise DoctorError(str(exc)) from None
    threads = torch.get_num_threads()
    if s.threads:
        torch.set_num_threads(int(s.threads))
    try:
        ps = ProbeStudy(rd.root, storage, study or "doctor")
        return _run(plan, rd, ps, budget, s, out, t0)
    finally:
        lock.release()
        torch.set_num_threads(threads)


def _probe(plan: Plan, rd: RunDir, index: int, cand: Candidate) -> Probe:
    cfg = apply(plan.base, plan.facts, cand.treatments)
    cfg["train"]["epochs"] = EPOCH_CAP
    try:
        validate(dict(cfg), plan.config_path)
    except ConfigError as exc:  # a treatment that does not fit this config: a bug worth a clear line
        raise DoctorError(f"candidate {cand.label}: {exc}") from None
    return Probe(index, cand, cfg, rd.path(PROBES), plan.facts, plan.metric, plan.val_batch)


def _first_slice(n_candidates: int, budget: Budget, s: DoctorSettings) -> float:
    """Rung-0 slice: the probing time split so that halving leaves each rung about as long as the first."""
    share = budget.probe_left() / max(1, 2 * n_candidates - 1)
    return max(s.min_slice_s, share)


def _diagnosis(plan: Plan, plain: Probe) -> Diagnosis:
    sl = plain.last
    assert sl is not None
    return Diagnosis(verdict=headline(sl.counts)[0] if sl.counts else (sl.end_verdict or "healthy"),
                     counts=dict(sl.counts), end_verdict=sl.end_verdict, decay=sl.decay, cells=plan.cells,
                     learned=learned(sl.val, plan.facts, plan.metric), clipped=plan.clipped,
                     remedies=list(sl.remedies), slope=sl.slope)


def _run(plan: Plan, rd: RunDir, ps: ProbeStudy, budget: Budget, s: DoctorSettings, out: Callable,
         t0: float) -> dict[str, Any]:
    f = plan.facts
    out(f"lstmlab doctor: {plan.config_path} ({f.kind}, {f.steps} steps x {f.n_features or 'token'} features, "
        f"{f.n_train} training sequences); budget {(budget.end - t0) / 60:.3g} min; study {ps.name!r} in {ps.url}",
        flush=True)
    plain = _probe(plan, rd, 0, Candidate((), "the config as given"))
    ps.open(plain)
    first = _first_slice(s.max_candidates, budget, s)
    out(f"probe 0 (plain): training {first:.0f} s under the GradientMonitor ...", flush=True)
    plain.run(0, first)
    ps.report(plain)
    diag = _diagnosis(plan, plain)
    out(f"diagnosis: {diag.text}; end of probe: {diag.end_verdict or '-'}"
        + (f", decay 10^{diag.decay:+.1f}" if diag.decay is not None else "")
        + f"; {'learning' if diag.learned else 'not better than the memoryless baseline'}", flush=True)
    cands = propose(diag, f, s.max_candidates)
    probes = [plain] + [_probe(plan, rd, i, c) for i, c in enumerate(cands[1:], start=1)]
    for p in probes[1:]:
        out(f"candidate {p.index}: {p.label} ({p.candidate.reason})", flush=True)
    live = _probing(plan, ps, probes, budget, s, first, out)
    winner = rank(live, f, plan.metric)[0]
    for p in live:
        if p is not winner:
            ps.complete(p)
    answer = None
    if small.applies(plan) and not small.plain_solves(diag, plain):
        ps.complete(winner)
        answer = small.ensemble_stage(plan, ps, probes, winner, plain, budget, rd.path(PROBES), out,
                                       s.ensemble_steps, s.min_ensemble_steps)
    if answer is None:
        answer = _final(plan, ps, winner, plain, budget, out)
    summary = report.summary(plan, diag, probes, winner, answer, plain, time.monotonic() - t0, ps)
    report.write_all(rd, summary, answer, out)
    return report.result_line(summary)


def _probing(plan: Plan, ps: ProbeStudy, probes: list[Probe], budget: Budget, s: DoctorSettings, first: float,
             out: Callable) -> list[Probe]:
    """Successive halving; returns the probes still live (best first)."""
    live, rung, slice_s = list(probes), 0, first
    while True:
        for p in live:
            if p.last is None or p.last.rung < rung:
                if p.trial is None:
                    ps.open(p)
                p.run(rung, slice_s)
                ps.report(p)
        best = rank(live, plan.facts, plan.metric)[0]
        if len(live) == 1 or solved(best, plan.facts, plan.metric):
            if len(live) > 1:
                out(f"rung {rung}: {best.label} solved the task on validation data; probing stops", flush=True)
            return rank(live, plan.facts, plan.metric)
        out(f"rung {rung} done ({len(live)} probes):", flush=True)
        live = halve(ps, live, plan.facts, plan.metric, rung, out)
        rung += 1
        slice_s = max(s.min_slice_s, min(2 * slice_s, budget.probe_left() / max(1, len(live))))
        if budget.probe_left() < s.min_slice_s or len(live) == 1:
            return live


def _final(plan: Plan, ps: ProbeStudy, winner: Probe, plain: Probe, budget: Budget, out: Callable) -> Probe:
    """Train the winner on to the epochs the budget allows; the never-worse check; the answer."""
    done = winner.epochs_done()
    per_epoch = winner.epoch_seconds()
    more = int(max(0.0, 0.95 * budget.left()) // max(per_epoch, 1e-6))
    target = done + more
    status = (winner.last.status if winner.last else "")
    perfect = solved(winner, plan.facts, plan.metric) and plan.metric == "val_accuracy" \
        and (winner.last.val or {}).get("accuracy") == 1.0  # nothing left to gain on a large validation split
    if more > 0 and status not in ("early_stopped", "completed") and not perfect:
        out(f"winner: {winner.label}; training on to epoch {target} (about {more * per_epoch:.0f} s) ...", flush=True)
        winner.run(winner.last.rung + 1 if winner.last else 0, None, epochs=target)
    else:
        target = winner.epochs_done()
    winner.final_epochs = target
    ps.complete(winner)
    if winner is not plain and plain.last is not None and winner.last is not None \
            and not clearly_better(winner.last.val, plain.last.val, plan.facts, plan.metric):
        below = winner.last.key < plain.last.key
        out(f"never worse: {winner.label} ended {'below' if below else 'within the noise of'} the plain config on "
            "validation; keeping the plain config", flush=True)
        plain.final_epochs = plain.epochs_done()
        plain.fallback_from = winner.label
        plain.fallback_why = "below" if below else "within noise"
        return plain
    return winner


__all__ += ["PROBES"]
