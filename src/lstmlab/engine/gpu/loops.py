"""The forward and backward time loops around the Triton step kernels.

Forward, per step: one GEMM ``h_{t-1} @ W_hh^T`` (``torch.mm`` into a preallocated buffer, so
cuBLAS on CUDA) and one fused pointwise kernel.  Backward, per step: one fused pointwise kernel and
one GEMM ``dG_t @ W_hh``.  The input projection of all steps is one GEMM before the loop.  The
per-step buffers are written in place: the input projections become the activated gates (what
backward reads) and then the pre-activation gradients, so a call keeps about what cuDNN keeps
(gates, states, output).

Each direction is split into buffers / fill / loop so that :mod:`.graphs` can capture the loop
once per shape as a CUDA graph and replay it on the same buffers.  A loop reads and writes only
its buffer dicts and allocates nothing.  ``mode`` of a fill: ``"eager"`` uses the call's tensors
directly, ``"build"`` takes private copies (buffers that a graph owns), ``"replay"`` copies the
call's values into those buffers.
"""

from __future__ import annotations

import torch

from ...cells import saturation_thresholds
from .plan import Plan, kernels


def _empty(p: Plan, dev: torch.device, *shape: int, acc: bool = False) -> torch.Tensor:
    return torch.empty(*shape, device=dev, dtype=p.acc if acc else p.io)


def _put(b: dict, name: str, src: torch.Tensor | None, dtype: torch.dtype, mode: str) -> None:
    """Place one input into the buffers according to ``mode`` (see the module docstring)."""
    if mode == "replay":
        if src is None:
            b[name].zero_()
        else:
            b[name].copy_(src)
    elif src is not None:
        b[name] = src.to(dtype, copy=mode == "build").contiguous()


def fwd_buffers(p: Plan, dev: torch.device, save: bool) -> dict:
    """The buffers the forward loop writes (its inputs are placed by :func:`fwd_fill`)."""
    B, T, H, GH = p.batch, p.steps, p.hidden, p.n_gates * p.hidden
    b = {"G": _empty(p, dev, B, T, GH), "rec": _empty(p, dev, B, GH), "hs": _empty(p, dev, B, T, H),
         "thr": torch.tensor(saturation_thresholds(), device=dev, dtype=p.acc),
         "dummy": torch.zeros(1, device=dev, dtype=p.acc)}
    b["out"] = b["hs"] if p.lens is None else torch.empty_like(b["hs"])
    if p.rmask is not None:
        b["hr"] = _empty(p, dev, B, H)
    if p.taps:
        b["sat"] = torch.zeros(p.n_gates, p.grid[1], T, B, device=dev, dtype=torch.float32)
    if p.cell == "lstm":
        b["cs"] = _empty(p, dev, B, T, H, acc=True)
    if p.cell == "gru" and save:
        b["hn"] = _empty(p, dev, B, T, H)
    return b


def fwd_fill(p: Plan, b: dict, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mode: str = "eager") -> torch.Tensor:
    """Place one call's inputs; the input projection of all steps is one GEMM into ``b["G"]``.
    Returns ``w_ih`` in the compute dtype (backward needs it)."""
    B, T = p.batch, p.steps
    wi = w_ih.to(p.io)
    bias = b_ih if p.cell == "gru" else b_ih + b_hh
    torch.addmm(bias.to(p.io), x.reshape(B * T, -1).to(p.io), wi.t(), out=b["G"].view(B * T, -1))
    _put(b, "h0", h0, p.io, mode)
    _put(b, "wh", w_hh, p.io, mode)
    _put(b, "bhh", b_hh, p.io, mode)
    if p.cell == "lstm":
        _put(b, "c0", c0, p.acc, mode)
    if p.rmask is not None:
        _put(b, "rmask", p.rmask, p.io, mode)
    if p.lens is not None:
        _put(b, "lens", p.lens, torch.int32, mode)
    return wi


def fwd_loop(p: Plan, b: dict, k, save: bool) -> None:
    """The forward time loop: per step one GEMM and one fused kernel, on ``b`` only."""
    opt = lambda name: b.get(name, b["dummy"])
    G, rec, hs, h0 = b["G"], b["rec"], b["hs"], b["h0"]
    common = dict(B=p.batch, T=p.steps, H=p.hidden, HAS_OUT=p.lens is not None, **p.flags())
    ins = (b["out"], opt("hr"), opt("rmask"), opt("lens"), opt("sat"), b["thr"])
    if p.cell == "lstm":
        launch = lambda t: k.lstm_fwd[p.grid](G, rec, h0, b["c0"], hs, b["cs"], *ins, t, SAVE=save, **common)
    elif p.cell == "gru":
        launch = lambda t: k.gru_fwd[p.grid](G, rec, h0, hs, b["out"], opt("hn"), *ins[1:], t, SAVE=save, **common)
    else:
        launch = lambda t: k.rnn_fwd[p.grid](G, rec, h0, hs, *ins, t, RELU=p.relu, **common)
    wh_t, prev = b["wh"].t(), hs.unbind(1)
    for t in range(p.steps):
        if p.rmask is not None:  # the kernel of step t - 1 wrote h_{t-1} * rmask into hr
            if t == 0:
                torch.mul(h0, b["rmask"], out=b["hr"])
            a = b["hr"]
        else:
            a = h0 if t == 0 else prev[t - 1]
        if p.cell == "gru":
            torch.addmm(b["bhh"], a, wh_t, out=rec)
        else:
            torch.mm(a, wh_t, out=rec)
        launch(t)


