"""Reference engine: the NumPy oracle (:mod:`lstmlab.reference`) behind ``torch.autograd.Function``.

Tensors go to NumPy on the CPU (float64 stays float64, everything else is computed in float32),
the hand-derived forward / backward run there, and results come back with the input's dtype
and device.  Slow; meant for tests and for checking the other engines.  Taps are filled
directly: saturation in forward, ``grad_h_sq`` / ``grad_c_sq`` in backward.
"""

from __future__ import annotations

import numpy as np
import torch

from ..reference.gru import gru_backward, gru_forward
from ..reference.lstm import Tape, lstm_backward, lstm_forward
from ..reference.rnn import rnn_backward, rnn_forward
from .taps import StepTaps, saturation_counts


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    """Tensor -> NumPy on the CPU; floating types other than float64 become float32."""
    if t is None:
        return None
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype != torch.float64:
        t = t.float()
    return t.numpy()


def _meta(*tensors: torch.Tensor | None) -> list:
    """(dtype, device) of each input, so that gradients come back like it (None for a None input)."""
    return [None if t is None else (t.dtype, t.device) for t in tensors]


def _torch(a: np.ndarray | None, meta) -> torch.Tensor | None:
    if a is None or meta is None:
        return None
    dtype, device = meta
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)


def _fill_forward_taps(taps: StepTaps | None, tape: Tape, hidden: int, device: torch.device,
                       lengths: torch.Tensor | None) -> None:
    if taps is None:
        return
    taps.units = hidden
    gates = {k: torch.from_numpy(v).to(device) for k, v in tape.gates.items()}
    mask = None if lengths is None else torch.from_numpy(tape.mask[..., 0]).to(device)
    taps.saturated = saturation_counts(tape.cell, gates, mask, tape.activation)


def _fill_backward_taps(taps: StepTaps | None, grads: dict, meta) -> None:
    if taps is None:
        return
    taps.grad_h_sq = _torch((grads["dh"] ** 2).sum(-1), meta)
    taps.grad_c_sq = _torch((grads["dc"] ** 2).sum(-1), meta) if "dc" in grads else None
    taps.filled_backward = True


def _grads(g: dict, meta: list, names: tuple[str, ...]) -> list:
    """Gradients for the listed inputs (None for non-differentiable slots), typed like the inputs."""
    return [None if name is None else _torch(g[name], m) for name, m in zip(names, meta, strict=True)]


_LSTM_IN = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", None, "rmask", None)
_GRU_IN = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", None, "rmask", None)
_RNN_IN = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", None, "rmask", None, None)


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps):
        out, h_n, c_n, tape = lstm_forward(_np(x), _np(h0), _np(c0), _np(w_ih), _np(w_hh), _np(b_ih),
                                           _np(b_hh), _np(lengths), _np(rmask))
        ctx.tape, ctx.taps = tape, taps
        ctx.meta = _meta(x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, rmask, None)
        _fill_forward_taps(taps, tape, w_hh.shape[1], x.device, lengths)
        like = ctx.meta[0]
        return _torch(out, like), _torch(h_n, like), _torch(c_n, like)

    @staticmethod
    def backward(ctx, d_out, dh_n, dc_n):
        g = lstm_backward(ctx.tape, _np(d_out), _np(dh_n), _np(dc_n))
        _fill_backward_taps(ctx.taps, g, ctx.meta[0])
        return tuple(_grads(g, ctx.meta, _LSTM_IN))


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps):
        out, h_n, tape = gru_forward(_np(x), _np(h0), _np(w_ih), _np(w_hh), _np(b_ih), _np(b_hh),
                                     _np(lengths), _np(rmask))
        ctx.tape, ctx.taps = tape, taps
        ctx.meta = _meta(x, h0, w_ih, w_hh, b_ih, b_hh, None, rmask, None)
        _fill_forward_taps(taps, tape, w_hh.shape[1], x.device, lengths)
        return _torch(out, ctx.meta[0]), _torch(h_n, ctx.meta[0])

    @staticmethod
    def backward(ctx, d_out, dh_n):
        g = gru_backward(ctx.tape, _np(d_out), _np(dh_n))
        _fill_backward_taps(ctx.taps, g, ctx.meta[0])
        return tuple(_grads(g, ctx.meta, _GRU_IN))


class _RNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation, taps):
        out, h_n, tape = rnn_forward(_np(x), _np(h0), _np(w_ih), _np(w_hh), _np(b_ih), _np(b_hh),
                                     _np(lengths), _np(rmask), activation)
        ctx.tape, ctx.taps = tape, taps
        ctx.meta = _meta(x, h0, w_ih, w_hh, b_ih, b_hh, None, rmask, None, None)
        _fill_forward_taps(taps, tape, w_hh.shape[1], x.device, lengths)
        return _torch(out, ctx.meta[0]), _torch(h_n, ctx.meta[0])

    @staticmethod
    def backward(ctx, d_out, dh_n):
        g = rnn_backward(ctx.tape, _np(d_out), _np(dh_n))
        _fill_backward_taps(ctx.taps, g, ctx.meta[0])
        return tuple(_grads(g, ctx.meta, _RNN_IN))


def lstm(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
         b_ih: torch.Tensor, b_hh: torch.Tensor, lengths: torch.Tensor | None = None,
         rmask: torch.Tensor | None = None, taps: StepTaps | None = None
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LSTM over a (B, T, I) batch (gate order i, f, g, o).  Returns ``(out, h_n, c_n)``."""
    return _LSTM.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)


def gru(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
        b_hh: torch.Tensor, lengths: torch.Tensor | None = None, rmask: torch.Tensor | None = None,
        taps: StepTaps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """GRU over a (B, T, I) batch (torch.nn.GRU equations, gate order r, z, n).  Returns ``(out, h_n)``."""
    return _GRU.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)


def rnn(x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
        b_hh: torch.Tensor, lengths: torch.Tensor | None = None, rmask: torch.Tensor | None = None,
        activation: str = "tanh", taps: StepTaps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Elman RNN (``activation`` tanh or relu) over a (B, T, I) batch.  Returns ``(out, h_n)``."""
    return _RNN.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation, taps)
