"""The compiled layer-normalised LSTM (engine/lnlstm.py) against the loop engine's autograd unroll.

Oracles: the loop engine (plain torch ops differentiated by torch.autograd, taps from tensor
hooks) for outputs, states, every gradient (LN weights and biases included) and the taps, with
lengths, recurrent dropout and both directions; finite differences (gradcheck) on a tiny fp64 case.
"""

from __future__ import annotations

import pytest
import torch

import lstmlab.layers as ll
from lstmlab import engine
from lstmlab.engine import lnlstm, loop
from lstmlab.engine.taps import StepTaps

pytestmark = pytest.mark.skipif(not lnlstm.available(), reason="the LN-LSTM extension cannot be built here")


def _problem(B=3, T=6, I=4, H=5,  # noqa: E741 - the usual (B, T, I, H) names
             dtype=torch.float64, seed=0):
    """Random inputs, weights and LayerNorm modules with non-trivial affine parameters."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*s, scale=1.0):
        return ((torch.rand(*s, generator=g, dtype=dtype) - 0.5) * 2 * scale).requires_grad_()

    x, h0, c0 = rnd(B, T, I), rnd(B, H, scale=0.5), rnd(B, H, scale=0.5)
    weights = (rnd(4 * H, I), rnd(4 * H, H), rnd(4 * H, scale=0.3), rnd(4 * H, scale=0.3))
    lns = (torch.nn.LayerNorm(4 * H), torch.nn.LayerNorm(4 * H), torch.nn.LayerNorm(H))
    with torch.no_grad():
        for m in lns:
            m.to(dtype)
            m.weight.copy_(1 + 0.5 * (torch.rand(m.weight.shape, generator=g, dtype=dtype) - 0.5))
            m.bias.copy_(0.2 * (torch.rand(m.bias.shape, generator=g, dtype=dtype) - 0.5))
    return x, h0, c0, weights, lns


def _run(name, x, h0, c0, weights, lns, lengths=None, rmask=None, reverse=False, taps=None):
    """(out, h_n, c_n, gradients of x, states, weights and LN parameters) of a fixed random loss."""
    out, h_n, c_n = engine.run("lstm", x, h0, c0, weights, lengths=lengths, reverse=reverse, rmask=rmask,
                               engine=name, taps=taps, layer_norm=lns)
    g = torch.Generator().manual_seed(1)
    loss = sum((v * torch.randn(v.shape, generator=g, dtype=v.dtype)).sum() for v in (out, h_n, c_n))
    params = [x, h0, c0, *weights] + [p for m in lns for p in (m.weight, m.bias)]
    grads = torch.autograd.grad(loss, params)
    if taps is not None:
        taps.finalize()
    return (out, h_n, c_n, *grads)


CASES = {
    "plain": {},
    "lengths": {"lengths": torch.tensor([6, 2, 4])},
    "rmask": {"rmask": True},
    "lengths+rmask+reverse": {"lengths": torch.tensor([3, 6, 1]), "rmask": True, "reverse": True},
    "reverse": {"reverse": True},
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_loop_engine_fp64_with_taps(case):
    """Outputs, states, all 15 gradients and the taps equal the loop engine's to 1e-10."""
    x, h0, c0, weights, lns = _problem()
    kw = dict(CASES[case])
    if kw.pop("rmask", False):
        kw["rmask"] = (torch.rand(3, 5, generator=torch.Generator().manual_seed(2), dtype=x.dtype) > 0.3) / 0.7
    assert engine.resolve("auto", cell="lstm", taps=True, rmask=False, layer_norm=True, activation="tanh",
                          device=x.device) is lnlstm
    taps_fast, taps_loop = StepTaps(), StepTaps()
    fast = _run("auto", x, h0, c0, weights, lns, taps=taps_fast, **kw)
    ref = _run("loop", x, h0, c0, weights, lns, taps=taps_loop, **kw)
    for k, (a, b) in enumerate(zip(fast, ref, strict=True)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=lambda m, k=k: f"result {k}: {m}")
    assert taps_fast.filled_backward and taps_fast.units == taps_loop.units == 5
    torch.testing.assert_close(taps_fast.grad_h_sq, taps_loop.grad_h_sq, rtol=0, atol=1e-10)
    torch.testing.assert_close(taps_fast.grad_c_sq, taps_loop.grad_c_sq, rtol=0, atol=1e-10)
    assert taps_fast.saturated.keys() == taps_loop.saturated.keys()
    for k in taps_loop.saturated:
        torch.testing.assert_close(taps_fast.saturated[k], taps_loop.saturated[k], rtol=0, atol=0)


