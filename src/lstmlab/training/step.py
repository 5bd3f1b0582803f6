"""One optimisation step, written once: forward and loss, backward, the callbacks' look at the
gradients, clipping, the optimizer step; and the truncated-BPTT variant of a step.

Order inside a step (what callbacks can rely on): ``zero_grad`` -> ``(loss + regularization)
.backward()`` -> every callback's ``on_backward_end(step, logs)`` (it may read the gradients and
taps, or veto the update with ``model.skip_step = True``) -> clipping (``model.clip_gradients``)
-> ``optimizer.step()`` -> ``model.global_step += 1`` (a vetoed step counts too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..callbacks import Callback
from ..validation import InputError

__all__ = ["StepResult", "backward_and_step", "train_step", "full_step", "tbptt_step"]


class StepResult(NamedTuple):
    """What one step gives the loop: the loss (a float), the output the metrics read
    (probabilities for softmax/sigmoid heads), the prepared target and the step mask."""

    loss: float
    output: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor | None


def backward_and_step(model, loss: torch.Tensor, callbacks: Sequence[Callback]) -> None:
    """Backward through ``loss`` (plus the weight regularization), let the callbacks look, clip, step."""
    model.optimizer.zero_grad(set_to_none=True)
    total = loss
    reg = model.regularization_loss()
    if reg is not None:
        total = total + reg
    total.backward()
    model.skip_step = False
    logs = {"loss": float(loss.detach())}
    for cb in callbacks:
        cb.on_backward_end(model.global_step, logs)
    if not model.skip_step:
        model.last_grad_norm = model.clip_gradients()
        model.optimizer.step()
    model.global_step += 1


def full_step(model, xb: torch.Tensor, yb: torch.Tensor, lb: torch.Tensor | None,
              callbacks: Sequence[Callback]) -> StepResult:
    """One step through the whole sequence (``yb`` already prepared for the loss)."""
    terms = model.loss_terms(xb, yb, lb, prepared=True)
    backward_and_step(model, terms.loss, callbacks)
    return StepResult(float(terms.loss.detach()), terms.output, terms.target, terms.mask)


def tbptt_step(model, xb: torch.Tensor, yb: torch.Tensor, lb: torch.Tensor | None, k: int,
               callbacks: Sequence[Callback]) -> StepResult:
    """Truncated BPTT over one batch: chunks of ``k`` steps, states carried but detached.

    A per-step target (``return_sequences``) gives one update per chunk; a target for the whole
    sequence gives one update on the last chunk (the earlier chunks only carry the states)."""
    if lb is not None:
        raise InputError("tbptt: variable-length sequences (lengths/mask) are not supported with "
                         "truncated BPTT; pad to equal length or leave tbptt unset")
    rec = model.recurrent_layers()
    saved = [(r.stateful, r._states) for r in rec]
    per_step = yb.dim() >= 2 and yb.shape[1] == xb.shape[1] and model.layers[-1] is not None \
        and any(getattr(r, "return_sequences", False) for r in rec[-1:])
    try:
        for r in rec:
            r.stateful, r._states = True, None
        steps = xb.shape[1]
        buf, last_out, loss_sum, weight = None, None, 0.0, 0
        for start in range(0, steps, k):
            xc = xb[:, start:start + k]
            if per_step:
                terms = model.loss_terms(xc, yb[:, start:start + k], None, prepared=True)
                backward_and_step(model, terms.loss, callbacks)
                out = terms.output
                if buf is None:  # one buffer for the whole sequence: no growth from concatenation
                    buf = out.new_empty((out.shape[0], steps) + tuple(out.shape[2:]))
                buf[:, start:start + xc.shape[1]] = out.detach()
                loss_sum += float(terms.loss.detach()) * xc.shape[1]
                weight += xc.shape[1]
            elif start + k >= steps:
                terms = model.loss_terms(xc, yb, None, prepared=True)
                backward_and_step(model, terms.loss, callbacks)
                last_out = terms.output.detach()
                loss_sum, weight = float(terms.loss.detach()), 1
            else:
                with torch.no_grad():
                    model(xc)
        return StepResult(loss_sum / weight, buf if per_step else last_out, yb, None)
    finally:
        for r, (st, states) in zip(rec, saved):
            r.stateful, r._states = st, states


def train_step(model, xb: torch.Tensor, yb: torch.Tensor, lb: torch.Tensor | None,
               callbacks: Sequence[Callback], tbptt: int | None = None) -> StepResult:
    """One training step on a batch: :func:`full_step`, or :func:`tbptt_step` when ``tbptt`` is set."""
    if tbptt is None:
        return full_step(model, xb, yb, lb, callbacks)
    return tbptt_step(model, xb, yb, lb, tbptt, callbacks)
