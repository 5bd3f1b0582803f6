"""Gate and state traces: what every recurrent unit did at every step, as NumPy arrays.

``trace(model, x, lengths=None)`` runs the model once (eval mode, no gradients), catches the
input, lengths and initial state of every recurrent layer direction, and re-runs that layer's
equations step by step in NumPy (float64) on the same weights::

    LSTM  i, f, o = sigmoid(...), g = tanh(...)   c_t = f*c_{t-1} + i*g   h_t = o*tanh(c_t)
    GRU   r, z = sigmoid(...), n = tanh(W_in x + b_in + r*(W_hn h + b_hn))   h_t = (1-z)*n + z*h_{t-1}
    RNN   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

The result maps ``"<layer>/forward"`` / ``"<layer>/backward"`` (the names of
:func:`lstmlab.diagnose`) to a dict of ``(B, T, H)`` arrays on the *input* time axis (index t
is the step that read ``x_t``, also for backward directions): LSTM ``i f g o c h``, GRU
``r z n h``, SimpleRNN ``h``; plus ``"mask"`` (B, T) bool, ``"lengths"`` (B,), ``"cell"``,
``"gates"`` (gate names in order) and ``"reverse"``.  Padded steps are 0 in every array (like
the layers' outputs).  Dropout is not applied (eval mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .layers import Bidirectional, RNNLayer

__all__ = ["trace", "step_equations", "direction_names"]

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ()}


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # overflow-free logistic


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().to(torch.float64).numpy()


def _layer_norm(v: np.ndarray, ln: nn.LayerNorm) -> np.ndarray:
    mu = v.mean(-1, keepdims=True)
    var = v.var(-1, keepdims=True)
    out = (v - mu) / np.sqrt(var + ln.eps)
    if ln.weight is not None:
        out = out * _np(ln.weight)
    if ln.bias is not None:
        out = out + _np(ln.bias)
    return out


def direction_names(model: nn.Module) -> dict[RNNLayer, str]:
    """``{layer: "<name>/forward" | "<name>/backward"}`` for every recurrent direction in ``model``."""
    out: dict[RNNLayer, str] = {}
    for m in model.modules():
        if isinstance(m, Bidirectional):
            out[m.forward_layer] = f"{m.name}/forward"
            out[m.backward_layer] = f"{m.name}/backward"
        elif isinstance(m, RNNLayer) and m not in out:
            out[m] = f"{m.name}/{'backward' if m.go_backwards else 'forward'}"
    return out


def _reverse_index(lengths: np.ndarray, steps: int) -> np.ndarray:
    """(B, T) index reversing each sequence within its length (padding stays in place)."""
    t = np.arange(steps)[None, :]
    ln = lengths[:, None]
    return np.where(t < ln, ln - 1 - t, t)


def step_equations(layer: RNNLayer, x: np.ndarray, h0: np.ndarray, c0: np.ndarray | None,
                   lengths: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run ``layer``'s cell over ``x`` (B, T, I) in processing order, step by step, in float64.

    Returns ``(B, T, H)`` arrays of the gate activations and states after each step; a padded
    step (``t >= lengths[b]``) carries the state and is zeroed in the returned arrays.
    """
    cell = layer.cell
    w_ih, w_hh = _np(layer.weight_ih), _np(layer.weight_hh)
    b_ih, b_hh = _np(layer.bias_ih), _np(layer.bias_hh)
    batch, steps, _ = x.shape
    units = layer.units
    lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    names = GATES[cell] + (("c", "h") if cell == "lstm" else ("h",))
    out = {k: np.zeros((batch, steps, units)) for k in names}
    h = h0.copy()
    c = None if c0 is None else c0.copy()
    ln = (layer.ln_ih, layer.ln_hh, layer.ln_c) if getattr(layer, "layer_norm", False) else None
    for t in range(steps):
        valid = (t < lengths)[:, None]
        xw = x[:, t] @ w_ih.T + b_ih
        rec = h @ w_hh.T + b_hh
        if cell == "lstm":
            pre = _layer_norm(xw, ln[0]) + _layer_norm(rec, ln[1]) if ln else xw + rec
            gi, gf, gg, go = np.split(pre, 4, axis=-1)
            i, f, g, o = _sigmoid(gi), _sigmoid(gf), np.tanh(gg), _sigmoid(go)
            c_new = f * c + i * g
            h_new = o * np.tanh(_layer_norm(c_new, ln[2]) if ln else c_new)
            c = np.where(valid, c_new, c)
            vals = {"i": i, "f": f, "g": g, "o": o, "c": c_new, "h": h_new}
        elif cell == "gru":
            xr, xz, xn = np.split(xw, 3, axis=-1)
            hr, hz, hn = np.split(rec, 3, axis=-1)
            r = _sigmoid(xr + hr)
            z = _sigmoid(xz + hz)
            n = np.tanh(xn + r * hn)
            h_new = (1 - z) * n + z * h
            vals = {"r": r, "z": z, "n": n, "h": h_new}
        else:
            pre = xw + rec
            h_new = np.tanh(pre) if layer.activation == "tanh" else np.maximum(pre, 0.0)
            vals = {"h": h_new}
        h = np.where(valid, h_new, h)
        for k, v in vals.items():
            out[k][:, t] = np.where(valid, v, 0.0)
    return out


