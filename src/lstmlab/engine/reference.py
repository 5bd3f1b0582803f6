"""Reference engine: the NumPy oracle (:mod:`lstmlab.reference`) behind ``torch.autograd.Function``.

Tensors go to NumPy on the CPU (float64 stays float64, everything else is computed in float32),
the hand-derived forward / backward run there, and results come back with the input's dtype
and device.  Slow; meant for tests and for checking the other engines.  Taps are filled
directly: saturation in forward, ``grad_h_sq`` / ``grad_c_sq`` in backward.  One autograd
Function serves every cell of :mod:`lstmlab.cells`.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import cells
from .. import reference as oracle
from .taps import StepTaps, saturation_counts

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    """Tensor -> NumPy on the CPU; floating types other than float64 become float32."""
    if t is None:
        return None
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype != torch.float64:
        t = t.float()
    return t.numpy()


def _meta(t: torch.Tensor | None) -> tuple | None:
    """(dtype, device) of an input, so that its gradient comes back like it (None for a None input)."""
    return None if t is None else (t.dtype, t.device)


def _torch(a: np.ndarray | None, meta: tuple | None) -> torch.Tensor | None:
    if a is None or meta is None:
        return None
    dtype, device = meta
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)


def _fill_forward_taps(taps: StepTaps | None, tape: oracle.Tape, hidden: int, device: torch.device,
                       lengths: torch.Tensor | None) -> None:
    if taps is None:
        return
    taps.units = hidden
    gates = {k: torch.from_numpy(v).to(device) for k, v in tape.gates.items()}
    mask = None if lengths is None else torch.from_numpy(tape.mask[..., 0]).to(device)
    taps.saturated = saturation_counts(tape.cell, gates, mask, tape.activation)


def _fill_backward_taps(taps: StepTaps | None, grads: dict, meta: tuple) -> None:
    if taps is None:
        return
    taps.grad_h_sq = _torch((grads["dh"] ** 2).sum(-1), meta)
    taps.grad_c_sq = _torch((grads["dc"] ** 2).sum(-1), meta) if "dc" in grads else None
    taps.filled_backward = True


class _Cell(torch.autograd.Function):
    """``apply(spec, activation, lengths, taps, x, rmask, *states, *weights)`` -> ``(out, *final_states)``."""

    @staticmethod
    def forward(ctx, spec: cells.Cell, activation: str, lengths, taps, x, rmask, *tensors):
        n = len(spec.states)
        states, weights = tensors[:n], tensors[n:]
        out, final, tape = oracle.forward(spec, _np(x), [_np(s) for s in states], [_np(w) for w in weights],
                                          _np(lengths), _np(rmask), activation)
        ctx.tape, ctx.taps, ctx.spec = tape, taps, spec
        ctx.meta = [_meta(t) for t in (x, rmask, *tensors)]
        _fill_forward_taps(taps, tape, weights[1].shape[1], x.device, lengths)
        like = ctx.meta[0]
        return (_torch(out, like),) + tuple(_torch(s, like) for s in final)

    @staticmethod
    def backward(ctx, d_out, *d_final):
        g = oracle.backward(ctx.tape, _np(d_out), [_np(d) for d in d_final])
        _fill_backward_taps(ctx.taps, g, ctx.meta[0])
        names = ("x", "rmask") + tuple(f"{s}0" for s in ctx.spec.states) + WEIGHTS
        grads = [_torch(g[name], meta) for name, meta in zip(names, ctx.meta, strict=True)]
        return (None, None, None, None, *grads)


def _run(spec: cells.Cell, x, states, weights, lengths, rmask, taps, activation="tanh"):
    return _Cell.apply(spec, activation, lengths, taps, x, rmask, *states, *weights)


def lstm(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
         b_ih: torch.Tensor, b_hh: torch.Tensor, lengths: torch.Tensor | None = None,
         rmask: torch.Tensor | None = None, taps: StepTaps | None = None
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LSTM over a (B, T, I) batch (gate order i, f, g, o).  Returns ``(out, h_n, c_n)``."""
    return _run(cells.LSTM, x, (h0, c0), (w_ih, w_hh, b_ih, b_hh), lengths, rmask, taps)


def gru(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
        b_hh: torch.Tensor, lengths: torch.Tensor | None = None, rmask: torch.Tensor | None = None,
        taps: StepTaps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """GRU over a (B, T, I) batch (torch.nn.GRU equations, gate order r, z, n).  Returns ``(out, h_n)``."""
    return _run(cells.GRU, x, (h0,), (w_ih, w_hh, b_ih, b_hh), lengths, rmask, taps)


def rnn(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
        b_hh: torch.Tensor, lengths: torch.Tensor | None = None, rmask: torch.Tensor | None = None,
        activation: str = "tanh", taps: StepTaps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Elman RNN (``activation`` tanh or relu) over a (B, T, I) batch.  Returns ``(out, h_n)``."""
    return _run(cells.RNN, x, (h0,), (w_ih, w_hh, b_ih, b_hh), lengths, rmask, taps, activation)
