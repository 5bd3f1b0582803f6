"""Weight regularizers that add a penalty to the training loss (Keras semantics)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class L1L2:
    """Penalty ``l1 * sum|w| + l2 * sum w^2`` (Keras ``L1L2``; ``l2`` alone is weight decay)."""

    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        for name in ("l1", "l2"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0 or v != v:
                raise ValueError(f"regularizer {name}: expected a number >= 0, got {v!r}")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        out = w.new_zeros(())
        if self.l1:
            out = out + self.l1 * w.abs().sum()
        if self.l2:
            out = out + self.l2 * w.pow(2).sum()
        return out

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


def l2(factor: float = 0.01) -> L1L2:
    return L1L2(l2=factor)


def l1(factor: float = 0.01) -> L1L2:
    return L1L2(l1=factor)


def get(spec) -> L1L2 | None:
    """Accept None, an L1L2, a float (L2 factor), ``"l2"``, ``"l1"`` or a config dict."""
    if spec is None or isinstance(spec, L1L2):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"regularizer: expected None, a float, 'l1', 'l2' or L1L2, got {spec!r}")
    if isinstance(spec, (int, float)):
        return L1L2(l2=float(spec))
    if spec == "l2":
        return l2()
    if spec == "l1":
        return l1()
    if isinstance(spec, dict) and set(spec) <= {"l1", "l2"}:
        return L1L2(**spec)
    raise ValueError(f"regularizer: expected None, a float, 'l1', 'l2' or L1L2, got {spec!r}")
