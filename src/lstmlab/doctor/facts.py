"""What the doctor knows about the data before it prescribes: length, features, classes, task kind.

Treatments are derived from these facts (and the diagnosis), never tuned per data set: the patch
size aims at a fixed number of recurrent steps, the chrono horizon is the length the recurrent
layer sees, series standardisation is offered only for continuous inputs of a classification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DataFacts", "facts_from_splits", "selection_metric"]


@dataclass(frozen=True)
class DataFacts:
    """The data as the doctor sees it."""

    steps: int                   # T: the (padded) sequence length
    n_features: int | None       # F (None for token ids)
    kind: str                    # "classification" | "regression" | "language_model"
    target: str                  # "sequence" | "per_step"
    n_classes: int | None
    n_train: int
    n_val: int
    variable_length: bool        # lengths / masks present
    input_type: str              # "features" | "tokens"
    continuous: bool             # feature values other than 0/1 (not one-hot symbols)
    baseline: dict = field(default_factory=dict)  # memoryless loss / chance accuracy when known
    majority: float | None = None  # share of the most frequent training class (sequence classification)

    @property
    def per_step(self) -> bool:
        return self.target == "per_step"

    @property
    def sequence_classification(self) -> bool:
        return self.kind == "classification" and not self.per_step

    def baseline_loss(self) -> float | None:
        """The loss of a model without memory (the data's own baseline, else chance level)."""
        b = self.baseline
        for k in ("mse", "cross_entropy"):
            if isinstance(b.get(k), (int, float)):
                return float(b[k])
        if self.kind == "classification" and self.n_classes:
            return math.log(self.n_classes)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _continuous(x: np.ndarray) -> bool:
    """Whether the features take values other than 0 and 1 (on a sample of the training rows)."""
    if x.dtype.kind not in "f":
        return False
    sample = x[: min(len(x), 256)]
    return bool(np.any((sample != 0) & (sample != 1)))


def _majority(y: np.ndarray, meta: dict) -> float | None:
    if meta.get("kind") != "classification" or meta.get("target") == "per_step" or y.ndim != 1 or not len(y):
        return None
    return float(np.bincount(y.astype(np.int64)).max() / len(y))


def _varies(lengths, steps: int) -> bool:
    """Whether some training sequence is shorter than the padded length (lengths given and not all T)."""
    return lengths is not None and bool((np.asarray(lengths) != steps).any())


def facts_from_splits(splits) -> DataFacts:
    """:class:`DataFacts` of loaded :class:`~lstmlab.data.DataSplits`."""
    meta = splits.meta
    x = splits.train.x
    tokens = meta.get("input_type") == "tokens" or x.ndim == 2
    baseline = {k: v for k, v in (meta.get("baseline") or {}).items() if isinstance(v, (int, float))}
    return DataFacts(
        steps=int(x.shape[1]), n_features=None if tokens else int(x.shape[2]),
        kind=str(meta.get("kind") or "regression"), target=str(meta.get("target") or "sequence"),
        n_classes=meta.get("n_classes"), n_train=len(splits.train), n_val=len(splits.val),
        variable_length=_varies(splits.train.lengths, int(x.shape[1])), input_type="tokens" if tokens else "features",
        continuous=False if tokens else _continuous(x), baseline=baseline, majority=_majority(splits.train.y, meta))


def selection_metric(facts: DataFacts) -> tuple[str, str]:
    """``(metric, mode)``: what probes are ranked and checkpoints kept by.  Accuracy for sequence
    classification (the user's headline number), the loss otherwise (a per-step accuracy is
    dominated by easy steps, e.g. the blanks of the copy task)."""
    if facts.sequence_classification:
        return "val_accuracy", "max"
    return "val_loss", "min"
