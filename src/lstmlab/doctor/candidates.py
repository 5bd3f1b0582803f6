"""Candidate treatments from the diagnosis and the data, not from a grid.

The rules (``docs/doctor.md`` explains them, ``benchmarks/doctor.py`` measures them):

* **vanishing** (or a long sequence the plain model does not learn): make every recurrent layer an
  LSTM (a SimpleRNN also gets GRU and IRNN as alternatives), then shorten the path:
  ``patch(k)`` with ``k = ceil(T / 50)`` (about 50 recurrent steps) and a coarser ``k = ceil(T / 12)``,
  each with ``chrono`` biases for the steps the layer then runs; ``chrono`` alone while the layer
  runs at most 200 steps; for one target per sequence, the patched model with an attention readout
  and with a bidirectional layer; for continuous series to classify, per-series standardisation.
* **exploding**: clipping (when off), a third of the learning rate, layer norm, TBPTT for long
  per-step streams.
* **healthy but not learning**: three times the learning rate, twice the width, chrono.
* **healthy and learning**: three times the learning rate, twice the width, a second layer; the
  report then says plainly that the plain config needs no treatment for its gradients.

The plain config is always the first candidate; at most ``limit`` candidates are returned, in the
order of the evidence behind them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .diagnosis import Diagnosis
from .facts import DataFacts
from .treatments import Treatment, treatment

__all__ = ["Candidate", "propose", "PATCH_STEPS", "COARSE_STEPS", "CHRONO_ALONE_MAX"]

PATCH_STEPS = 50        # recurrent steps after patching (adding T=400/1000, UCR sets of 150-430 steps)
COARSE_STEPS = 12       # a coarser patch (the copy task was solved at ~12 recurrent steps)
CHRONO_ALONE_MAX = 200  # chrono without patching while the layer runs at most this many steps
LONG = 50               # below this many steps the vanishing problem is not a matter of length


@dataclass(frozen=True)
class Candidate:
    """A set of treatments applied together, and why the doctor proposes it."""

    treatments: tuple[Treatment, ...]
    reason: str

    @property
    def label(self) -> str:
        return " + ".join(t.label() for t in self.treatments) or "plain"

    @property
    def remedies(self) -> list[str]:
        return [t.label() for t in self.treatments]

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "-", self.label).strip("-")[:60] or "plain"


def _patch_sizes(steps: int) -> list[int]:
    """``ceil(T/50)`` and the coarser ``ceil(T/12)`` (when it differs and leaves at least 4 steps)."""
    if steps < LONG:
        return []
    sizes = []
    for target in (PATCH_STEPS, COARSE_STEPS):
        k = math.ceil(steps / target)
        if k > 1 and k not in sizes and math.ceil(steps / k) >= 4:
            sizes.append(k)
    return sizes


def _vanishing(diag: Diagnosis, facts: DataFacts) -> list[Candidate]:
    cells = set(diag.cells)
    to_lstm = (treatment("cell", "LSTM"),) if cells - {"lstm"} else ()
    out: list[Candidate] = []
    if "rnn" in cells:
        out.append(Candidate((treatment("cell", "GRU"),), "a SimpleRNN loses the gradient; a GRU keeps it longer"))
    sizes = _patch_sizes(facts.steps)
    chrono = (treatment("chrono"),)
    if sizes:
        k = sizes[0]
        main = to_lstm + (treatment("patch", k),) + chrono
        if facts.sequence_classification and facts.continuous:
            out.append(Candidate((treatment("series_norm"),) + main,
                                 f"standardised series, {k} steps per recurrent step, chrono for the "
                                 f"{math.ceil(facts.steps / k)} steps left"))
        out.append(Candidate(main, f"{k} steps per recurrent step: the gradient crosses "
                                   f"{math.ceil(facts.steps / k)} steps instead of {facts.steps}; chrono for them"))
        if not facts.per_step:
            out.append(Candidate(main + (treatment("readout", "attention"),),
                                 "the patched model with an attention readout: every step reaches the loss directly"))
            out.append(Candidate(main + (treatment("bidirectional"),),
                                 "the patched model read in both directions: early evidence is near the "
                                 "backward start"))
        for k2 in sizes[1:]:
            out.append(Candidate(to_lstm + (treatment("patch", k2),) + chrono,
                                 f"a coarser patch: {math.ceil(facts.steps / k2)} recurrent steps of {k2} each"))
    if facts.steps <= CHRONO_ALONE_MAX:
        out.append(Candidate(to_lstm + chrono, f"chrono biases for memories of up to {facts.steps} steps"))
    if "rnn" in cells:
        out.append(Candidate((treatment("cell", "IRNN"),), "IRNN: relu units with an identity recurrence"))
    return out


def _exploding(diag: Diagnosis, facts: DataFacts) -> list[Candidate]:
    out = []
    if not diag.clipped:
        out.append(Candidate((treatment("clip", 1.0),), "clip each gradient's norm to 1"))
    clip = () if diag.clipped else (treatment("clip", 1.0),)
    out.append(Candidate(clip + (treatment("learning_rate", 0.3),), "a third of the learning rate"))
    if "lstm" in diag.cells:
        out.append(Candidate(clip + (treatment("layer_norm"),), "layer-normalised LSTM"))
    if facts.per_step and facts.steps >= 1000:
        out.append(Candidate(clip + (treatment("tbptt", 100),), "truncated BPTT in chunks of 100 steps"))
    return out


def _healthy(diag: Diagnosis, facts: DataFacts) -> list[Candidate]:
    out = [Candidate((treatment("learning_rate", 3.0),), "three times the learning rate"),
           Candidate((treatment("width", 2.0),), "twice the units")]
    if diag.learned:
        out.append(Candidate((treatment("depth", 2),), "a second recurrent layer"))
    elif "lstm" in diag.cells and facts.steps >= 20:
        out.append(Candidate((treatment("chrono"),), f"chrono biases for memories of up to {facts.steps} steps"))
    return out


def propose(diag: Diagnosis, facts: DataFacts, limit: int = 6) -> list[Candidate]:
    """The plain config and the treatments the diagnosis and the data call for (see the module doc)."""
    out = [Candidate((), "the config as given")]
    if diag.exploding:
        out += _exploding(diag, facts)
    if diag.vanishing or (not diag.learned and facts.steps >= LONG and not diag.exploding):
        out += _vanishing(diag, facts)
    elif not diag.exploding:
        out += _healthy(diag, facts)
    seen: set[str] = set()
    unique = [c for c in out if not (c.label in seen or seen.add(c.label))]
    return unique[:max(1, int(limit))]
