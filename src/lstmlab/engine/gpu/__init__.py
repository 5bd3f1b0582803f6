"""GPU engine: Triton step kernels with the taps computed inside, for LSTM, GRU and SimpleRNN.

Same interface as every engine (see :mod:`lstmlab.engine`)::

    lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None) -> (out, h_n, c_n)
    gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None)      -> (out, h_n)
    rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None)

Per step: one GEMM (cuBLAS) and one fused pointwise kernel (gates, cell, length mask, taps), in
forward and in the hand-written backward; weight gradients are big GEMMs after the loop (see
:mod:`.loops` and :mod:`.functions`).  With ``LSTMLAB_GPU_GRAPHS=1`` each direction's time loop is
captured once per shape as a CUDA graph and replayed (:mod:`.graphs`; opt-in until measured).

CUDA tensors run compiled kernels; CPU tensors run the same kernels in Triton's interpreter --
correct but slow, meant for tests on machines without a GPU.  Needs the ``triton`` package (it
ships with CUDA builds of torch); :func:`available` says whether it imports.  Under
``torch.autocast`` the GEMMs and saved activations use the autocast dtype while the cell state
and the taps are accumulated in float32.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

from ... import cells
from .. import loop
from ..taps import StepTaps

DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@functools.cache
def available() -> bool:
    """Whether the ``triton`` package is importable here (looked up once per process)."""
    return importlib.util.find_spec("triton") is not None


def supports(x: torch.Tensor, activation: str = "tanh") -> bool:
    """Whether this engine runs the call (else it hands it to the loop engine)."""
    return available() and x.dtype in DTYPES and x.dim() == 3 and min(x.shape[:2]) > 0 \
        and activation in ("tanh", "relu")


def _check_lengths(lengths: torch.Tensor | None, steps: int) -> None:
    if lengths is None or lengths.numel() == 0:
        return
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > steps:
        raise ValueError(f"lengths: expected values in [1, {steps}] (the number of steps), got min {lo}, max {hi}")


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _run(cell: cells.Cell, x, h0, c0, weights: tuple, lengths, rmask, activation: str, taps: StepTaps | None):
    """One call on the step kernels (triton imported here, on first use: it is an optional dependency)."""
    from . import functions as F
    from . import steps
    from .plan import make_plan

    _check_lengths(lengths, x.shape[1])
    x = x.contiguous()
    plan = make_plan(cell, x, weights[1].shape[1], lengths, rmask, activation == "relu", taps is not None)
    if _needs_grad(x, h0, c0, *weights):
        return F.RecurrentFunction.apply(plan, taps, x, h0, c0, *weights)
    with torch.autocast(x.device.type, enabled=False):
        s = F.forward(plan, x, h0, c0, *weights, save=False)
    F.taps_forward(taps, plan, s.get("sat"))
    return (s["out"], *steps.of(cell).final_states(plan, s))


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """LSTM over a (B, T, I) batch (gate order i, f, g, o).  Returns ``(out, h_n, c_n)``."""
    if not supports(x):
        return loop.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    return _run(cells.LSTM, x, h0, c0, (w_ih, w_hh, b_ih, b_hh), lengths, rmask, "tanh", taps)


def gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """GRU over a (B, T, I) batch (torch.nn.GRU equations, gate order r, z, n).  Returns ``(out, h_n)``."""
    if not supports(x):
        return loop.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    return _run(cells.GRU, x, h0, None, (w_ih, w_hh, b_ih, b_hh), lengths, rmask, "tanh", taps)


def rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None):
    """Elman RNN (``activation`` tanh or relu) over a (B, T, I) batch.  Returns ``(out, h_n)``."""
    if not supports(x, activation):
        return loop.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation, taps)
    return _run(cells.RNN, x, h0, None, (w_ih, w_hh, b_ih, b_hh), lengths, rmask, activation, taps)
