"""The ``torch.autograd.Function`` of the GPU engine: forward and hand-written backward (BPTT).

The time loops are in :mod:`.loops` (eagerly) or :mod:`.graphs` (a CUDA graph per shape, opt-in);
this module adds what comes after the backward loop -- the input and weight gradients as a few
big GEMMs over all steps -- and fills the taps.
"""

from __future__ import annotations

import torch

from ..taps import StepTaps
from . import graphs, loops, steps
from .plan import Plan


def forward(p: Plan, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save: bool) -> dict:
    """The forward time loop (through a CUDA graph when :func:`graphs.enabled`)."""
    run = graphs.forward if graphs.enabled(x.device) else loops.forward
    return run(p, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save)


def backward(p: Plan, s: dict, x, gout, ghn, gcn) -> dict:
    """The backward time loop (through a CUDA graph when :func:`graphs.enabled`)."""
    run = graphs.backward if graphs.enabled(x.device) else loops.backward
    return run(p, s, x, gout, ghn, gcn)


def _dw_hh(p: Plan, dG: torch.Tensor, hs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """sum_t dG_t^T @ (h_{t-1} * rmask) without a shifted (B, T, H) copy of the states.

    Row ``b*T + t`` of the flat states is h_t of example b, so the flat rows shifted by one are
    h_{t-1} -- except at t = 0, where the shift reads the last state of example b-1 instead of
    h0[b]; two (B, H) products correct those rows.  With a recurrent-dropout mask (a different
    column scaling per example) the masked copy is made.
    """
    B, T, H = p.batch, p.steps, p.hidden
    if p.rmask is not None:
        hp = torch.cat((h0.unsqueeze(1), hs[:, :-1]), 1) * p.rmask.unsqueeze(1)
        return dG.t() @ hp.view(B * T, H)
    flat = hs.view(B * T, H)
    first = dG.view(B, T, -1)[:, 0]
    dw = first.t() @ h0
    dw += dG[1:].t() @ flat[:-1]
    dw -= first[1:].t() @ hs[:-1, T - 1]
    return dw


def param_grads(p: Plan, s: dict, b: dict, x: torch.Tensor, needs: tuple[bool, ...]) -> dict:
    """dx, dW_ih, dW_hh, db_ih, db_hh from the per-step pre-activation gradients (big GEMMs)."""
    B, T = p.batch, p.steps
    dG = b["dG"].view(B * T, -1)
    x2 = x.reshape(B * T, -1).to(p.io)
    db = dG.sum(0) if (needs[3] or needs[4]) else None
    out = steps.of(p.cell).x_grads(p, s, b, dG, x2, needs, db)
    out["dw_hh"] = _dw_hh(p, dG, s["hs"], s["h0"]) if needs[2] else None
    out["db_hh"] = db
    return out


def taps_forward(taps: StepTaps | None, p: Plan, sat: torch.Tensor | None) -> None:
    if taps is None:
        return
    taps.units = p.hidden
    total = sat.sum(1)
    taps.saturated = {name: total[k] for k, name in enumerate(p.cell.gates)}


def taps_backward(taps: StepTaps | None, b: dict) -> None:
    if taps is None:
        return
    taps.grad_h_sq = b["ph"].sum(0)
    taps.grad_c_sq = b["pc"].sum(0) if b.get("pc") is not None else None
    taps.filled_backward = True


SAVED = ("G", "hs", "cs", "hn", "h0", "c0", "wh", "wi")  # what backward reads of the forward buffers


class RecurrentFunction(torch.autograd.Function):
    """One layer direction of any cell: forward and hand-written backward through the step kernels."""

    @staticmethod
    def forward(ctx, p: Plan, taps, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        with torch.autocast(x.device.type, enabled=False):
            s = forward(p, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save=True)
        taps_forward(taps, p, s.get("sat"))
        ctx.plan, ctx.taps, ctx.used = p, taps, False
        ctx.dtypes = [None if t is None else t.dtype for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        names = [k for k in SAVED if k in s]
        ctx.names = names
        ctx.save_for_backward(x, *(s[k] for k in names))
        return (s["out"], *steps.of(p.cell).final_states(p, s))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, ghn, gcn=None):
        if ctx.used:
            raise RuntimeError("engine 'gpu': backward ran twice through the same graph; its buffers are reused "
                               "in place (retain_graph=True is not supported: run the forward again)")
        ctx.used = True
        p = ctx.plan
        x, *saved = ctx.saved_tensors
        s = dict(zip(ctx.names, saved))
        with torch.autocast(x.device.type, enabled=False):
            b = backward(p, s, x, gout, ghn, gcn)
            needs = tuple(ctx.needs_input_grad[i] for i in (2, 5, 6, 7, 8))  # x, w_ih, w_hh, b_ih, b_hh
            g = param_grads(p, s, b, x, needs)
        taps_backward(ctx.taps, b)
        grads = (g.get("dx"), b["dh0"], b.get("dc0"), g.get("dw_ih"), g.get("dw_hh"), g.get("db_ih"),
                 g.get("db_hh"))
        cast = [None if v is None or dt is None else v.to(dt) for v, dt in zip(grads, ctx.dtypes)]
        return (None, None, *cast)
