"""``lstmlab.train``: the names this module had before the run package, re-exported.

``lstmlab train`` now lives in :mod:`lstmlab.run` (RunDir, setup, checkpoint, recorder, session,
cli) and the training loop in :mod:`lstmlab.training`.
"""

from .run.checkpoint import read_checkpoint, rng_state, seed_everything, set_rng_state
from .run.cli import add_parser, main, run
from .run.files import clean as _clean  # noqa: F401 - benchmarks/tasks.py imports it
from .run.memory import estimate_params
from .run.rundir import RunDirError
from .run.session import TrainResult, train
from .run.setup import build_model, load_data

__all__ = ["add_parser", "run", "main", "train", "TrainResult", "RunDirError", "read_checkpoint", "load_data",
           "build_model", "estimate_params", "rng_state", "set_rng_state", "seed_everything"]