def test_saturation_taps_count_saturated_gates():
    """Large weights saturate gates: the counts are non-trivial and equal the loop engine's."""
    x, h0, c0, weights, lns = _problem(B=4, T=5, H=8, seed=3)
    with torch.no_grad():
        for m in lns[:2]:
            m.weight.mul_(6)
    taps_fast, taps_loop = StepTaps(), StepTaps()
    with torch.no_grad():
        lnlstm.lstm(x, h0, c0, *weights, taps=taps_fast, layer_norm=lns)
        loop.lstm(x, h0, c0, *weights, taps=taps_loop, layer_norm=lns)
    total = sum(float(v.sum()) for v in taps_loop.saturated.values())
    assert total > 0
    for k in taps_loop.saturated:
        torch.testing.assert_close(taps_fast.saturated[k], taps_loop.saturated[k], rtol=0, atol=0)


def test_gradcheck_finite_differences():
    """Every input of the compiled recurrence against central finite differences (fp64, with padding and rmask)."""
    x, h0, c0, (w_ih, w_hh, b_ih, b_hh), lns = _problem(B=2, T=3, I=2, H=3, seed=4)
    lengths = torch.tensor([3, 2])
    rmask = torch.tensor([[1.0, 0.0, 2.0], [2.0, 1.0, 0.0]], dtype=x.dtype)

    def f(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gi, bi, gh, bh, gc, bc):
        pairs = ((gi, bi), (gh, bh), (gc, bc))
        mods = tuple(_GivenLayerNorm(w, b, m.eps) for m, (w, b) in zip(lns, pairs, strict=True))
        return lnlstm.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, None, layer_norm=mods)

    params = [p.detach().clone().requires_grad_() for m in lns for p in (m.weight, m.bias)]
    assert torch.autograd.gradcheck(f, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, *params), eps=1e-6, atol=1e-7)


class _GivenLayerNorm(torch.nn.LayerNorm):
    """A LayerNorm whose weight and bias are given tensors (so that gradcheck can perturb them)."""

    def __init__(self, weight, bias, eps):
        super().__init__(weight.shape[0], eps=eps, dtype=weight.dtype)
        del self.weight, self.bias
        self.weight, self.bias = weight, bias


def test_float32_close_to_loop():
    x, h0, c0, weights, lns = _problem(B=5, T=7, I=6, H=20, dtype=torch.float32, seed=5)
    fast = _run("fused", x, h0, c0, weights, lns, lengths=torch.tensor([7, 3, 5, 1, 7]))
    ref = _run("loop", x, h0, c0, weights, lns, lengths=torch.tensor([7, 3, 5, 1, 7]))
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_resolve_layer_norm():
    """auto and fused take it on the CPU, the loop engine on CUDA; other engines refuse."""
    kw = dict(cell="lstm", taps=False, rmask=False, layer_norm=True, activation="tanh")
    for name in ("auto", "fused"):
        assert engine.resolve(name, device=torch.device("cpu"), **kw) is lnlstm
        assert engine.resolve(name, device=torch.device("cuda"), **kw) is loop
    assert engine.resolve("loop", device=torch.device("cpu"), **kw) is loop
    with pytest.raises(ValueError, match="engine='native' does not support layer_norm=True"):
        engine.resolve("native", device=torch.device("cpu"), **kw)


def test_layer_uses_it_and_matches_loop_layer():
    """ll.LSTM(layer_norm=True), bidirectional stack with a mask: engine='auto' equals engine='loop'."""
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    mask = torch.tensor([[1] * 5, [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    outs, grads = [], []
    for name in ("auto", "loop"):
        torch.manual_seed(1)
        layer = ll.Bidirectional(ll.LSTM(6, return_sequences=True, layer_norm=True, engine=name)).double()
        y = layer(x, mask=mask)
        y.pow(2).sum().backward()
        outs.append(y)
        grads.append([p.grad for p in layer.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-10)
    assert len(grads[0]) == len(grads[1]) >= 10
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
