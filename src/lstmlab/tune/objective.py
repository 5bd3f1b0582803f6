"""One trial: sample the parameters, write the config, ``lstmlab train`` it into ``RUN_DIR/trials/NNNN``,
report every epoch's validation score (pruning hopeless trials) and return the objective.

What a trial leaves in the study (``trial.user_attrs``), so any worker on any machine can write the
report: ``outcome`` (complete | pruned | diverged | error | skipped | interrupted | running),
``trial_dir``, ``worker``, ``epochs``, ``time_s``, ``val`` / ``test`` metrics, the gradient-health
``verdict`` with its per-verdict ``health`` counts, and ``error`` or ``reason`` when there is one.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError, dumps_toml, suggest, validate
from ..run import RunDir
from ..run.files import open_append
from ..run.session import train
from .space import TuneSpec, short_names
from .storage import ledger, mark_started, retry_callback, worker_id

__all__ = ["TrialRunner", "Skipped", "TrialError", "health_summary", "health_text", "metric_value"]


class Skipped(Exception):
    """A trial this worker did not run: a grid point another trial holds, or over the budget."""


class TrialError(Exception):
    """``lstmlab train`` failed for this trial's config (the study goes on)."""


# ---------------------------------------------------------------------------------------------
# reading a trial's run directory
# ---------------------------------------------------------------------------------------------
def health_summary(trial_dir: str | os.PathLike) -> dict:
    """The gradient-health verdicts of a run: the last one and how often each was given."""
    rd = RunDir(trial_dir)
    verdicts = [r["verdict"] for r in rd.read_jsonl(rd.health) if r.get("verdict")]
    if not verdicts:
        verdicts = [r["gradient_verdict"] for r in rd.read_jsonl(rd.metrics) if r.get("gradient_verdict")]
    if not verdicts:
        return {"verdict": None, "counts": {}}
    return {"verdict": verdicts[-1], "counts": dict(Counter(verdicts))}


def health_text(verdict: str | None, counts: dict | None) -> str:
    """``"healthy"`` or ``"healthy (2 exploding of 12)"``; ``"-"`` when nothing was recorded."""
    if not verdict:
        return "-"
    counts = counts or {}
    others = sorted(((n, v) for v, n in counts.items() if v != verdict), reverse=True)
    if not others:
        return verdict
    total = sum(counts.values())
    return f"{verdict} ({', '.join(f'{n} {v}' for n, v in others)} of {total})"


def metric_value(result: dict, rows: list[dict], metric: str) -> float:
    """The objective: ``val_X``/``test_X`` from the final evaluation, else the last epoch's value."""
    for prefix, part in (("val_", "val"), ("test_", "test")):
        res = result.get(part)
        if metric.startswith(prefix) and isinstance(res, dict) and metric[len(prefix):] in res:
            return float(res[metric[len(prefix):]])
    if rows and metric in rows[-1] and isinstance(rows[-1][metric], (int, float)):
        return float(rows[-1][metric])
    logged = [f"{p}_{k}" for p in ("val", "test") for k in (result.get(p) or {})]
    logged += [k for k, v in (rows[-1] if rows else {}).items() if isinstance(v, (int, float)) and k not in
               ("epoch", "time_s", "global_step", "lr", "grad_norm") and k not in logged]
    hint = ""
    if metric.startswith("val_") and not result.get("val"):
        hint = "; the data have no validation split (set e.g. data.n_val or data.val_fraction)"
    raise ConfigError(f"tune.metric: {metric!r} is not logged by the trials{suggest(metric, logged)}{hint} "
                      f"(logged: {', '.join(logged) or 'nothing'})")


