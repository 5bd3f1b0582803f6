"""Losses with Keras names.  Each takes the model output, the target and an optional step mask.

When the last layer is a softmax/sigmoid Dense, the model hands its *logits* to the loss
(``from_logits=True``) so cross-entropy is computed stably, as Keras does internally.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .validation import InputError

LOSSES = ("categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
          "mse", "mae", "mean_squared_error", "mean_absolute_error")
_ALIASES = {"mean_squared_error": "mse", "mean_absolute_error": "mae"}
LOGIT_ACTIVATION = {"categorical_crossentropy": "softmax", "sparse_categorical_crossentropy": "softmax",
                    "binary_crossentropy": "sigmoid"}


def canonical(name: str) -> str:
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {name!r}")
    return _ALIASES.get(name, name)


def prepare_target(name: str, y: torch.Tensor, out_shape: tuple[int, ...], arg: str = "y") -> torch.Tensor:
    """Validate ``y`` against the model output shape for loss ``name``; return it ready to use."""
    name = canonical(name)
    if name == "sparse_categorical_crossentropy":
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise InputError(f"{arg}: expected integer class ids for sparse_categorical_crossentropy, "
                                 "got non-integer floats")
        y = y.long()
        if y.dim() == len(out_shape) and y.shape[-1] == 1:
            y = y[..., 0]
        if tuple(y.shape) != tuple(out_shape[:-1]):
            raise InputError(f"{arg}: expected class ids of shape {tuple(out_shape[:-1])}, "
                             f"got shape {tuple(y.shape)}")
        n = out_shape[-1]
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n):
            raise InputError(f"{arg}: expected class ids in [0, {n - 1}], got min {int(y.min())}, "
                             f"max {int(y.max())}")
        return y
    y = y.float() if not y.is_floating_point() else y
    if name in ("mse", "mae", "binary_crossentropy") and y.dim() == len(out_shape) - 1 \
            and out_shape[-1] == 1:
        y = y.unsqueeze(-1)
    if tuple(y.shape) != tuple(out_shape):
        extra = ""
        if name == "categorical_crossentropy" and y.dim() == len(out_shape) - 1:
            extra = " (one-hot labels; use sparse_categorical_crossentropy for integer ids)"
        raise InputError(f"{arg}: expected shape {tuple(out_shape)} to match the model output{extra}, "
                         f"got shape {tuple(y.shape)}")
    if not torch.isfinite(y).all():
        raise InputError(f"{arg}: expected finite targets, got NaN/Inf")
    if name == "binary_crossentropy" and ((y < 0) | (y > 1)).any():
        raise InputError(f"{arg}: expected targets in [0, 1] for binary_crossentropy, "
                         f"got min {float(y.min())}, max {float(y.max())}")
    if name == "categorical_crossentropy" and ((y < 0).any() or not torch.allclose(
            y.sum(-1), torch.ones((), dtype=y.dtype), atol=1e-3)):
        raise InputError(f"{arg}: expected one-hot (or probability) rows summing to 1 for "
                         "categorical_crossentropy")
    return y


def elementwise(name: str, out: torch.Tensor, y: torch.Tensor, from_logits: bool) -> torch.Tensor:
    """Per-sample (and per-step) loss values, shape = output shape without the last axis."""
    name = canonical(name)
    if name == "mse":
        return (out - y.to(out.dtype)).pow(2).mean(-1)
    if name == "mae":
        return (out - y.to(out.dtype)).abs().mean(-1)
    if name == "binary_crossentropy":
        y = y.to(out.dtype)
        if from_logits:
            return F.binary_cross_entropy_with_logits(out, y, reduction="none").mean(-1)
        p = out.clamp(1e-7, 1 - 1e-7)
        return -(y * p.log() + (1 - y) * (1 - p).log()).mean(-1)
    logp = torch.log_softmax(out, -1) if from_logits else out.clamp_min(1e-7).log()
    if name == "sparse_categorical_crossentropy":
        return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return -(y.to(out.dtype) * logp).sum(-1)


def reduce(values: torch.Tensor, step_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over samples (and valid steps only, when a (B, T) mask is given)."""
    if step_mask is None or values.dim() < 2:
        return values.mean()
    m = step_mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1)


def compute(name: str, out: torch.Tensor, y: torch.Tensor, from_logits: bool = False,
            step_mask: torch.Tensor | None = None) -> torch.Tensor:
    return reduce(elementwise(name, out, y, from_logits), step_mask)
