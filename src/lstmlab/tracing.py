"""Gate and state traces: what every recurrent unit did at every step, as NumPy arrays.

``trace(model, x, lengths=None)`` runs the model once (eval mode, no gradients), catches the
input, lengths and initial state of every recurrent layer direction, and steps that layer's
cell through the NumPy oracle (:mod:`lstmlab.reference`, float64) on the same weights -- the
equations written once, there::

    LSTM  i, f, o = sigmoid(...), g = tanh(...)   c_t = f*c_{t-1} + i*g   h_t = o*tanh(c_t)
    GRU   r, z = sigmoid(...), n = tanh(W_in x + b_in + r*(W_hn h + b_hn))   h_t = (1-z)*n + z*h_{t-1}
    RNN   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

The result maps ``"<layer>/forward"`` / ``"<layer>/backward"`` (the names of
:func:`lstmlab.diagnose`) to a dict of ``(B, T, H)`` arrays on the *input* time axis (index t
is the step that read ``x_t``, also for backward directions): the cell's gates that are not
states (LSTM ``i f g o``, GRU ``r z n``; :attr:`lstmlab.cells.Cell.value_gates`) and its states
(``h``, and ``c`` for the LSTM); plus ``"mask"`` (B, T) bool, ``"lengths"`` (B,), ``"cell"``,
``"gates"`` (those gate names in order) and ``"reverse"``.  Padded steps are 0 in every array
(like the layers' outputs).  Dropout is not applied (eval mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from . import reference
from .layers import Bidirectional, RNNLayer, run_eval

__all__ = ["trace", "step_equations", "direction_names"]


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().to(torch.float64).numpy()


def _layer_norm(layer: RNNLayer) -> tuple | None:
    """``(weight, bias, eps)`` of each of a layer-normalised LSTM's three LayerNorms, else None."""
    if not getattr(layer, "layer_norm", False):
        return None
    return tuple((_np(ln.weight), _np(ln.bias), ln.eps) for ln in (layer.ln_ih, layer.ln_hh, layer.ln_c))


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
    spec = layer.cell_spec
    weights = [_np(w) for w in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)]
    states = (h0, c0)[:len(spec.states)]
    _, _, tape = reference.forward(spec, np.asarray(x, np.float64), states, weights, lengths,
                                   activation=layer.activation, layer_norm=_layer_norm(layer))
    valid = tape.mask.transpose(1, 0, 2) > 0  # (B, T, 1)
    values = {**{g: tape.gates[g] for g in spec.value_gates}, **tape.states}
    return {k: np.where(valid, v.transpose(1, 0, 2), 0.0) for k, v in values.items()}


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


def _run(model: nn.Module, names: dict[RNNLayer, str], x, lengths) -> dict[RNNLayer, dict[str, Any]]:
    """Run ``model`` once and return what each recurrent layer received; stateful layers keep their state."""
    catcher = _Catcher(list(names))
    states = {layer: layer._states for layer in names if layer.stateful}
    try:
        run_eval(model, x, lengths)
    finally:
        catcher.close()
        for layer, s in states.items():  # tracing must not advance a stateful layer
            layer._states = s
    return catcher.seen


def _direction(layer: RNNLayer, rec: dict[str, Any]) -> dict[str, Any]:
    """The trace entry of one direction from what :func:`_run` caught."""
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
    return {**arrays, "mask": mask, "lengths": lens, "cell": layer.cell, "gates": layer.cell_spec.value_gates,
            "reverse": reverse, "layer": layer.name}


def trace(model: nn.Module, x, lengths=None) -> dict[str, dict[str, Any]]:
    """Gate activations and states of every recurrent direction of ``model`` on ``x`` (see module doc).

    ``model`` may be a ``Sequential``, a single recurrent layer or ``Bidirectional``, or any module
    containing them.  ``lengths`` (B,) marks right padding.
    """
    names = direction_names(model)
    if not names:
        raise ValueError("model: has no recurrent layer (LSTM, GRU, SimpleRNN) to trace")
    seen = _run(model, names, x, lengths)
    return {name: _direction(layer, seen[layer]) for layer, name in names.items() if layer in seen}