# ---------------------------------------------------------------------------------------------
# per-epoch reports from inside lstmlab train
# ---------------------------------------------------------------------------------------------
class EpochHook:
    """Stands in for ``train(out=...)``: logs the run's lines to ``train.log`` and, after each
    epoch (a new line in ``metrics.jsonl``), reports the metric to optuna and prunes."""

    def __init__(self, trial, metric: str, trial_dir: RunDir, epochs: int, prune: bool) -> None:
        self.trial, self.metric, self.trial_dir = trial, metric, trial_dir
        self.epochs, self.prune = epochs, prune
        self.seen = 0
        self.last: tuple[int, float] | None = None
        self.log = open_append(trial_dir.path(trial_dir.TRAIN_LOG))  # never through a symlink

    def __call__(self, *args: Any, sep: str = " ", end: str = "\n", **_: Any) -> None:
        self.log.write(sep.join(str(a) for a in args) + end)
        self.log.flush()
        self.poll()

    def warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        self.log.write(f"warning: {category.__name__}: {message}\n")

    def poll(self) -> None:
        import optuna

        rows = self.trial_dir.read_jsonl(self.trial_dir.metrics)
        for row in rows[self.seen:]:
            epoch, v = int(row.get("epoch", 0)), row.get(self.metric)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            self.trial.report(float(v), epoch)
            self.last = (epoch, float(v))
            if self.prune and epoch < self.epochs and self.trial.should_prune():
                self.seen = len(rows)
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({self.metric} {v:.4g})")
        self.seen = len(rows)

    def close(self) -> None:
        self.log.close()


