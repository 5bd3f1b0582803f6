"""Any cell through one door: ``forward(cell, ...)`` / ``backward(tape, ...)`` pick the cell's
NumPy functions from the cell table's name, so callers (the reference engine, ``trace``) never
branch on the kind."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import cells
from .core import Tape
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .rnn import rnn_backward, rnn_forward

FORWARD = {cells.LSTM.name: lstm_forward, cells.GRU.name: gru_forward, cells.RNN.name: rnn_forward}
BACKWARD = {cells.LSTM.name: lstm_backward, cells.GRU.name: gru_backward, cells.RNN.name: rnn_backward}


def forward(cell: str | cells.Cell, x: np.ndarray, states: Sequence[np.ndarray | None], weights: Sequence,
            lengths=None, rmask=None, activation: str = "tanh", layer_norm: tuple | None = None
            ) -> tuple[np.ndarray, tuple, Tape]:
    """Run ``cell`` over ``x`` (B, T, I) from ``states`` (the cell's states in table order) with
    torch-layout ``weights`` ``(w_ih, w_hh, b_ih, b_hh)``.  Returns ``(out, final_states, tape)``."""
    spec = cells.get(cell)
    if len(states) != len(spec.states):
        raise ValueError(f"states: expected {len(spec.states)} for {spec.layer} ({', '.join(spec.states)}), "
                         f"got {len(states)}")
    kw = {"activation": activation} if spec.uses_activation else {}
    if layer_norm is not None:
        kw["layer_norm"] = layer_norm
    *res, tape = FORWARD[spec.name](x, *states, *weights, lengths=lengths, rmask=rmask, **kw)
    return res[0], tuple(res[1:]), tape


def backward(tape: Tape, d_out: np.ndarray | None, d_final: Sequence[np.ndarray | None]) -> dict[str, np.ndarray]:
    """Backprop through time for the tape of :func:`forward`; ``d_final`` the final states' gradients."""
    return BACKWARD[tape.cell](tape, d_out, *d_final)
