"""The probe study: every candidate is a trial of an Optuna study (the storage of ``lstmlab tune``:
SQLite in the run directory by default, any SQLAlchemy URL such as PostgreSQL), probed by
successive halving in time slices.

Rungs: every live probe trains one slice (ending at an epoch boundary) and reports its score as the
trial's intermediate value for that rung.  Then the probes are ranked (:func:`rank`) and the lower
half is pruned (``TrialState.PRUNED``), along with any probe that diverged.  The study goes on until
one probe is left, the probing share of the budget is spent, or a probe has clearly solved the task;
the survivors' trials are completed with their last score.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ..tune.storage import StorageError, mask_url, open_storage, storage_url
from .diagnosis import SEVERITY, learned
from .facts import DataFacts
from .probe import Probe

__all__ = ["ProbeStudy", "rank", "solved", "DoctorError"]


class DoctorError(ValueError):
    """A doctor run that cannot start as asked (one line naming the option or the file)."""


def _tier(p: Probe, facts: DataFacts, metric: str) -> tuple:
    """Sort key of a probe after its last slice (smaller is better): learned probes by their score;
    probes that learned nothing yet by gradient health first (healthy < vanishing < exploding),
    then by score (tiny but real differences near the baseline), then by the loss slope."""
    s = p.last
    if s is None or not math.isfinite(s.key):
        return (3, 3, math.inf, math.inf)
    if learned(s.val, facts, metric):
        return (0, 0, -s.key, 0.0)
    health = SEVERITY.get(s.verdict or s.end_verdict or "healthy", 1)
    return (1, health, -s.key, s.slope if s.slope is not None else 0.0)


def rank(probes: list[Probe], facts: DataFacts, metric: str) -> list[Probe]:
    """The probes, best first (see :func:`_tier`); the earlier candidate wins exact ties."""
    return sorted(probes, key=lambda p: (_tier(p, facts, metric), p.index))


def solved(p: Probe, facts: DataFacts, metric: str) -> bool:
    """A probe that leaves nothing to find: validation loss under 2% of the memoryless baseline, or
    (with at least 200 validation samples) accuracy of 99.5% or more."""
    s = p.last
    if s is None or not isinstance(s.val, dict):
        return False
    if metric == "val_accuracy":
        acc = s.val.get("accuracy")
        return isinstance(acc, (int, float)) and acc >= 0.995 and facts.n_val >= 200
    base, loss = facts.baseline_loss(), s.val.get("loss")
    return base is not None and isinstance(loss, (int, float)) and loss < 0.02 * base


@dataclass
class Budget:
    """Wall-clock seconds: the end of the whole run, and of the probing."""

    end: float
    probe_end: float

    def left(self) -> float:
        return self.end - time.monotonic()

    def probe_left(self) -> float:
        return self.probe_end - time.monotonic()


class ProbeStudy:
    """The Optuna study that records the probes (one trial each)."""

    def __init__(self, run_dir, storage: str | None, name: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the doctor prints its own lines
        url = storage_url(storage, run_dir)
        st = open_storage(url)
        self.url, self.name = mask_url(url), name
        try:
            names = optuna.study.get_all_study_names(st)
        except Exception as exc:  # noqa: BLE001 - sqlalchemy errors while talking to the server
            raise StorageError(f"--storage {mask_url(url)}: {str(exc).strip().splitlines()[0]}") from None
        if name in names:
            old = optuna.load_study(study_name=name, storage=st)
            if old.get_trials(deepcopy=False):
                raise DoctorError(f"--study {name}: already holds {len(old.get_trials(deepcopy=False))} probes in "
                                  f"{mask_url(url)}; choose another --study (one doctor run per study)")
        self.study = optuna.create_study(study_name=name, storage=st, direction="maximize", load_if_exists=True)
        self.study.set_user_attr("lstmlab_doctor", True)

    def open(self, probe: Probe) -> None:
        """A running trial for ``probe``."""
        with warnings.catch_warnings():  # optuna: heartbeats are meant for Study.optimize (one worker here)
            warnings.simplefilter("ignore")
            trial = self.study.ask()
        for k, v in (("candidate", probe.label), ("index", probe.index), ("reason", probe.candidate.reason),
                     ("treatments", [t.to_dict() for t in probe.candidate.treatments]),
                     ("run_dir", str(probe.rd.root))):
            trial.set_user_attr(k, v)
        probe.trial = trial

    def report(self, probe: Probe) -> None:
        s = probe.last
        if s is None or probe.trial is None:
            return
        if math.isfinite(s.key):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probe.trial.report(float(s.key), s.rung)
        for k, v in (("verdict", s.verdict), ("health", s.counts), ("decay", s.decay), ("slope", s.slope),
                     ("epochs", s.epochs), ("trained_s", round(probe.trained_s, 1)), ("val", s.val)):
            probe.trial.set_user_attr(k, _finite(v))

    def _tell(self, trial, value: float | None = None, state=None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study.tell(trial, value, state=state)

    def prune(self, probe: Probe, rung: int, why: str) -> None:
        from optuna.trial import TrialState

        probe.pruned_at, probe.reason = rung, why
        if probe.trial is not None:
            probe.trial.set_user_attr("pruned", why)
            self._tell(probe.trial, state=TrialState.PRUNED)
            probe.trial = None

    def complete(self, probe: Probe) -> None:
        from optuna.trial import TrialState

        if probe.trial is None:
            return
        s = probe.last
        if s is not None and math.isfinite(s.key):
            self._tell(probe.trial, float(s.key))
        else:
            self._tell(probe.trial, state=TrialState.FAIL)
        probe.trial = None


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    return v


def halve(study: ProbeStudy, probes: list[Probe], facts: DataFacts, metric: str, rung: int,
          out: Callable) -> list[Probe]:
    """Prune the diverged probes and the lower half of the rest; return the survivors, best first."""
    ordered = rank(probes, facts, metric)
    live = [p for p in ordered if p.last is not None and math.isfinite(p.last.key) and p.last.status != "diverged"]
    for p in ordered:
        if p not in live:
            study.prune(p, rung, "diverged (non-finite loss or weights)")
    keep = live[:max(1, math.ceil(len(live) / 2))]
    best = keep[0] if keep else None
    for p in live[len(keep):]:
        why = f"rung {rung}: ranked {ordered.index(p) + 1} of {len(ordered)}"
        if best is not None and best.last is not None:
            why += f" (behind {best.label})"
        study.prune(p, rung, why)
    for p in keep:
        out(f"  kept {p.label}: {_describe(p, metric)}")
    return keep


def _describe(p: Probe, metric: str) -> str:
    s = p.last
    if s is None:
        return "not run"
    name = metric.removeprefix("val_")
    v = (s.val or {}).get(name)
    val = f"{metric} {v:.4g}" if isinstance(v, (int, float)) else f"{metric} -"
    decay = f", decay 10^{s.decay:+.1f}" if s.decay is not None else ""
    return f"{val}, gradients {s.verdict or '-'}{decay}, {s.epochs} epochs, {p.trained_s:.0f} s"


__all__ += ["Budget", "halve"]
