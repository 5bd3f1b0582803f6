"""Run directories: :class:`RunDir` (every file name and every write of a run directory) and the
``lstmlab train`` machinery around the training loop.

Modules: :mod:`~lstmlab.run.rundir` (RunDir), :mod:`~lstmlab.run.files` (atomic writes, JSON
lines), :mod:`~lstmlab.run.setup` (config -> data -> model), :mod:`~lstmlab.run.checkpoint`
(weights, optimizer, RNG, training state), :mod:`~lstmlab.run.recorder` (metrics, health,
TensorBoard), :mod:`~lstmlab.run.memory` (will the model fit), :mod:`~lstmlab.run.session`
(``train``) and :mod:`~lstmlab.run.cli` (``lstmlab train``).  Importing this package loads only
the RunDir (the model-file code uses its atomic writes); the rest is imported where used.
"""

from .rundir import RunDir, RunDirError

__all__ = ["RunDir", "RunDirError"]
