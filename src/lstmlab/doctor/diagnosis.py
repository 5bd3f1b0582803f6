"""The diagnosis of the plain config: what its probe's GradientMonitor saw over the whole probe, what
:func:`lstmlab.diagnose` says at its end, and whether it learned anything at all.

The headline verdict summarises the whole training ("vanishing in 29/32 samples"), not the last
sample alone: one healthy sample after a late loss spike does not make a run healthy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .facts import DataFacts

__all__ = ["Diagnosis", "headline", "headline_text", "learned", "clearly_better", "SEVERITY"]

SEVERITY = {"healthy": 0, "vanishing": 1, "exploding": 2}


def headline(counts: dict[str, int]) -> tuple[str, str]:
    """``(verdict, text)`` for a run's monitor samples: the most frequent verdict (ties go to the more
    severe one), e.g. ``("vanishing", "vanishing in 29/32 samples")``."""
    counts = {k: int(v) for k, v in (counts or {}).items() if v}
    if not counts:
        return "healthy", "no gradient samples"
    total = sum(counts.values())
    verdict = max(counts, key=lambda v: (counts[v], SEVERITY.get(v, 0)))
    return verdict, f"{verdict} in {counts[verdict]}/{total} samples"


def headline_text(counts: dict[str, int]) -> str:
    """``"vanishing in 29/32 samples (3 healthy)"``: the headline and the other verdicts seen."""
    verdict, text = headline(counts)
    others = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]) if v != verdict and n)
    return f"{text} ({others})" if others else text


def learned(val: dict | None, facts: DataFacts, metric: str) -> bool:
    """Whether a validation result is clearly better than a model without memory: the loss at least
    10% below the baseline loss, or (sequence classification) the accuracy 5 points above the
    majority class."""
    if not isinstance(val, dict):
        return False
    if metric == "val_accuracy" and isinstance(val.get("accuracy"), (int, float)):
        chance = facts.baseline.get("accuracy") or facts.majority or (1.0 / facts.n_classes if facts.n_classes else 0.5)
        return float(val["accuracy"]) >= float(chance) + 0.05
    base = facts.baseline_loss()
    loss = val.get("loss")
    if base is None or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return False
    return float(loss) < 0.9 * base


def clearly_better(val: dict | None, plain: dict | None, facts: DataFacts, metric: str) -> bool:
    """Whether a validation result beats the plain config's by more than the noise of the validation
    split: accuracy by two standard errors of the plain accuracy over ``n_val`` samples (and at least
    one and a half samples), or an accuracy at least as high with half the loss; for a loss metric,
    a loss 2% lower.  A treatment that is not clearly better is not worth the change: on a few dozen
    validation series, one or two lucky samples decide a plain ranking."""
    if not isinstance(val, dict) or not isinstance(plain, dict):
        return isinstance(val, dict)
    la, lb = val.get("loss"), plain.get("loss")
    lower = isinstance(la, (int, float)) and math.isfinite(la) and isinstance(lb, (int, float)) \
        and (not math.isfinite(lb) or la < 0.98 * lb)
    if metric == "val_accuracy":
        a, b = val.get("accuracy"), plain.get("accuracy")
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        n = max(1, facts.n_val)
        margin = max(1.5 / n, 2.0 * math.sqrt(max(b * (1.0 - b), 1.0 / n) / n))
        return a - b > margin or (a >= b and lower and la < 0.5 * lb)
    return lower


@dataclass
class Diagnosis:
    """The plain config's gradient health and progress after its probe."""

    verdict: str                          # headline over the whole probe
    counts: dict[str, int]                # monitor samples per verdict
    end_verdict: str | None               # lstmlab.diagnose at the end of the probe
    decay: float | None                   # its log10 decay over the sequence
    cells: tuple[str, ...]                # recurrent cells in the model ("lstm", "gru", "rnn")
    learned: bool                         # clearly better than the memoryless baseline
    clipped: bool                         # the config clips gradients already
    remedies: list[str] = field(default_factory=list)
    slope: float | None = None            # relative change of the training loss per minute

    @property
    def text(self) -> str:
        return headline_text(self.counts) if self.counts else f"{self.verdict} (no monitor samples)"

    @property
    def vanishing(self) -> bool:
        return self.verdict == "vanishing" or self.end_verdict == "vanishing" \
            or self.counts.get("vanishing", 0) * 4 >= max(1, sum(self.counts.values()))

    @property
    def exploding(self) -> bool:
        n = self.counts.get("exploding", 0)
        return self.verdict == "exploding" or (n > 0 and n * 10 >= sum(self.counts.values()))

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "text": self.text, "cells": list(self.cells)}
