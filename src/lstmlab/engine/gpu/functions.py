"""Time loops around the Triton step kernels, and the ``torch.autograd.Function`` that joins them.

Forward, per step: one GEMM ``h_{t-1} @ W_hh^T`` (``torch.mm`` into a preallocated buffer, so
cuBLAS on CUDA) and one fused pointwise kernel.  Backward, per step: one fused pointwise kernel and
one GEMM ``dG_t @ W_hh``.  The input projection of all steps is one GEMM before the loop; the
weight and input gradients are a few big GEMMs after it.  The per-step buffers are written in
place: the input projections become the activated gates (what backward reads) and then the
pre-activation gradients, so a call keeps about what cuDNN keeps (gates, states, output).

Precision: the GEMMs and the saved gates / hidden states use the input dtype, or the autocast
dtype (float16 / bfloat16) when autocast is on for the input's device; the LSTM cell state, the
gradient carries and the taps' sums are float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
import triton.language as tl

from ...cells import GATES, saturation_thresholds
from ..taps import StepTaps

_KERNELS: dict[str, object] = {}


def kernels(device: torch.device):
    """The kernel module for ``device``: compiled for CUDA, the Triton interpreter otherwise.

    The interpreted copy is a second import of ``kernels.py`` made while ``TRITON_INTERPRET=1``
    is set (Triton reads it when a kernel is decorated); the variable is restored right after,
    so nothing else in the process sees it.
    """
    key = "cuda" if device.type == "cuda" else "interpreted"
    if key not in _KERNELS:
        if key == "cuda":
            from . import kernels as mod
        else:
            spec = importlib.util.spec_from_file_location(
                "lstmlab.engine.gpu._kernels_interpreted", Path(__file__).with_name("kernels.py"))
            mod = importlib.util.module_from_spec(spec)
            old = os.environ.get("TRITON_INTERPRET")
            os.environ["TRITON_INTERPRET"] = "1"
            try:
                spec.loader.exec_module(mod)
            finally:
                if old is None:
                    os.environ.pop("TRITON_INTERPRET", None)
                else:
                    os.environ["TRITON_INTERPRET"] = old
        _KERNELS[key] = mod
    return _KERNELS[key]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype in force for ``device``'s type, or None when autocast is off there."""
    try:
        on = torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        on = torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()
    if not on:
        return None
    try:
        return torch.get_autocast_dtype(device.type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_gpu_dtype() if device.type == "cuda" else torch.get_autocast_cpu_dtype()


@dataclass
class Plan:
    """Shapes, dtypes, tiles and kernel switches of one call."""

    cell: str
    batch: int
    steps: int
    hidden: int
    io: torch.dtype  # GEMMs, gates, hidden states
    acc: torch.dtype  # cell state, carries, taps sums
    lens: torch.Tensor | None  # (B,) int32 on the device, None when every sequence is full
    rmask: torch.Tensor | None  # (B, H) in io dtype
    relu: bool
    taps: bool
    block_b: int
    block_h: int

    @property
    def grid(self) -> tuple[int, int]:
        return triton.cdiv(self.batch, self.block_b), triton.cdiv(self.hidden, self.block_h)

    @property
    def n_gates(self) -> int:
        return len(GATES[self.cell])

    def flags(self) -> dict:
        acc = tl.float64 if self.acc == torch.float64 else tl.float32
        return dict(HAS_LEN=self.lens is not None, HAS_RMASK=self.rmask is not None, TAPS=self.taps, ACC=acc,
                    BLOCK_B=self.block_b, BLOCK_H=self.block_h)


def make_plan(cell: str, x: torch.Tensor, hidden: int, lengths: torch.Tensor | None, rmask: torch.Tensor | None,
              relu: bool, taps: bool) -> Plan:
    batch, steps, _ = x.shape
    io = autocast_dtype(x.device) or x.dtype
    acc = torch.float64 if x.dtype == torch.float64 and io == torch.float64 else torch.float32
    lens = None
    if lengths is not None and not bool((lengths == steps).all()):
        lens = lengths.to(device=x.device, dtype=torch.int32)
    block_h = min(triton.next_power_of_2(hidden), 128)
    block_b = min(triton.next_power_of_2(batch), max(1, 1024 // block_h))
    rm = None if rmask is None else rmask.to(io).contiguous()
    return Plan(cell, batch, steps, hidden, io, acc, lens, rm, relu, taps, block_b, block_h)


def _dummy(p: Plan, device: torch.device) -> torch.Tensor:
    return torch.zeros(1, device=device, dtype=p.acc)


def _gemm_in(p: Plan, h0: torch.Tensor, hs: torch.Tensor, hr: torch.Tensor | None) -> list[torch.Tensor]:
    """The recurrent GEMM's left operand of each step: h_{t-1} (times the recurrent-dropout mask)."""
    first = h0 if p.rmask is None else h0 * p.rmask
    later = [hr] * (p.steps - 1) if hr is not None else list(hs.unbind(1)[:-1])
    return [first, *later]


def forward(p: Plan, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save: bool) -> dict:
    """Run the forward time loop.  Returns the outputs and everything backward needs."""
    k, dev, B, T, H = kernels(x.device), x.device, p.batch, p.steps, p.hidden
    wi, wh = w_ih.to(p.io), w_hh.to(p.io)
    bias = b_ih if p.cell == "gru" else b_ih + b_hh
    G = torch.addmm(bias.to(p.io), x.reshape(B * T, -1).to(p.io), wi.t()).view(B, T, p.n_gates * H)
    rec = torch.empty(B, p.n_gates * H, device=dev, dtype=p.io)
    hs = torch.empty(B, T, H, device=dev, dtype=p.io)
    out = hs if p.lens is None else torch.empty_like(hs)
    hr = torch.empty(B, H, device=dev, dtype=p.io) if p.rmask is not None else None
    dummy = _dummy(p, dev)
    sat = torch.zeros(p.n_gates, p.grid[1], T, B, device=dev, dtype=torch.float32) if p.taps else dummy
    thr = torch.tensor(saturation_thresholds(), device=dev, dtype=p.acc)
    h0 = h0.to(p.io).contiguous()
    common = dict(B=B, T=T, H=H, HAS_OUT=p.lens is not None, **p.flags())
    ins = (out, hr if hr is not None else dummy, p.rmask if p.rmask is not None else dummy,
           p.lens if p.lens is not None else dummy, sat, thr)
    res = {"G": G, "hs": hs, "out": out, "h0": h0}
    if p.cell == "lstm":
        res["cs"] = cs = torch.empty(B, T, H, device=dev, dtype=p.acc)
        res["c0"] = c0 = c0.to(p.acc).contiguous()
        launch = lambda t: k.lstm_fwd[p.grid](G, rec, h0, c0, hs, cs, *ins, t, SAVE=save, **common)
    elif p.cell == "gru":
        res["hn"] = hn = torch.empty(B, T, H, device=dev, dtype=p.io) if save else dummy
        launch = lambda t: k.gru_fwd[p.grid](G, rec, h0, hs, out, hn, *ins[1:], t, SAVE=save, **common)
    else:
        launch = lambda t: k.rnn_fwd[p.grid](G, rec, h0, hs, *ins, t, RELU=p.relu, **common)
    b_hh_io, wh_t = b_hh.to(p.io), wh.t()
    for t, a in enumerate(_gemm_in(p, h0, hs, hr)):
        if p.cell == "gru":
            torch.addmm(b_hh_io, a, wh_t, out=rec)
        else:
            torch.mm(a, wh_t, out=rec)
        launch(t)
    res.update(wi=wi, wh=wh, sat=sat if p.taps else None)
    return res


def backward(p: Plan, s: dict, x, gout, ghn, gcn) -> dict:
    """Run the backward time loop over the saved forward buffers ``s`` (overwritten in place)."""
    k, dev, B, T, H = kernels(x.device), x.device, p.batch, p.steps, p.hidden
    G, hs = s["G"], s["hs"]
    gout = gout.contiguous() if gout is not None else torch.zeros_like(hs)
    dhm = torch.zeros(B, H, device=dev, dtype=p.io)
    dhc = ghn.to(p.acc).clone() if ghn is not None else torch.zeros(B, H, device=dev, dtype=p.acc)
    dummy = _dummy(p, dev)
    ph = torch.empty(p.grid[1], T, B, device=dev, dtype=p.acc) if p.taps else dummy
    tail = (p.rmask if p.rmask is not None else dummy, p.lens if p.lens is not None else dummy, ph)
    flags = dict(B=B, T=T, H=H, **p.flags())
    res = {}
    if p.cell == "lstm":
        dc = gcn.to(p.acc).clone() if gcn is not None else torch.zeros(B, H, device=dev, dtype=p.acc)
        pc = torch.empty_like(ph) if p.taps else dummy
        launch = lambda t: k.lstm_bwd[p.grid](G, s["cs"], s["c0"], gout, dhm, dhc, dc, *tail, pc, t, **flags)
        res.update(dc0=dc, pc=pc if p.taps else None)
        dG = G
    elif p.cell == "gru":
        launch = lambda t: k.gru_bwd[p.grid](G, s["hn"], hs, s["h0"], gout, dhm, dhc, *tail, t, **flags)
        dG = G
    else:
        dG = torch.empty_like(hs)
        launch = lambda t: k.rnn_bwd[p.grid](dG, hs, gout, dhm, dhc, *tail, t, RELU=p.relu, **flags)
    wh = s["wh"]
    for t, dg in zip(reversed(range(T)), reversed(dG.unbind(1))):
        launch(t)
        torch.mm(dg, wh, out=dhm)
    res.update(dG=dG, dh0=dhc + (dhm if p.rmask is None else dhm * p.rmask), ph=ph if p.taps else None)
    return res


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
    B, T, H = p.batch, p.steps, p.hidden
    dG = b["dG"].view(B * T, -1)
    x2 = x.reshape(B * T, -1).to(p.io)
    out = {}
    if p.cell == "gru":  # x-side gradient of n is not the h-side one: it sits in s["hn"]
        rz, dan = dG[:, : 2 * H], s["hn"].view(B * T, H)
        if needs[0]:
            wi = s["wi"]
            out["dx"] = torch.addmm(dan @ wi[2 * H:], rz, wi[: 2 * H]).view(B, T, -1)
        out["dw_ih"] = torch.cat((rz.t() @ x2, dan.t() @ x2)) if needs[1] else None
        out["db_ih"] = torch.cat((rz.sum(0), dan.sum(0))) if needs[3] else None
        dgx = None
    else:
        dgx = dG
        out["dx"] = (dG @ s["wi"]).view(B, T, -1) if needs[0] else None
        out["dw_ih"] = dG.t() @ x2 if needs[1] else None
    if needs[2]:
        out["dw_hh"] = _dw_hh(p, dG, s["hs"], s["h0"])
    db = dG.sum(0) if (needs[3] or needs[4]) else None
    out["db_hh"] = db
    if dgx is not None:  # LSTM / RNN: both biases enter the same sum; separate tensors for two .grad
        out["db_ih"] = None if db is None else db.clone()
    return out


def taps_forward(taps: StepTaps | None, p: Plan, sat: torch.Tensor | None) -> None:
    if taps is None:
        return
    taps.units = p.hidden
    total = sat.sum(1)
    taps.saturated = {name: total[k] for k, name in enumerate(GATES[p.cell])}


def taps_backward(taps: StepTaps | None, b: dict) -> None:
    if taps is None:
        return
    taps.grad_h_sq = b["ph"].sum(0)
    taps.grad_c_sq = b["pc"].sum(0) if b.get("pc") is not None else None
    taps.filled_backward = True


class RecurrentFunction(torch.autograd.Function):
    """One layer direction of any cell: forward and hand-written backward through the step kernels."""

    @staticmethod
    def forward(ctx, p: Plan, taps, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        with torch.autocast(x.device.type, enabled=False):
            s = forward(p, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save=True)
        taps_forward(taps, p, s.pop("sat"))
        ctx.plan, ctx.taps, ctx.used = p, taps, False
        ctx.dtypes = [None if t is None else t.dtype for t in (x, h0, c0, w_ih, w_hh, b_ih, b_hh)]
        names = [k for k in s if k != "out"]
        ctx.names = names
        ctx.save_for_backward(x, *(s[k] for k in names))
        h_n = s["hs"][:, -1].clone()
        if p.cell == "lstm":
            return s["out"], h_n, s["cs"][:, -1].to(p.io, copy=True)
        return s["out"], h_n

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
