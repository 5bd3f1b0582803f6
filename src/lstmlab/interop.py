"""Move weights between lstmlab, PyTorch and Keras without translation errors.

lstmlab stores recurrent weights exactly as ``torch.nn.LSTM`` layer 0 does, so conversion is a
copy; Keras stores the transposes with a single bias and the same gate order (i, f, c, o).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import cells
from .layers import LAYERS, LSTM, Bidirectional, Dropout, RNNLayer, torch_module
from .model import Sequential


def _layer_class(module: nn.Module) -> type[RNNLayer] | None:
    """The lstmlab layer class of the same cell as a torch.nn.LSTM / GRU / RNN (exact type), else None."""
    spec = cells.BY_TORCH.get(type(module).__name__)
    return LAYERS[spec.layer] if spec is not None and type(module) is getattr(nn, spec.torch_name) else None


def _copy_into(layer: RNNLayer, w_ih, w_hh, b_ih, b_hh) -> None:
    with torch.no_grad():
        layer.weight_ih.copy_(w_ih)
        layer.weight_hh.copy_(w_hh)
        if layer.use_bias:
            layer.bias_ih.copy_(b_ih)
            layer.bias_hh.copy_(b_hh)


def from_torch(module: nn.Module, engine: str = "auto") -> Sequential:
    """An lstmlab model equivalent to a ``torch.nn.LSTM``, ``GRU`` or ``RNN``.

    Any ``num_layers``, ``bidirectional`` and ``dropout``.  The result is batch-first whatever
    ``module.batch_first`` says: call it with ``(batch, time, features)``; its output equals the
    torch module's output sequence (transposed when ``batch_first=False``).
    """
    cls = _layer_class(module)
    if cls is None:
        raise ValueError(f"module: expected torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("module: LSTMs with proj_size > 0 have no lstmlab equivalent")
    dtype, device = module.weight_ih_l0.dtype, module.weight_ih_l0.device
    layers = []
    for k in range(module.num_layers):
        n_in = module.input_size if k == 0 else module.hidden_size * (2 if module.bidirectional else 1)
        kw = {"return_sequences": True, "input_size": n_in, "use_bias": module.bias, "engine": engine}
        if cls.cell_spec.uses_activation:
            kw["activation"] = "relu" if module.nonlinearity == "relu" else "tanh"
        fw = cls(module.hidden_size, **kw)
        fw.to(dtype=dtype, device=device)
        sfx = f"_l{k}"
        get = lambda name, s=sfx: getattr(module, name + s) if module.bias or "bias" not in name else None
        _copy_into(fw, get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"))
        if module.bidirectional:
            bw = cls(module.hidden_size, go_backwards=True, **kw)
            bw.to(dtype=dtype, device=device)
            r = sfx + "_reverse"
            _copy_into(bw, getattr(module, "weight_ih" + r), getattr(module, "weight_hh" + r),
                       getattr(module, "bias_ih" + r, None), getattr(module, "bias_hh" + r, None))
            layers.append(Bidirectional(fw, backward_layer=bw))
        else:
            layers.append(fw)
        if module.dropout and k < module.num_layers - 1:
            layers.append(Dropout(module.dropout))
    return Sequential(layers, name=f"from_{type(module).__name__.lower()}")


def to_torch(model: Sequential) -> nn.Module:
    """The ``torch.nn.LSTM/GRU/RNN`` (batch_first=True) equivalent of a stack of recurrent layers
    of one kind and size (optionally Bidirectional, with Dropout between layers)."""
    stack, dropout = [], 0.0
    for layer in model.layers:
        if isinstance(layer, Dropout):
            dropout = layer.rate
        elif isinstance(layer, Bidirectional):
            stack.append([layer.forward_layer, layer.backward_layer])
        elif isinstance(layer, RNNLayer):
            stack.append([layer])
        else:
            raise ValueError(f"to_torch: expected only recurrent and Dropout layers, got {type(layer).__name__}")
    if not stack:
        raise ValueError("to_torch: the model has no recurrent layer")
    if len({len(directions) for directions in stack}) > 1:
        raise ValueError("to_torch: all recurrent layers must be the same kind and size")
    return torch_module(stack, dropout)


def from_keras(kernel, recurrent_kernel, bias=None, **layer_kwargs) -> LSTM:
    """An ``ll.LSTM`` holding a Keras LSTM's weights.

    ``kernel`` (I, 4H), ``recurrent_kernel`` (H, 4H), ``bias`` (4H,), gate order i, f, c, o
    (Keras) = i, f, g, o (PyTorch).  Keras has one bias; it goes to ``bias_ih``.
    """
    k = torch.as_tensor(np.asarray(kernel))
    rk = torch.as_tensor(np.asarray(recurrent_kernel))
    if k.dim() != 2 or rk.dim() != 2 or k.shape[1] % 4 or rk.shape[1] != k.shape[1] \
            or rk.shape[0] * 4 != rk.shape[1]:
        raise ValueError(f"from_keras: expected kernel (I, 4H) and recurrent_kernel (H, 4H), got "
                         f"{tuple(k.shape)} and {tuple(rk.shape)}")
    units = rk.shape[0]
    b = torch.zeros(4 * units, dtype=k.dtype) if bias is None else torch.as_tensor(np.asarray(bias))
    if tuple(b.shape) != (4 * units,):
        raise ValueError(f"from_keras: expected bias of shape ({4 * units},), got {tuple(b.shape)}")
    layer = LSTM(units, input_size=k.shape[0], use_bias=bias is not None, **layer_kwargs)
    layer.to(k.dtype)
    _copy_into(layer, k.t(), rk.t(), b, torch.zeros_like(b))
    return layer
