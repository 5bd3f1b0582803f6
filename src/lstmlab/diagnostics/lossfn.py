"""The loss ``diagnose`` differentiates: an lstmlab model's own (``Sequential.loss_terms``), a
callable ``(output, y) -> scalar``, or a loss name applied to a plain torch module's output."""

from __future__ import annotations

import torch
from torch import nn

from .. import losses as L

__all__ = ["LossFn"]


class LossFn:
    """The loss to differentiate.  An lstmlab model computes its own (``Sequential.loss_terms``:
    the compiled or named loss, the logit rule of softmax/sigmoid heads, the step mask); a
    callable ``(output, y) -> scalar`` or a plain torch module with a loss name is handled here."""

    def __init__(self, model: nn.Module, loss) -> None:
        self.model, self.fn, self.name = model, None, None
        if loss is None:
            self.name = getattr(model, "loss_name", None)
            if self.name is None:
                raise ValueError("diagnose: the model is not compiled; call model.compile(loss=...) or pass "
                                 "loss= (a loss name like 'mse' or a callable (output, y) -> scalar)")
        elif isinstance(loss, str):
            self.name = L.canonical(loss)
        elif callable(loss):
            self.fn = loss
        else:
            raise ValueError(f"loss: expected None, a loss name or a callable, got {type(loss).__name__}")
        self.own = self.fn is None and hasattr(model, "loss_terms")

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None,
                 lengths: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
        """One forward pass: (the loss, what :meth:`end` and :meth:`has_time` read)."""
        if self.own:
            terms = self.model.loss_terms(x, y, lengths, loss=self.name)
            return terms.loss, (terms.values,)
        m = self.model
        out = m(x) if lengths is None else m(x, lengths=lengths)
        if self.fn is not None:
            return self.fn(out, y), (out, y)
        y = L.prepare_target(self.name, y, tuple(out.shape))
        mask = None
        if out.dim() == 3 and lengths is not None and out.shape[1] >= int(lengths.max()):
            mask = torch.arange(out.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        return L.compute(self.name, out, y, step_mask=mask), (out, y)

    @staticmethod
    def has_time(seen: tuple) -> bool:
        """Whether the output has a time axis (the loss reads every step)."""
        return seen[0].dim() == (2 if len(seen) == 1 else 3)

    def end(self, seen: tuple, idx: torch.Tensor) -> torch.Tensor | None:
        """Loss of one step per example (``idx`` (B,)), when the output has a time axis."""
        first = seen[0]
        rows = torch.arange(first.shape[0], device=first.device)
        idx = idx.to(first.device)
        if len(seen) == 1:  # the model's per-step loss values
            return first[rows, idx].mean() if first.dim() == 2 else None
        out, y = seen
        if self.fn is not None:
            if not isinstance(y, torch.Tensor) or y.dim() < 2 or y.shape[:2] != out.shape[:2]:
                return None
            return self.fn(out[rows, idx].unsqueeze(1), y[rows, idx].unsqueeze(1))
        el = L.elementwise(self.name, out, y, False)
        if el.dim() != 2:
            return None
        return el[rows, idx].mean()
