"""CUDA graphs of the time loops, one per shape: a whole direction's per-step launches in one replay.

Opt-in (``LSTMLAB_GPU_GRAPHS=1``), CUDA tensors only.  The first call of a shape builds buffers that
the graph owns, runs the loop once on a side stream (this compiles the Triton kernels), then
captures it.  Every call copies its inputs into those buffers, replays, and copies out what must
outlive the next call of the same shape (the forward's saved gates and states; backward's results
are used at once).  The copies are a few memory passes over the saved tensors, against hundreds of
kernel launches saved for long sequences.  At most :data:`MAX_GRAPHS` shapes are kept (least
recently used first out).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

import torch

from . import loops
from .plan import Plan, kernels

MAX_GRAPHS = 8
_CACHE: OrderedDict = OrderedDict()
# forward buffers that are saved for backward or returned: copied out of the graph's buffers
FWD_OUT = ("G", "hs", "out", "cs", "hn", "sat", "h0", "c0", "wh")
# forward buffers the backward loop reads: copied into the backward graph's buffers
BWD_IN = ("G", "hs", "cs", "c0", "hn", "h0", "wh")


def enabled(device: torch.device) -> bool:
    """Whether calls on ``device`` go through CUDA graphs."""
    return device.type == "cuda" and os.environ.get("LSTMLAB_GPU_GRAPHS", "0") == "1"


def _key(kind: str, p: Plan, device: torch.device, save: bool = True) -> tuple:
    return (kind, p.cell.name, p.batch, p.steps, p.hidden, p.io, p.acc, p.lens is not None, p.rmask is not None, p.relu,
            p.taps, save, device.index)


def _entry(key: tuple, build: Callable[[], tuple]) -> tuple:
    entry = _CACHE.pop(key, None)
    if entry is None:
        entry = build()
        while len(_CACHE) >= MAX_GRAPHS:
            _CACHE.popitem(last=False)
    _CACHE[key] = entry
    return entry


def _capture(run: Callable[[], None]) -> torch.cuda.CUDAGraph:
    """Run once on a side stream (compiles the kernels, warms cuBLAS), then capture ``run``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        run()
    return graph


def forward(p: Plan, x, h0, c0, w_ih, w_hh, b_ih, b_hh, save: bool) -> dict:
    """:func:`loops.forward` through a CUDA graph of the time loop."""
    k, dev = kernels(x.device), x.device

    def build() -> tuple:
        b = loops.fwd_buffers(p, dev, save)
        loops.fwd_fill(p, b, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mode="build")
        return b, _capture(lambda: loops.fwd_loop(p, b, k, save))

    b, graph = _entry(_key("fwd", p, dev, save), build)
    wi = loops.fwd_fill(p, b, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mode="replay")
    graph.replay()
    res = {name: b[name].clone() for name in FWD_OUT if name in b}
    if p.lens is None:
        res["out"] = res["hs"]
    res["wi"] = wi
    return res


def backward(p: Plan, s: dict, x, gout, ghn, gcn) -> dict:
    """:func:`loops.backward` through a CUDA graph of the time loop.  The returned ``dG`` (and
    ``dan``) live in the graph's buffers: use them before the next call of the same shape."""
    k, dev = kernels(x.device), x.device

    def build() -> tuple:
        st = {name: s[name].clone() for name in BWD_IN if name in s}
        b = loops.bwd_buffers(p, dev)
        loops.bwd_fill(p, b, gout, ghn, gcn, mode="build")
        return st, b, _capture(lambda: loops.bwd_loop(p, st, b, k))

    st, b, graph = _entry(_key("bwd", p, dev), build)
    for name, buf in st.items():
        buf.copy_(s[name])
    loops.bwd_fill(p, b, gout, ghn, gcn, mode="replay")
    graph.replay()
    return loops.bwd_result(p, st, b, private=True)