class _Catcher:
    """Forward hooks that record each recurrent layer's input, initial state and lengths."""

    def __init__(self, layers: list[RNNLayer]) -> None:
        self.seen: dict[RNNLayer, dict[str, Any]] = {}
        self.handles = []
        for layer in layers:
            self.handles.append(layer.register_forward_pre_hook(self._pre(layer), with_kwargs=True))
            self.handles.append(layer.register_forward_hook(self._post(layer)))

    def _pre(self, layer: RNNLayer):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["x"]
            init = kwargs.get("initial_state", args[3] if len(args) > 3 else None)
            h0, c0 = layer._initial(x, init)
            self.seen[layer] = {"x": x.detach(), "h0": h0, "c0": c0}
        return hook

    def _post(self, layer: RNNLayer):
        def hook(module, args, output):
            rec = self.seen[layer]
            rec["lengths"] = getattr(layer, "_last_lengths", None)
        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def trace(model: nn.Module, x, lengths=None) -> dict[str, dict[str, Any]]:
    """Gate activations and states of every recurrent direction of ``model`` on ``x`` (see module doc).

    ``model`` may be a ``Sequential``, a single recurrent layer or ``Bidirectional``, or any module
    containing them.  ``lengths`` (B,) marks right padding.
    """
    names = direction_names(model)
    if not names:
        raise ValueError("model: has no recurrent layer (LSTM, GRU, SimpleRNN) to trace")
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    params = list(model.parameters())
    if params and x.is_floating_point():
        x = x.to(dtype=params[0].dtype, device=params[0].device)
    if lengths is not None and not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(np.asarray(lengths))
    catcher = _Catcher(list(names))
    was = model.training
    model.eval()
    states = {layer: layer._states for layer in names if layer.stateful}
    try:
        with torch.no_grad():
            if lengths is None:
                model(x)
            else:
                model(x, lengths=lengths)
    finally:
        model.train(was)
        catcher.close()
        for layer, s in states.items():  # tracing must not advance a stateful layer
            layer._states = s
    result: dict[str, dict[str, Any]] = {}
    for layer, name in names.items():
        rec = catcher.seen.get(layer)
        if rec is None:
            continue
        xin = _np(rec["x"])
        batch, steps = xin.shape[0], xin.shape[1]
        lens = rec.get("lengths")
        lens = np.full(batch, steps, dtype=np.int64) if lens is None else lens.cpu().numpy().astype(np.int64)
        reverse = bool(layer.go_backwards)
        idx = _reverse_index(lens, steps)
        if reverse:
            xin = np.take_along_axis(xin, idx[..., None], axis=1)
        arrays = step_equations(layer, xin, _np(rec["h0"]), _np(rec["c0"]), lens)
        if reverse:  # back to the input time axis
            arrays = {k: np.take_along_axis(v, idx[..., None], axis=1) for k, v in arrays.items()}
        mask = np.arange(steps)[None, :] < lens[:, None]
        result[name] = {**arrays, "mask": mask, "lengths": lens, "cell": layer.cell,
                        "gates": GATES[layer.cell], "reverse": reverse, "layer": layer.name}
    return result