def forward(p: Plan, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save: bool) -> dict:
    """Run the forward time loop on fresh buffers; returns them (outputs and what backward needs)."""
    b = fwd_buffers(p, x.device, save)
    b["wi"] = fwd_fill(p, b, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    fwd_loop(p, b, kernels(x.device), save)
    return b


def bwd_buffers(p: Plan, dev: torch.device) -> dict:
    """The backward loop's carries, taps partial sums and (SimpleRNN) gradient buffer."""
    B, T, H = p.batch, p.steps, p.hidden
    b = {"dhm": _empty(p, dev, B, H), "dummy": torch.zeros(1, device=dev, dtype=p.acc)}
    if p.taps:
        b["ph"] = torch.empty(p.grid[1], T, B, device=dev, dtype=p.acc)
        if p.cell == "lstm":
            b["pc"] = torch.empty_like(b["ph"])
    if p.cell == "rnn":
        b["dG"] = _empty(p, dev, B, T, H)
    return b


def bwd_fill(p: Plan, b: dict, gout, ghn, gcn, mode: str = "eager") -> None:
    """Place the incoming gradients (None: zeros) and the call's masks."""
    B, H, dev = p.batch, p.hidden, b["dhm"].device
    b["dhm"].zero_()
    carries = {"dhc": ghn, "dc": gcn} if p.cell == "lstm" else {"dhc": ghn}
    for name, src in carries.items():  # written in place by the loop: always tensors of our own
        if mode == "replay":
            _put(b, name, src, p.acc, mode)
        else:
            b[name] = torch.zeros(B, H, device=dev, dtype=p.acc) if src is None else src.to(p.acc, copy=True)
    if gout is None and mode != "replay":
        gout = torch.zeros(B, p.steps, H, device=dev, dtype=p.io)
    _put(b, "gout", gout, p.io, mode)
    if p.rmask is not None:
        _put(b, "rmask", p.rmask, p.io, mode)
    if p.lens is not None:
        _put(b, "lens", p.lens, torch.int32, mode)


def bwd_loop(p: Plan, s: dict, b: dict, k) -> None:
    """The backward time loop over the forward buffers ``s`` (overwritten in place) and ``b``."""
    opt = lambda name: b.get(name, b["dummy"])
    G, hs = s["G"], s["hs"]
    tail = (opt("rmask"), opt("lens"), opt("ph"))
    flags = dict(B=p.batch, T=p.steps, H=p.hidden, **p.flags())
    gout, dhm, dhc = b["gout"], b["dhm"], b["dhc"]
    if p.cell == "lstm":
        launch = lambda t: k.lstm_bwd[p.grid](G, s["cs"], s["c0"], gout, dhm, dhc, b["dc"], *tail, opt("pc"), t,
                                              **flags)
    elif p.cell == "gru":
        launch = lambda t: k.gru_bwd[p.grid](G, s["hn"], hs, s["h0"], gout, dhm, dhc, *tail, t, **flags)
    else:
        launch = lambda t: k.rnn_bwd[p.grid](b["dG"], hs, gout, dhm, dhc, *tail, t, RELU=p.relu, **flags)
    dG = b.get("dG", G)
    wh = s["wh"]
    for t, dg in zip(reversed(range(p.steps)), reversed(dG.unbind(1))):
        launch(t)
        torch.mm(dg, wh, out=dhm)


def bwd_result(p: Plan, s: dict, b: dict, private: bool = False) -> dict:
    """The loop's results: dG (and GRU's x-side n gradient), dh0, dc0 and the taps' partial sums.
    ``private``: copy what would otherwise alias buffers that a later call reuses."""
    own = (lambda t: t.clone()) if private else (lambda t: t)
    dh0 = b["dhc"] + (b["dhm"] if p.rmask is None else b["dhm"] * b["rmask"])
    res = {"dG": b.get("dG", s["G"]), "dh0": dh0, "ph": b.get("ph"), "pc": b.get("pc")}
    if p.cell == "lstm":
        res["dc0"] = own(b["dc"])
    if p.cell == "gru":
        res["dan"] = s["hn"]
    return res


def backward(p: Plan, s: dict, x, gout, ghn, gcn) -> dict:
    """Run the backward time loop over the saved forward buffers ``s`` (overwritten in place)."""
    b = bwd_buffers(p, x.device)
    bwd_fill(p, b, gout, ghn, gcn)
    bwd_loop(p, s, b, kernels(x.device))
    return bwd_result(p, s, b)
