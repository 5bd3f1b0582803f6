"""NumPy oracle: LSTM (seed section 4 notation), GRU and SimpleRNN with hand-derived BPTT.

Forward functions return ``(out, states..., tape)``; backward functions take the tape and the
upstream gradients and return every parameter / input / initial-state gradient plus the
per-step totals ``dh`` (and ``dc`` for the LSTM), shape (T, B, H), that the step taps record.
"""

from __future__ import annotations

from .gradcheck import gradcheck, max_error, numerical_grad
from .gru import gru, gru_backward, gru_forward, gru_step
from .lstm import (
    Tape,
    join_concat,
    lstm,
    lstm_backward,
    lstm_forward,
    lstm_step,
    seed_to_torch,
    sigmoid,
    split_concat,
    torch_to_seed,
)
from .rnn import rnn, rnn_backward, rnn_forward, rnn_step

__all__ = [
    "Tape", "sigmoid", "lstm", "lstm_forward", "lstm_backward", "lstm_step", "torch_to_seed", "seed_to_torch",
    "split_concat", "join_concat", "gru", "gru_forward", "gru_backward", "gru_step", "rnn", "rnn_forward",
    "rnn_backward", "rnn_step", "gradcheck", "numerical_grad", "max_error",
]
