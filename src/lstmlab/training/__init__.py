"""The one training loop and its step: what ``Sequential.fit``, ``lstmlab train``, ``lstmlab tune``
and the doctor all run.  See :mod:`lstmlab.training.loop` and :mod:`lstmlab.training.step`."""

from .loop import BatchDone, Loop, Position, Strategy
from .step import StepResult, backward_and_step, train_step

__all__ = ["Loop", "Strategy", "Position", "BatchDone", "StepResult", "train_step", "backward_and_step"]
