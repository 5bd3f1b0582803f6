"""``lstmlab tune CONFIG.toml --run-dir DIR [--storage URL] [--study NAME] [--n-trials N] [--timeout S]``."""

from __future__ import annotations

import argparse
import signal
import threading

from .space import PRUNERS, SAMPLERS

__all__ = ["add_parser", "run"]

EPILOG = """\
the config's [tune] table declares the search space by dotted key path, e.g.
  [tune]
  sampler = "tpe"                 # grid | random | tpe
  metric = "val_loss"
  pruner = "median"               # none | median | hyperband
  n_trials = 30
  "model.layers.0.units" = {type = "choice", values = [32, 64, 128]}
  "train.learning_rate" = {type = "float", low = 1e-4, high = 1e-2, log = true}

many machines, one study: start the same command on each with a shared database,
  lstmlab tune CONFIG.toml --run-dir DIR --storage postgresql://USER:PASSWORD@HOST/DB --study NAME
a worker that dies is noticed by the heartbeat and its trial is run again; start any
worker again to resume a stopped study (--n-trials 0: only rewrite the report).
examples: examples/configs/tune_adding.toml, examples/configs/tune_vowels.toml"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab tune``."""
    p = subparsers.add_parser("tune",
                              help="hyper-parameter search (grid / random / TPE), local or on many machines",
                              description="Search a config's [tune] space with Optuna; one lstmlab train run "
                                          "per trial in RUN_DIR/trials/NNNN.",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("config", help="TOML config with [data], [model], [train] and [tune]")
    p.add_argument("--run-dir", required=True,
                   help="directory for the trials, the table, best.toml and figures")
    p.add_argument("--storage", help="SQLAlchemy URL of the study database shared by all workers "
                                     "(default: sqlite file RUN_DIR/study.db)")
    p.add_argument("--study", help="study name (default: the config file's stem)")
    p.add_argument("--n-trials", type=int, help="trials to finish in total, over all workers "
                                                "(0: only write the report)")
    p.add_argument("--timeout", type=float, help="seconds this worker starts new trials for")
    p.add_argument("--sampler", choices=SAMPLERS, help="override tune.sampler")
    p.add_argument("--pruner", choices=PRUNERS, help="override tune.pruner")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab tune``: 0 done, 2 bad input (raised as ValueError), 130 interrupted."""
    from .search import tune

    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _sigterm) if main else None  # SIGTERM re-queues, like Ctrl-C
    try:
        options = {k: v for k, v in (("sampler", args.sampler), ("pruner", args.pruner)) if v is not None}
        tune(args.config, args.run_dir, storage=args.storage, study_name=args.study, n_trials=args.n_trials,
             timeout=args.timeout, figures=not args.no_figures, out=_print, **options)
    finally:
        if main:
            signal.signal(signal.SIGTERM, before)
    return 0


def _print(*a, **k) -> None:
    print(*a, **k, flush=True)
