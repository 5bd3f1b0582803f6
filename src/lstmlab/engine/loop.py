"""Loop engine: one step at a time in plain torch ops, differentiated by torch.autograd.

Slow but obviously correct, and it supports everything (layer norm, any activation).  It is
the fallback when the fused engine cannot be compiled.  Taps are recorded with tensor hooks:
the gradient a hook on ``h_t`` receives *is* the total gradient ``dL/dh_t``.

Every engine module exposes the same three functions (see ``lstmlab.engine``):
``lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)``,
``gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)`` and
``rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation, taps)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import cells
from .taps import StepTaps, saturation_counts

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def step_mask(lengths: torch.Tensor | None, batch: int, steps: int, like: torch.Tensor) -> torch.Tensor | None:
    """(T, B, 1) float mask, 1 where step t < lengths[b]; None when every step is valid."""
    if lengths is None:
        return None
    t = torch.arange(steps, device=lengths.device).unsqueeze(1)
    return (t < lengths.unsqueeze(0)).to(device=like.device, dtype=like.dtype).unsqueeze(-1)


def _record(taps: StepTaps | None, hs: list[torch.Tensor], cs: list[torch.Tensor] | None) -> None:
    """Attach hooks so that backward fills taps.grad_h_sq / grad_c_sq (shape (T, B)).

    A state whose gradient never arrives (e.g. an unused final state) records 0; the records
    are assembled by ``taps.finalize()``.
    """
    if taps is None or not torch.is_grad_enabled():
        return
    zero = torch.zeros_like(hs[0][..., 0]).detach()
    h_store: list = [None] * len(hs)
    c_store: list = [None] * len(cs) if cs is not None else []

    def make(store: list, t: int) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            store[t] = grad.detach().pow(2).sum(-1)
        return hook

    for store, states in ((h_store, hs), (c_store, cs or [])):
        for t, s in enumerate(states):
            if s.requires_grad:
                s.register_hook(make(store, t))

    def assemble() -> None:
        if all(v is None for v in h_store):
            return  # no backward ran
        taps.grad_h_sq = torch.stack([v if v is not None else zero for v in h_store])
        if cs is not None:
            taps.grad_c_sq = torch.stack([v if v is not None else zero for v in c_store])
        taps.filled_backward = True

    taps.pending.append(assemble)


def _record_taps(taps: StepTaps | None, cell: cells.Cell, acts: dict[str, list], mask: torch.Tensor | None,
                 hs: list[torch.Tensor], cs: list[torch.Tensor] | None, units: int, activation: str = "tanh") -> None:
    """Saturation counts from the gate values of every step, and hooks for the gradient norms."""
    if taps is None:
        return
    taps.units = units
    taps.saturated = saturation_counts(cell, {k: torch.stack(v) for k, v in acts.items()},
                                       None if mask is None else mask[..., 0], activation)
    _record(taps, hs, cs)


def _carry(m: torch.Tensor | None, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return new if m is None else m * new + (1 - m) * old


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None,
         layer_norm: tuple | None = None):
    """LSTM over a (B, T, I) batch.  Gate order i, f, g, o as torch.nn.LSTM.

    ``layer_norm``: optional ``(ln_ih, ln_hh, ln_c)`` callables (layer-normalised LSTM, Ba et
    al. 2016): normalise the two gate pre-activations separately and the cell before tanh.
    """
    batch, steps, _ = x.shape
    mask = step_mask(lengths, batch, steps, x)
    xw = torch.nn.functional.linear(x, w_ih, b_ih).transpose(0, 1)  # (T, B, 4H)
    h, c = h0, c0
    hs, cs, outs, acts = [], [], [], {k: [] for k in cells.LSTM.gates}
    for t in range(steps):
        hr = h if rmask is None else h * rmask
        rec = torch.nn.functional.linear(hr, w_hh, b_hh)
        pre = (layer_norm[0](xw[t]) + layer_norm[1](rec)) if layer_norm else xw[t] + rec
        i, f, g, o = pre.chunk(4, -1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        m = None if mask is None else mask[t]
        c = _carry(m, f * c + i * g, c)  # carried cell state: what h_t and step t+1 both read
        h_new = o * torch.tanh(layer_norm[2](c) if layer_norm else c)
        h = _carry(m, h_new, h)
        hs.append(h)
        cs.append(c)
        outs.append(h if m is None else h * m)  # output read from the carried state h_t
        if taps is not None:
            for k, v in zip(cells.LSTM.gates, (i, f, g, o), strict=True):
                acts[k].append(v.detach())
    _record_taps(taps, cells.LSTM, acts, mask, hs, cs, h0.shape[-1])
    return torch.stack(outs, 1), h, c


def gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """GRU over a (B, T, I) batch, torch.nn.GRU equations (gate order r, z, n)."""
    batch, steps, _ = x.shape
    mask = step_mask(lengths, batch, steps, x)
    xw = torch.nn.functional.linear(x, w_ih, b_ih).transpose(0, 1)
    h = h0
    hs, outs, acts = [], [], {k: [] for k in cells.GRU.gates}
    for t in range(steps):
        hr = h if rmask is None else h * rmask
        rec = torch.nn.functional.linear(hr, w_hh, b_hh)
        xr, xz, xn = xw[t].chunk(3, -1)
        hr_, hz, hn = rec.chunk(3, -1)
        r = torch.sigmoid(xr + hr_)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h_new = (1 - z) * n + z * h
        m = None if mask is None else mask[t]
        h = _carry(m, h_new, h)
        hs.append(h)
        outs.append(h if m is None else h * m)
        if taps is not None:
            for k, v in zip(cells.GRU.gates, (r, z, n), strict=True):
                acts[k].append(v.detach())
    _record_taps(taps, cells.GRU, acts, mask, hs, None, h0.shape[-1])
    return torch.stack(outs, 1), h


def rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None):
    """Elman RNN over a (B, T, I) batch: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    batch, steps, _ = x.shape
    mask = step_mask(lengths, batch, steps, x)
    act = ACTIVATIONS[activation]
    xw = torch.nn.functional.linear(x, w_ih, b_ih).transpose(0, 1)
    h = h0
    hs, outs, acts = [], [], {"h": []}
    for t in range(steps):
        hr = h if rmask is None else h * rmask
        h_new = act(xw[t] + torch.nn.functional.linear(hr, w_hh, b_hh))
        m = None if mask is None else mask[t]
        h = _carry(m, h_new, h)
        hs.append(h)
        outs.append(h if m is None else h * m)
        if taps is not None:
            acts["h"].append(h_new.detach())
    _record_taps(taps, cells.RNN, acts, mask, hs, None, h0.shape[-1], activation)
    return torch.stack(outs, 1), h
