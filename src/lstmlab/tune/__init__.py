"""Hyper-parameter search with Optuna: grid, random and TPE (Bayesian) over any config key, on one
machine (an SQLite study in the run directory) or many (a shared PostgreSQL study).

``lstmlab tune CONFIG.toml --run-dir DIR [--storage URL] [--study NAME]`` or, in Python,
``lstmlab.tune.tune(config, run_dir, storage=None, study_name=None, ...)``.  Modules, one job each:

    space      the [tune] table: search space by dotted key path, objective, sampler, budget
    storage    study storage (SQLite / PostgreSQL), heartbeats, which trials count
    objective  one trial: config -> lstmlab train into RUN_DIR/trials/NNNN, pruning, health
    report     ranked table (trials.csv / .md), best.toml, figures
    search     the worker loop: tune()
    cli        the lstmlab tune command

optuna is imported only when a search runs, so ``import lstmlab`` stays light.
"""

from .cli import add_parser, run
from .search import tune
from .space import Param, TuneSpec, load_tune

__all__ = ["tune", "load_tune", "TuneSpec", "Param", "add_parser", "run"]
