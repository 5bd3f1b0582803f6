"""``tune(config, run_dir, ...)``: one worker of a study; start it on as many machines as you like.

Each worker loops: while the study has queued retries or fewer counted trials than the budget,
run one more trial; when the budget is taken but other workers' trials are still running, wait
for them (failing and re-queueing the ones whose heartbeat stopped); then write the report.
A study resumes where it stopped: start any worker again with the same ``--storage``/``--study``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..run import RunDir
from .objective import Skipped, TrialError, TrialRunner
from .report import format_table, write_report
from .space import TuneSpec, load_tune
from .storage import (
    check_study,
    fail_orphans,
    ledger,
    mask_url,
    open_storage,
    storage_error,
    storage_url,
    worker_id,
)

__all__ = ["tune", "make_sampler", "make_pruner"]

MAX_ERRORS_IN_ROW = 3  # failed trials before a study that never completed one gives up


def make_sampler(spec: TuneSpec, seed: int | None):
    """optuna's GridSampler / RandomSampler / TPESampler for ``tune.sampler``."""
    import optuna

    opts = dict(spec.options["sampler_options"])
    try:
        if spec.grid:
            return optuna.samplers.GridSampler(spec.grid_space(), seed=seed, **opts)
        if spec.options["sampler"] == "random":
            return optuna.samplers.RandomSampler(seed=seed, **opts)
        return optuna.samplers.TPESampler(seed=seed, **opts)
    except TypeError as exc:
        raise ConfigError(f"tune.sampler_options: {exc}") from None


def make_pruner(spec: TuneSpec):
    """optuna's NopPruner / MedianPruner / HyperbandPruner for ``tune.pruner`` (steps are epochs)."""
    import optuna

    opts = dict(spec.options["pruner_options"])
    name = spec.options["pruner"]
    try:
        if name == "median":
            # steps are epochs, counted from 1: by default no trial is judged on its first epoch
            return optuna.pruners.MedianPruner(**{"n_startup_trials": 5, "n_warmup_steps": 2, **opts})
        if name == "hyperband":
            epochs = spec.base.get("train", {}).get("epochs", 10)
            tuned = any(p.path[:2] == ("train", "epochs") for p in spec.params)
            defaults = {"min_resource": 1, "max_resource": "auto" if tuned else epochs, "reduction_factor": 3}
            return optuna.pruners.HyperbandPruner(**{**defaults, **opts})
        if opts:
            raise ConfigError("tune.pruner_options: given, but tune.pruner is 'none'")
        return optuna.pruners.NopPruner()
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"tune.pruner_options: {exc}") from None


class _QuietSkips(logging.Filter):
    """Drop optuna's warnings about trials this package handles itself (skips, failed configs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("Skipped(" in msg or "TrialError(" in msg or "failed with value None" in msg
                    or "re-evaluating a configuration" in msg)


@contextlib.contextmanager
def _optuna_logging():
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    handlers = logging.getLogger("optuna").handlers
    filt = _QuietSkips()
    for h in handlers:
        h.addFilter(filt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(filt)
        optuna.logging.set_verbosity(level)


def _claim_run_dir(rd: RunDir, url: str, name: str) -> None:
    """``tune.json`` ties a run directory to one study; refuse to mix two studies' trials."""
    mine = {"study": name, "storage": mask_url(url)}
    if rd.tune.exists():
        old = rd.read_json(rd.tune)
        old_storage = mask_url(str(old.get("storage"))) if isinstance(old, dict) else None  # older files: unmasked
        if isinstance(old, dict) and (old.get("study"), old_storage) != (name, mine["storage"]):
            raise ConfigError(f"--run-dir {rd.root}: holds trials of study {old.get('study')!r} "
                              f"({old_storage}); choose another --run-dir or the same --study and "
                              "--storage")
        return
    rd.write_json(rd.tune, mine)


def tune(config: str | os.PathLike | dict, run_dir: str | os.PathLike, storage: str | None = None,
         study_name: str | None = None, n_trials: int | None = None, timeout: float | None = None,
         out: Callable = print, figures: bool = True, **options: Any) -> dict:
    """Search the config's ``[tune]`` space into ``run_dir``; return the summary of the study.

    ``config`` is a TOML file or a parsed dict with ``[data]``, ``[model]``, ``[train]`` and
    ``[tune]``; ``storage`` a SQLAlchemy URL (default: ``sqlite:///RUN_DIR/study.db``) that other
    workers may share under the same ``study_name``; ``n_trials`` (the total over all workers;
    0: only write the report) and ``timeout`` (seconds for this worker) override ``[tune]``, as do
    ``options`` (``sampler="random"``, ``pruner="median"``, ``seed=1``, ...).  Writes
    ``trials/NNNN/`` (one ``lstmlab train`` run per trial), ``trials.csv``, ``trials.md``,
    ``best.toml``, ``best.json`` and figures; the summary's ``"best"`` holds the best trial.
    """
    with _optuna_logging():
        return _tune(config, run_dir, storage, study_name, n_trials, timeout, out, figures, options)


