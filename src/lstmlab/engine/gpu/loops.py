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

from collections.abc import Callable

import torch

from ...cells import saturation_thresholds
from . import steps
from .plan import Plan, kernels
from .steps import empty, put

# Pointer arguments a call may leave out (the kernel then gets a dummy and a constexpr switch off).
OPTIONAL = frozenset(("HR", "RMASK", "LEN", "SAT", "HN", "PH", "PC"))
_KEYS = {"G": "G", "LEN": "lens"}  # buffer key of a pointer argument where it is not its name in lower case


def launcher(fn, p: Plan, bufs: dict, **consts) -> Callable[[int], None]:
    """``fn`` on the call's grid for one step ``t``.  Its pointer arguments (those before ``t``) are
    taken from ``bufs`` by name (``HS`` <- ``bufs["hs"]``), its compile-time switches from ``consts``
    (those it declares): every cell's kernels are launched by this one function."""
    names = fn.arg_names
    ptrs = []
    for name in names[: names.index("t")]:
        key = _KEYS.get(name, name.lower())
        if key not in bufs and name not in OPTIONAL:
            raise KeyError(f"{fn.__name__}: no buffer {key!r} for its argument {name}")
        ptrs.append(bufs.get(key, bufs["dummy"]))
    kw = {k: v for k, v in consts.items() if k in names}
    run = fn[p.grid]
    return lambda t: run(*ptrs, t, **kw)


def fwd_buffers(p: Plan, dev: torch.device, save: bool) -> dict:
    """The buffers the forward loop writes (its inputs are placed by :func:`fwd_fill`)."""
    B, T, H, GH = p.batch, p.steps, p.hidden, p.n_gates * p.hidden
    b = {"G": empty(p, dev, B, T, GH), "rec": empty(p, dev, B, GH), "hs": empty(p, dev, B, T, H),
         "thr": torch.tensor(saturation_thresholds(), device=dev, dtype=p.acc),
         "dummy": torch.zeros(1, device=dev, dtype=p.acc)}
    b["out"] = b["hs"] if p.lens is None else torch.empty_like(b["hs"])
    if p.rmask is not None:
        b["hr"] = empty(p, dev, B, H)
    if p.taps:
        b["sat"] = torch.zeros(p.n_gates, p.grid[1], T, B, device=dev, dtype=torch.float32)
    b.update(steps.of(p.cell).fwd_buffers(p, dev, save))
    return b


def fwd_fill(p: Plan, b: dict, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mode: str = "eager") -> torch.Tensor:
    """Place one call's inputs; the input projection of all steps is one GEMM into ``b["G"]``.
    Returns ``w_ih`` in the compute dtype (backward needs it)."""
    B, T = p.batch, p.steps
    kind = steps.of(p.cell)
    wi = w_ih.to(p.io)
    bias = kind.input_bias(b_ih, b_hh)
    torch.addmm(bias.to(p.io), x.reshape(B * T, -1).to(p.io), wi.t(), out=b["G"].view(B * T, -1))
    put(b, "h0", h0, p.io, mode)
    put(b, "wh", w_hh, p.io, mode)
    put(b, "bhh", b_hh, p.io, mode)
    kind.fill_states(p, b, c0, mode)
    if p.rmask is not None:
        put(b, "rmask", p.rmask, p.io, mode)
    if p.lens is not None:
        put(b, "lens", p.lens, torch.int32, mode)
    return wi


def fwd_loop(p: Plan, b: dict, k, save: bool) -> None:
    """The forward time loop: per step one GEMM and one fused kernel, on ``b`` only."""
    kind = steps.of(p.cell)
    launch = launcher(kind.kernel(k, "fwd"), p, b, B=p.batch, T=p.steps, H=p.hidden, HAS_OUT=p.lens is not None,
                      SAVE=save, RELU=p.relu, **p.flags())
    rec, h0 = b["rec"], b["h0"]
    wh_t, prev = b["wh"].t(), b["hs"].unbind(1)
    for t in range(p.steps):
        if p.rmask is not None:  # the kernel of step t - 1 wrote h_{t-1} * rmask into hr
            if t == 0:
                torch.mul(h0, b["rmask"], out=b["hr"])
            a = b["hr"]
        else:
            a = h0 if t == 0 else prev[t - 1]
        kind.recurrent(b, a, wh_t, rec)
        launch(t)


def forward(p: Plan, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save: bool) -> dict:
    """Run the forward time loop on fresh buffers; returns them (outputs and what backward needs)."""
    b = fwd_buffers(p, x.device, save)
    b["wi"] = fwd_fill(p, b, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    fwd_loop(p, b, kernels(x.device), save)
    return b


def bwd_buffers(p: Plan, dev: torch.device) -> dict:
    """The backward loop's carries and taps partial sums."""
    b = {"dhm": empty(p, dev, p.batch, p.hidden), "dummy": torch.zeros(1, device=dev, dtype=p.acc)}
    if p.taps:
        b["ph"] = torch.empty(p.grid[1], p.steps, p.batch, device=dev, dtype=p.acc)
    b.update(steps.of(p.cell).bwd_buffers(p, dev))
    return b


def bwd_fill(p: Plan, b: dict, gout, ghn, gcn, mode: str = "eager") -> None:
    """Place the incoming gradients (None: zeros) and the call's masks."""
    B, H, dev = p.batch, p.hidden, b["dhm"].device
    b["dhm"].zero_()
    for name, src in steps.of(p.cell).carries(ghn, gcn).items():  # written in place: always tensors of our own
        if mode == "replay":
            put(b, name, src, p.acc, mode)
        else:
            b[name] = torch.zeros(B, H, device=dev, dtype=p.acc) if src is None else src.to(p.acc, copy=True)
    if gout is None and mode != "replay":
        gout = torch.zeros(B, p.steps, H, device=dev, dtype=p.io)
    put(b, "gout", gout, p.io, mode)
    if p.rmask is not None:
        put(b, "rmask", p.rmask, p.io, mode)
    if p.lens is not None:
        put(b, "lens", p.lens, torch.int32, mode)


def bwd_loop(p: Plan, s: dict, b: dict, k) -> None:
    """The backward time loop over the forward buffers ``s`` (overwritten in place) and ``b``."""
    launch = launcher(steps.of(p.cell).kernel(k, "bwd"), p, {**s, **b}, B=p.batch, T=p.steps, H=p.hidden,
                      RELU=p.relu, **p.flags())
    dhm, wh = b["dhm"], s["wh"]
    for t, dg in zip(reversed(range(p.steps)), reversed(s["G"].unbind(1))):
        launch(t)
        torch.mm(dg, wh, out=dhm)


def bwd_result(p: Plan, s: dict, b: dict, private: bool = False) -> dict:
    """The loop's results: dG (and GRU's x-side n gradient), dh0, dc0 and the taps' partial sums.
    ``private``: copy what would otherwise alias buffers that a later call reuses."""
    own = (lambda t: t.clone()) if private else (lambda t: t)
    dh0 = b["dhc"] + (b["dhm"] if p.rmask is None else b["dhm"] * b["rmask"])
    res = {"dG": s["G"], "dh0": dh0, "ph": b.get("ph"), "pc": b.get("pc")}
    res.update(steps.of(p.cell).bwd_results(s, b, own))
    return res


def backward(p: Plan, s: dict, x, gout, ghn, gcn) -> dict:
    """Run the backward time loop over the saved forward buffers ``s`` (overwritten in place)."""
    b = bwd_buffers(p, x.device)
    bwd_fill(p, b, gout, ghn, gcn)
    bwd_loop(p, s, b, kernels(x.device))
    return bwd_result(p, s, b)
