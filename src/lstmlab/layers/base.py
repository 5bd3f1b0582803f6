"""The ``Layer`` base class and the argument checks every layer shares.

A layer is a ``torch.nn.Module`` that builds its weights on the first call (or at once when
``input_size=`` is given), takes Keras argument names and defaults, and round-trips through
``get_config()`` / ``from_config()``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch
from torch import nn

ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax", "elu", "gelu")
_FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
              "elu": nn.functional.elu, "gelu": nn.functional.gelu}


def apply_activation(name: str | None, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the named activation (``None`` / ``"linear"``: unchanged; softmax over the last axis)."""
    if name in (None, "linear"):
        return x
    if name == "softmax":
        return torch.softmax(x, -1)
    return _FUNCTIONS[name](x)


def check_choice(arg: str, value, choices: Collection) -> None:
    """Raise ValueError naming ``arg`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{arg}: expected one of {tuple(choices)}, got {value!r}")


def check_positive_int(arg: str, value) -> int:
    """``value`` when it is an int >= 1 (not a bool); ValueError naming ``arg`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg}: expected a positive integer, got {value!r}")
    return value


def check_rate(arg: str, value) -> float:
    """``value`` as a float in [0, 1); ValueError naming ``arg`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{arg}: expected a float in [0, 1), got {value!r}")
    return float(value)


class Layer(nn.Module):
    """Base class: lazy build, mask propagation and Keras-style config."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name or type(self).__name__.lower()
        self.built = False

    # subclasses override -------------------------------------------------
    def build(self, input_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.built = True

    def compute_mask(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        return mask

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def regularization_loss(self) -> torch.Tensor | None:
        return None

    def maybe_build(self, x: torch.Tensor) -> None:
        if not self.built:
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            self.build(tuple(x.shape), dtype, x.device)
            self.built = True


def run_eval(model: nn.Module, x, lengths=None) -> torch.Tensor:
    """One forward pass of ``model`` on ``x`` in eval mode without gradients (training mode restored).

    ``x`` may be an array; float input is moved to the dtype and device of the model's parameters.
    Used by ``explain`` and ``trace``, which read what the layers recorded on the way.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    params = list(model.parameters())
    if params and x.is_floating_point():
        x = x.to(dtype=params[0].dtype, device=params[0].device)
    if lengths is not None and not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(np.asarray(lengths))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x) if lengths is None else model(x, lengths=lengths)
    finally:
        model.train(was)