def _tune(config, run_dir, storage, study_name, n_trials, timeout, out, figures, options) -> dict:
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0):
        raise ConfigError(f"--n-trials: expected an integer >= 0, got {n_trials!r}")
    report_only = n_trials == 0
    spec = load_tune(config, {"n_trials": None if report_only else n_trials, "timeout": timeout, **options})
    rd = RunDir(run_dir)
    rd.check("tune")  # read only: a user's folder, a train run or a busy directory is refused here
    o = spec.options
    url = storage_url(storage or o["storage"], rd.root)
    name = study_name or o["study_name"] or (spec.path.stem if spec.path is not None else "lstmlab-tune")
    inside = _inside(url, rd.root)
    st = None if inside else _connect(url, o)  # a server that is down leaves no run directory behind
    lock = rd.claim("tune")
    try:
        if st is None:
            st = _connect(url, o)
        return _search(spec, rd, url, name, st, report_only, out, figures)
    finally:
        lock.release()


def _inside(url: str, root: Path) -> bool:
    """Whether ``url`` is an SQLite file inside the run directory (it needs the directory first)."""
    if not url.startswith("sqlite:///"):
        return False
    try:
        return Path(url[len("sqlite:///"):]).resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


def _connect(url: str, o: dict):
    """The study storage, with one query to see that it answers (StorageError naming the masked URL)."""
    import optuna

    st = open_storage(url, o["heartbeat_interval"], o["grace_period"], o["max_retry"])
    try:
        optuna.study.get_all_study_names(st)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy errors while talking to the server
        raise storage_error(url, "", exc) from None
    return st


def _search(spec: TuneSpec, rd: RunDir, url: str, name: str, st, report_only: bool, out: Callable,
            figures: bool) -> dict:
    """The study (created or joined), the trials of this worker, the report."""
    import optuna

    o, run_dir = spec.options, rd.root
    existed = name in optuna.study.get_all_study_names(st)
    # workers that join a running study draw their own random streams (the first keeps the seed);
    # the grid sampler's seed shuffles the grid, which every worker must number alike
    seed = o["seed"] if not existed or spec.grid else o["seed"] + zlib.crc32(worker_id().encode()) % 100_000
    study = optuna.create_study(study_name=name, storage=st, sampler=make_sampler(spec, seed),
                                pruner=make_pruner(spec), direction=spec.direction, load_if_exists=True)
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(f"--study {name}: the study exists with direction {study.direction.name.lower()}, "
                          f"the config asks to {spec.direction}")
    check_study(study, spec.signature(), name)
    _claim_run_dir(rd, url, name)
    budget = spec.budget()
    led = ledger(study.get_trials(deepcopy=False))
    space = f"a grid of {spec.grid_size()}" if spec.grid else f"{len(spec.params)} parameters"
    out(f"study {name!r} in {mask_url(url)}: {o['sampler']} sampler over {space}, {spec.direction} "
        f"{spec.metric}, pruner {o['pruner']}; budget "
        f"{'until the timeout' if budget is None else f'{budget} trials'} ({len(led.finished)} finished, "
        f"{len(led.running)} running); worker {worker_id()}")
    runner = TrialRunner(spec, run_dir, budget, out)
    if not report_only:
        _work(study, runner, budget, o, out)
    summary = write_report(study, spec, run_dir, figures=figures)
    _say_summary(summary, spec, rd, out)
    return summary


def _say_summary(summary: dict, spec: TuneSpec, rd: RunDir, out: Callable) -> None:
    out(format_table(summary["rows"], spec))
    best = summary["best"]
    if best is not None:
        out(f"best: trial {best['trial']}, {spec.metric} {best['value']:.6g}, gradients {best['gradients']}; "
            f"re-train with: lstmlab train {rd.path(rd.BEST_TOML)} --run-dir RUN_DIR")
    written = [rd.TRIALS_CSV, rd.TRIALS_MD] + ([rd.BEST_TOML] if best is not None else []) + [rd.BEST_JSON]
    written += summary.get("figures", [])
    out(f"{summary['finished']} finished trials ({summary['complete']} complete, {summary['pruned']} pruned, "
        f"{summary['failed']} failed); written in {rd.root}: {', '.join(written)}")


def _work(study, runner: TrialRunner, budget: int | None, options: dict, out: Callable) -> None:
    """The worker loop (see the module doc)."""
    import optuna

    timeout, heartbeat = options["timeout"], options["heartbeat_interval"]
    grace = options["grace_period"] or 2 * heartbeat

    t0 = time.monotonic()
    poll = min(5.0, max(0.5, heartbeat / 2))
    skips = 0
    waited = False
    while True:
        if timeout is not None and time.monotonic() - t0 >= timeout:
            out(f"timeout: this worker stops after {time.monotonic() - t0:.0f} s")
            return
        fail_orphans(study, 2 * grace + 5, options["max_retry"])
        led = ledger(study.get_trials(deepcopy=False))
        if led.waiting or budget is None or len(led.counted) < budget:
            if skips > 2:
                time.sleep(poll)  # others hold the remaining points; do not spin
            runner.skipped = False
            study.optimize(runner, n_trials=1, catch=(Skipped, TrialError), gc_after_trial=False)
            skips = skips + 1 if runner.skipped else 0
            if len(runner.errors) >= MAX_ERRORS_IN_ROW and not any(
                    t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
                raise ConfigError(f"the first {len(runner.errors)} trials all failed; the last one with: "
                                  f"{runner.errors[-1]} (see {RunDir(runner.run_dir).trials}/*/{RunDir.TRAIN_LOG})")
            continue
        if not led.running:
            return
        if not waited:
            out(f"budget taken; waiting for {len(led.running)} running trial(s) of other workers")
            waited = True
        time.sleep(poll)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
