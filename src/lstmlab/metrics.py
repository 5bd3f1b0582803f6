"""Metrics accumulated over an epoch (sums and counts, so batch sizes weigh correctly)."""

from __future__ import annotations

import math

import torch

METRICS = ("accuracy", "acc", "mae", "mse", "rmse")


def higher_is_better(name: str) -> bool:
    """Whether a larger value of the logged quantity ``name`` is better (``accuracy``,
    ``val_accuracy``, ``r2``, ...) rather than worse (losses and errors).  The one rule behind
    ``mode="auto"`` of the callbacks and the checkpoint of ``lstmlab train``."""
    return "acc" in name or name.endswith("r2")


def mode(monitor: str, mode: str = "auto") -> str:
    """``"min"`` or ``"max"``: ``mode`` checked, ``"auto"`` resolved by :func:`higher_is_better`."""
    if mode == "auto":
        return "max" if higher_is_better(monitor) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    return mode


def improved(mode: str, value: float, best: float, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    return value < best - min_delta if mode == "min" else value > best + min_delta


def check(names) -> list[str]:
    names = [names] if isinstance(names, str) else list(names or [])
    for n in names:
        if n not in METRICS:
            raise ValueError(f"metrics: expected names from {METRICS}, got {n!r}")
    return ["accuracy" if n == "acc" else n for n in names]


def batch_sums(name: str, loss_name: str, out: torch.Tensor, y: torch.Tensor,
               step_mask: torch.Tensor | None) -> tuple[float, float]:
    """(sum, count) of metric ``name`` over a batch; ``out`` are probabilities or values."""
    with torch.no_grad():
        if name == "accuracy":
            if loss_name == "binary_crossentropy" or out.shape[-1] == 1:
                correct = ((out > 0.5).to(y.dtype) == y).all(-1).double()
            else:
                target = y if y.dtype == torch.long and y.dim() == out.dim() - 1 else y.argmax(-1)
                correct = (out.argmax(-1) == target).double()
            vals = correct
        else:
            diff = out - y.to(out.dtype)
            vals = (diff.abs() if name == "mae" else diff.pow(2)).mean(-1).double()
        if step_mask is not None and vals.dim() >= 2:
            m = step_mask.to(vals.dtype)
            return float((vals * m).sum()), float(m.sum())
        return float(vals.sum()), float(vals.numel())


def finish(name: str, total: float, count: float) -> float:
    v = total / max(count, 1.0)
    return math.sqrt(v) if name == "rmse" else v
