"""Per-step gradient taps: what an engine records while it runs one layer direction.

An engine fills a :class:`StepTaps` as a by-product of its forward (gate saturation) and
backward (gradient norms) passes.  Everything is stored per example and per step so the
caller can map reversed / variable-length sequences back to the original time axis before
reducing over the batch.

Conventions (all engines must follow them exactly; tests compare engines against each other
and against a step-by-step ``torch.autograd`` unroll):

* ``grad_h_sq[t, b]`` = ``sum_k (dL/dh_t[b, k])**2`` where ``dL/dh_t`` is the *total*
  gradient of the loss with respect to the hidden state ``h_t`` (the state after step ``t``),
  i.e. the output gradient at ``t`` plus everything that flows back from later steps.
  Under a length mask the state of a padded step is the carried state
  (``h_t = m_t * h_new + (1 - m_t) * h_{t-1}``) and its gradient is recorded the same way.
* ``grad_c_sq[t, b]`` likewise for the LSTM cell state ``c_t`` (``None`` for GRU / RNN).
* ``saturated[gate][t, b]`` = number of units of ``gate`` at step ``t`` for example ``b``
  that are saturated: sigmoid gates outside ``(0.01, 0.99)``, tanh values with
  ``|v| > 0.99`` (thresholds and gate names from :mod:`lstmlab.cells`: LSTM ``i, f, g, o``;
  GRU ``r, z, n``; SimpleRNN ``h``; a relu RNN records the units that are exactly 0 -- "dead").
  Padded steps (``t >= lengths[b]``) record 0.
* ``units`` is the hidden size H, so ``saturated / units`` is a fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import cells
from ..cells import GATES, SIGMOID_HIGH, SIGMOID_LOW, TANH_LIMIT  # noqa: F401 - GATES: read by engine/fused.py

# How a unit is counted as saturated, by the kind the cell table gives each gate.
SATURATED = {
    "sigmoid": lambda v: (v < SIGMOID_LOW) | (v > SIGMOID_HIGH),
    "tanh": lambda v: v.abs() > TANH_LIMIT,
    "relu": lambda v: v == 0,  # dead units
}


@dataclass
class StepTaps:
    """Raw per-step records for one layer direction, filled by an engine."""

    units: int = 0
    grad_h_sq: torch.Tensor | None = None  # (T, B)
    grad_c_sq: torch.Tensor | None = None  # (T, B), LSTM only
    saturated: dict[str, torch.Tensor] = field(default_factory=dict)  # gate -> (T, B)
    filled_backward: bool = False
    pending: list = field(default_factory=list)  # callables that complete lazily-held records

    def finalize(self) -> StepTaps:
        """Complete records that an engine holds lazily (e.g. hook results); call after backward."""
        for fn in self.pending:
            fn()
        self.pending = []
        return self

    def clear(self) -> None:
        self.grad_h_sq = None
        self.grad_c_sq = None
        self.saturated = {}
        self.filled_backward = False
        self.pending = []


def saturation_counts(cell: str | cells.Cell, gates: dict[str, torch.Tensor], mask: torch.Tensor | None,
                      activation: str = "tanh") -> dict[str, torch.Tensor]:
    """Count saturated units per (t, b) from activated gate tensors of shape (T, B, H).

    Shared by the loop and reference engines; the fused engine computes the same counts
    inside its kernel.  ``mask`` is (T, B) with 1 for valid steps.
    """
    spec = cells.get(cell)
    out: dict[str, torch.Tensor] = {}
    for name, v in gates.items():
        sat = SATURATED[spec.gate_kind(name, activation)](v)
        cnt = sat.sum(-1).to(torch.float32)
        if mask is not None:
            cnt = cnt * mask.to(cnt.dtype)
        out[name] = cnt
    return out
