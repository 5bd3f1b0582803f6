"""NumPy oracle: LSTM (seed section 4 notation), GRU and SimpleRNN with hand-derived BPTT.

Each cell module has a one-step function (the equations, line by line) and its backward; one
shared time loop (:mod:`.core`) runs any of them over a padded batch.  Forward functions return
``(out, states..., tape)``; backward functions take the tape and the upstream gradients and
return every parameter / input / initial-state gradient plus the per-step totals ``dh`` (and
``dc`` for the LSTM), shape (T, B, H), that the step taps record.  :func:`forward` /
:func:`backward` take any cell of :mod:`lstmlab.cells`.  The forward-only shortcuts ``lstm``,
``gru``, ``rnn`` live in their modules (``lstmlab.reference.lstm.lstm``): re-exported here they
would hide those modules.
"""

from __future__ import annotations

from .core import Tape, scan, scan_backward, sigmoid
from .finite_differences import gradcheck, max_error, numerical_grad
from .generic import backward, forward
from .gru import gru_backward, gru_forward, gru_step
from .lstm import (
    join_concat,
    lstm_backward,
    lstm_forward,
    lstm_ln_step,
    lstm_step,
    seed_to_torch,
    split_concat,
    torch_to_seed,
)
from .rnn import rnn_backward, rnn_forward, rnn_step

__all__ = [
    "Tape", "sigmoid", "scan", "scan_backward", "forward", "backward",
    "lstm_forward", "lstm_backward", "lstm_step", "lstm_ln_step", "torch_to_seed", "seed_to_torch",
    "split_concat", "join_concat", "gru_forward", "gru_backward", "gru_step", "rnn_forward",
    "rnn_backward", "rnn_step", "gradcheck", "numerical_grad", "max_error",
]