# ---------------------------------------------------------------------------------------------
# the objective
# ---------------------------------------------------------------------------------------------
class TrialRunner:
    """The optuna objective: ``runner(trial) -> float``."""

    def __init__(self, spec: TuneSpec, run_dir: Path, budget: int | None, out: Callable = print) -> None:
        self.spec, self.run_dir, self.budget, self.out = spec, Path(run_dir), budget, out
        self.worker = worker_id()
        self.skipped = False  # whether the last call skipped its trial
        self.errors: list[str] = []  # messages of this worker's failed trials since its last good one

    # guards ---------------------------------------------------------------------------------
    def _guard(self, trial) -> None:
        """Skip a trial that repeats a grid point held by an earlier trial or exceeds the budget.

        Trial numbers order the workers: of two trials with the same grid point the lower number
        runs; the ``budget`` lowest-numbered counted trials run, whoever started them."""
        from optuna.trial import TrialState

        if self.budget is None and not self.spec.grid:
            return
        study = trial.study
        for attempt in range(50):
            trials = study.get_trials(deepcopy=False)
            me = next(t for t in trials if t.number == trial.number)
            before = ledger(trials).counted_before(trial.number)
            if self.spec.grid:
                unassigned = [t for t in before
                              if t.state == TrialState.RUNNING and "grid_id" not in t.system_attrs]
                if unassigned and attempt < 49:  # a worker between creating a trial and picking its point
                    time.sleep(0.1)
                    continue
                gid = me.system_attrs.get("grid_id")
                dup = [t for t in before if gid is not None and t.system_attrs.get("grid_id") == gid]
                if dup:
                    self._skip(trial, f"grid point {gid} is trial {dup[0].number}'s")
            if self.budget is not None and len(before) >= self.budget:
                self._skip(trial, f"the {self.budget} trials of the budget are taken")
            return

    def _skip(self, trial, reason: str) -> None:
        self.skipped = True
        trial.set_user_attr("outcome", "skipped")
        trial.set_user_attr("reason", reason)
        try:  # so optuna's GridSampler does not count this trial's point as visited
            trial.study._storage.set_trial_system_attr(trial._trial_id, "search_space", {})
        except Exception:  # noqa: BLE001 - best effort; the ledger ignores skipped trials anyway
            pass
        raise Skipped(reason)

    # the run --------------------------------------------------------------------------------
    def __call__(self, trial) -> float:
        try:
            mark_started(trial, self.worker)
            return self._run(trial)
        except KeyboardInterrupt:
            self._requeue(trial)
            raise

    def _run(self, trial) -> float:
        import optuna

        self._guard(trial)
        values = {p.key: p.suggest(trial, self.spec.grid) for p in self.spec.params}
        rd = RunDir(self.run_dir).trial(trial.number)
        trial_dir = rd.root
        if trial_dir.exists():  # left from another study that used this run directory
            trial_dir.rename(trial_dir.with_name(f"{trial_dir.name}.old-{int(time.time())}"))
        rd.create("train")  # a run directory from the start: its config and log go in before the run
        for k, v in {"outcome": "running", "trial_dir": str(trial_dir), "worker": self.worker, "error": None,
                     "reason": None, "verdict": None, "health": None, "val": None, "test": None,
                     "epochs": None, "time_s": None}.items():
            trial.set_user_attr(k, v)  # a retry inherits the attrs of the trial it replaces
        cfg = self.spec.config_for(values)
        run_cfg = copy.deepcopy(cfg)
        run_cfg.setdefault("train", {})["verbose"] = 1  # the per-epoch line drives the pruning hook
        cfg_path = rd.write_text(rd.path(rd.TRIAL_CONFIG), dumps_toml(run_cfg, header=f"trial {trial.number} of "
                                                                                      "lstmlab tune"))
        epochs = validate(copy.deepcopy(run_cfg), cfg_path)["train"]["epochs"]
        hook = EpochHook(trial, self.spec.metric, rd, epochs, self.spec.options["pruner"] != "none")
        t0 = time.time()
        try:
            with warnings.catch_warnings():  # a trial's warnings go to its train.log, not the console
                warnings.showwarning = hook.warning
                result = train(cfg_path, trial_dir, out=hook)
            hook.poll()
        except optuna.TrialPruned as exc:
            self._finish(trial, trial_dir, "pruned", t0, hook, reason=str(exc))
            raise
        except (ValueError, RuntimeError, FileNotFoundError, KeyError, TypeError, OSError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._finish(trial, trial_dir, "error", t0, hook, error=msg)
            self.errors.append(msg)
            raise TrialError(msg) from None
        finally:
            hook.close()
        rows = rd.read_jsonl(rd.metrics)
        if result.get("status") == "diverged":
            epoch = result.get("diverged_epoch")
            self._finish(trial, trial_dir, "diverged", t0, hook, result=result,
                         reason=f"diverged at epoch {epoch}")
            raise optuna.TrialPruned(f"diverged at epoch {epoch}")
        try:
            value = metric_value(result, rows, self.spec.metric)
        except ConfigError as exc:  # the same for every trial: stop the search
            self._finish(trial, trial_dir, "error", t0, hook, result=result, error=str(exc))
            raise
        if not math.isfinite(value):
            self._finish(trial, trial_dir, "diverged", t0, hook, result=result, reason="non-finite score")
            raise optuna.TrialPruned(f"{self.spec.metric} is {value}")
        self._finish(trial, trial_dir, "complete", t0, hook, result=result)
        self.errors.clear()
        return value

    def _finish(self, trial, trial_dir: Path, outcome: str, t0: float, hook: EpochHook,
                result: dict | None = None, reason: str | None = None, error: str | None = None) -> None:
        health = health_summary(trial_dir)
        rows = RunDir.read_jsonl(RunDir(trial_dir).metrics)
        attrs: dict[str, Any] = {"epochs": rows[-1].get("epoch") if rows else 0,
                                 "time_s": round(time.time() - t0, 2), "verdict": health["verdict"],
                                 "health": health["counts"], "reason": reason, "error": error}
        if result is not None:
            attrs["val"], attrs["test"] = result.get("val"), result.get("test")
        for k, v in attrs.items():
            trial.set_user_attr(k, _json_safe(v))
        trial.set_user_attr("outcome", outcome)
        names = short_names([p.key for p in self.spec.params])
        params = ", ".join(f"{names.get(k, k)}={_fmt(v)}" for k, v in trial.params.items())
        if outcome == "complete":
            what = f"{self.spec.metric} {_fmt(metric_value(result or {}, rows, self.spec.metric))}"
        elif outcome == "pruned" and hook.last is not None:
            what = f"pruned at epoch {hook.last[0]} ({self.spec.metric} {_fmt(hook.last[1])})"
        else:
            what = outcome + (f": {error}" if error else (f" ({reason})" if reason else ""))
        self.out(f"trial {trial.number}: {params} -> {what}; {attrs['epochs']} epochs, "
                 f"{attrs['time_s']:.1f} s, gradients {health_text(health['verdict'], health['counts'])}")

    def _requeue(self, trial) -> None:
        """An interrupted trial (Ctrl-C, SIGTERM) is queued again, to run when the study resumes."""
        try:
            frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
            retry_callback(self.spec.options["max_retry"])(trial.study, frozen)
            trial.set_user_attr("outcome", "interrupted")
        except Exception:  # noqa: BLE001 - the heartbeat retry still covers it
            pass


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
