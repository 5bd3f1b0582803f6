"""Native engine: torch's own RNN kernels (oneDNN on CPU, cuDNN on GPU); no taps.

The fastest route when nobody needs the per-step gradient.  Variable lengths go through a
PackedSequence so padded steps are never computed.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import cells


def kernel(cell: str | cells.Cell, activation: str = "tanh"):
    """torch's kernel for ``cell``: ``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh`` / ``rnn_relu``; None if none."""
    spec = cells.get(cell)
    name = spec.torch_name.lower() + (f"_{activation}" if spec.uses_activation else "")
    return getattr(torch, name, None)


def supports(cell: str | cells.Cell, activation: str, device: torch.device) -> bool:
    """Whether the native kernels implement this configuration."""
    return kernel(cell, activation) is not None


def _call(cell: cells.Cell, activation: str, x, hx, params, lengths):
    fn = kernel(cell, activation)
    steps = x.shape[1]
    if lengths is None:
        out, *hn = fn(x, hx, params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
        return out, hn
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    perm, inv = packed.sorted_indices, packed.unsorted_indices
    hx = tuple(h.index_select(1, perm.to(h.device)) for h in hx) if isinstance(hx, tuple) \
        else hx.index_select(1, perm.to(hx.device))
    out, *hn = fn(packed.data, packed.batch_sizes, hx, params, True, 1, 0.0,
                  torch.is_grad_enabled(), False)
    packed_out = torch.nn.utils.rnn.PackedSequence(out, packed.batch_sizes, perm, inv)
    out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
    hn = [h.index_select(1, inv.to(h.device)) for h in hn]
    return out, hn


def _check(rmask, taps) -> None:
    if rmask is not None or taps is not None:
        raise ValueError("engine='native' supports neither recurrent_dropout nor gradient taps")


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    _check(rmask, taps)
    out, (h_n, c_n) = _call(cells.LSTM, "tanh", x, (h0.unsqueeze(0), c0.unsqueeze(0)),
                            [w_ih, w_hh, b_ih, b_hh], lengths)
    return out, h_n[0], c_n[0]


def gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    _check(rmask, taps)
    out, (h_n,) = _call(cells.GRU, "tanh", x, h0.unsqueeze(0), [w_ih, w_hh, b_ih, b_hh], lengths)
    return out, h_n[0]


def rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None):
    _check(rmask, taps)
    out, (h_n,) = _call(cells.RNN, activation, x, h0.unsqueeze(0), [w_ih, w_hh, b_ih, b_hh], lengths)
    return out, h_n[0]
