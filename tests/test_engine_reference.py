"""The ``reference`` engine through ``lstmlab.engine.run`` against torch.nn and the ``loop`` engine."""

from __future__ import annotations

import pytest
import torch

from lstmlab import cells
from lstmlab.engine import StepTaps, reference, run

CELLS = ["lstm", "gru", "rnn-tanh", "rnn-relu"]
B, T, IN, H = 4, 6, 3, 5
LENGTHS = torch.tensor([6, 2, 5, 1])


def _kind(cell: str) -> tuple[str, str]:
    base, _, act = cell.partition("-")
    return base, act or "tanh"


def make(cell: str, seed=0, scale=0.5, dtype=torch.float64, rmask=False):
    base, _ = _kind(cell)
    g = torch.Generator().manual_seed(seed)
    rn = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    spec = cells.get(base)
    G = spec.n_gates * H
    a = {"x": rn(B, T, IN), "h0": rn(B, H) * 0.5, "c0": rn(B, H) * 0.5 if spec.has_cell_state else None,
         "weights": [rn(G, IN) * scale, rn(G, H) * scale, rn(G) * 0.3, rn(G) * 0.3]}
    a["rmask"] = (torch.rand(B, H, generator=g) > 0.3).to(dtype) / 0.7 if rmask else None
    up = {"out": rn(B, T, H), "h_n": rn(B, H), "c_n": rn(B, H)}
    return a, up


def leaves(a: dict) -> dict:
    """Fresh leaf copies that require grad (rmask excluded)."""
    out = {k: (None if v is None else v.clone().requires_grad_(k != "rmask"))
           for k, v in a.items() if k != "weights"}
    out["weights"] = [w.clone().requires_grad_() for w in a["weights"]]
    return out


def loss_of(out, h_n, c_n, up):
    loss = (out * up["out"]).sum() + (h_n * up["h_n"]).sum()
    return loss if c_n is None else loss + (c_n * up["c_n"]).sum()


def run_engine(engine: str, cell: str, t: dict, lengths=None, reverse=False, taps=None):
    base, act = _kind(cell)
    return run(base, t["x"], t["h0"], t["c0"], tuple(t["weights"]), lengths=lengths, reverse=reverse,
               rmask=t["rmask"], activation=act, engine=engine, taps=taps)


def torch_nn_oracle(cell: str, t: dict, lengths, reverse: bool):
    """Each sequence separately through torch.nn (reversed within its length when asked), zero-padded."""
    base, act = _kind(cell)
    if base == "lstm":
        mod = torch.nn.LSTM(IN, H, batch_first=True)
    elif base == "gru":
        mod = torch.nn.GRU(IN, H, batch_first=True)
    else:
        mod = torch.nn.RNN(IN, H, nonlinearity=act, batch_first=True)
    mod = mod.double()
    with torch.no_grad():
        for name, w in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), t["weights"],
                           strict=True):
            getattr(mod, name).copy_(w)
    outs, hs, cs = [], [], []
    for b in range(B):
        n = T if lengths is None else int(lengths[b])
        xb = t["x"][b:b + 1, :n]
        xb = xb.flip(1) if reverse else xb
        h0 = t["h0"][b:b + 1][None]
        if base == "lstm":
            ob, (hb, cb) = mod(xb, (h0, t["c0"][b:b + 1][None]))
            cs.append(cb[0])
        else:
            ob, hb = mod(xb, h0)
        ob = ob.flip(1) if reverse else ob
        outs.append(torch.nn.functional.pad(ob, (0, 0, 0, T - n)))
        hs.append(hb[0])
    c_n = torch.cat(cs) if cs else None
    return torch.cat(outs), torch.cat(hs), c_n, mod


# ----------------------------------------------------------------------------- vs torch.nn

@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_run_matches_torch_nn(cell, with_lengths, reverse):
    a, up = make(cell, seed=1)
    lengths = LENGTHS if with_lengths else None
    ours, theirs = leaves(a), leaves(a)
    out, h_n, c_n = run_engine("reference", cell, ours, lengths, reverse)
    r_out, r_h, r_c, mod = torch_nn_oracle(cell, theirs, lengths, reverse)
    loss_of(out, h_n, c_n, up).backward()
    loss_of(r_out, r_h, r_c, up).backward()
    tol = dict(rtol=0, atol=1e-10)
    torch.testing.assert_close(out, r_out, **tol)
    torch.testing.assert_close(h_n, r_h, **tol)
    for k in ("x", "h0", "c0"):
        if ours[k] is not None:
            torch.testing.assert_close(ours[k].grad, theirs[k].grad, **tol, msg=k)
    if c_n is not None:
        torch.testing.assert_close(c_n, r_c, **tol)
    for w, name in zip(ours["weights"], ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                       strict=True):
        torch.testing.assert_close(w.grad, getattr(mod, name).grad, **tol, msg=name)


@pytest.mark.parametrize("cell", CELLS)
def test_autograd_gradcheck_with_lengths_and_rmask(cell):
    base, act = _kind(cell)
    a, _ = make(cell, seed=2, rmask=True)
    a = {k: v[:2, :4] if k == "x" else v for k, v in a.items()}
    t = leaves(a)
    t["rmask"].requires_grad_()
    lengths = torch.tensor([4, 2])
    sl = lambda v: None if v is None else v[:2].detach().requires_grad_()
    x, h0, c0, rmask = t["x"], sl(t["h0"]), sl(t["c0"]), sl(t["rmask"])
    if base == "lstm":
        fn = lambda x, h0, c0, *w: reference.lstm(x, h0, c0, *w[:4], lengths, w[4])
        args = (x, h0, c0, *t["weights"], rmask)
    elif base == "gru":
        fn = lambda x, h0, *w: reference.gru(x, h0, *w[:4], lengths, w[4])
        args = (x, h0, *t["weights"], rmask)
    else:
        fn = lambda x, h0, *w: reference.rnn(x, h0, *w[:4], lengths, w[4], act)
        args = (x, h0, *t["weights"], rmask)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-7)


def test_unused_outputs_and_float32_dtype():
    a, _ = make("lstm", seed=3, dtype=torch.float32)
    t, u = leaves(a), leaves(a)
    out, _, _ = run_engine("reference", "lstm", t, LENGTHS)
    out2, _, _ = run_engine("loop", "lstm", u, LENGTHS)
    assert out.dtype == torch.float32 and out.device == a["x"].device
    out.sum().backward()  # h_n, c_n unused: their gradients are zero
    out2.sum().backward()
    torch.testing.assert_close(out, out2, rtol=0, atol=1e-5)
    assert t["x"].grad.dtype == torch.float32 and t["weights"][1].grad.dtype == torch.float32
    torch.testing.assert_close(t["weights"][1].grad, u["weights"][1].grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(t["c0"].grad, u["c0"].grad, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- taps

def taps_of(engine: str, cell: str, a: dict, up: dict, lengths=None, reverse=False) -> StepTaps:
    taps = StepTaps()
    t = leaves(a)
    loss_of(*run_engine(engine, cell, t, lengths, reverse, taps), up).backward()
    return taps.finalize()


def assert_same_taps(ours: StepTaps, theirs: StepTaps, grads=True):
    assert ours.units == theirs.units == H
    assert set(ours.saturated) == set(theirs.saturated)
    for k, v in theirs.saturated.items():
        torch.testing.assert_close(ours.saturated[k], v, rtol=0, atol=0, msg=k)
    if grads:
        assert ours.filled_backward and theirs.filled_backward
        torch.testing.assert_close(ours.grad_h_sq, theirs.grad_h_sq, rtol=1e-10, atol=1e-12)
        if theirs.grad_c_sq is None:
            assert ours.grad_c_sq is None
        else:
            torch.testing.assert_close(ours.grad_c_sq, theirs.grad_c_sq, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("rmask", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_taps_equal_loop_engine(cell, rmask, reverse):
    a, up = make(cell, seed=4, scale=2.0, rmask=rmask)  # large weights: some gates saturate
    ours = taps_of("reference", cell, a, up, reverse=reverse)
    theirs = taps_of("loop", cell, a, up, reverse=reverse)
    assert sum(float(v.sum()) for v in ours.saturated.values()) > 0
    assert_same_taps(ours, theirs)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_saturation_taps_with_lengths_equal_loop_engine(cell, reverse):
    a, up = make(cell, seed=5, scale=2.0, rmask=True)
    ours = taps_of("reference", cell, a, up, LENGTHS, reverse)
    theirs = taps_of("loop", cell, a, up, LENGTHS, reverse)
    assert_same_taps(ours, theirs, grads=False)
    pad = torch.arange(T)[:, None] >= LENGTHS[None]
    for v in ours.saturated.values():
        assert (v[pad] == 0).all()


@pytest.mark.parametrize("cell", ["lstm", "rnn-tanh"])
def test_gradient_taps_with_lengths_match_retain_grad_unroll(cell):
    """Taps contract: dL/dh_t = output gradient at t + what flows back; padded steps carry the state."""
    base, act = _kind(cell)
    a, up = make(cell, seed=6, rmask=True)
    ours = taps_of("reference", cell, a, up, LENGTHS)
    t = leaves(a)
    mod = torch.nn.RNNCell(IN, H, nonlinearity=act).double()
    w_ih, w_hh, b_ih, b_hh = t["weights"]
    if base == "rnn":
        with torch.no_grad():
            for name, w in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), t["weights"], strict=True):
                getattr(mod, name).copy_(w)
    h, c, hs, cs, outs = t["h0"], t["c0"], [], [], []
    for s in range(T):
        m = (s < LENGTHS).to(torch.float64)[:, None]
        if base == "lstm":  # h_new reads the carried c, so c.grad is the total dL/dc_t
            pre = t["x"][:, s] @ w_ih.T + b_ih + (h * t["rmask"]) @ w_hh.T + b_hh
            i, f, g, o = pre.chunk(4, -1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = m * (f * c + i * g) + (1 - m) * c
            c.retain_grad()
            cs.append(c)
            h_new = o * torch.tanh(c)
        else:
            h_new = mod(t["x"][:, s], h * t["rmask"])
        h = m * h_new + (1 - m) * h
        h.retain_grad()
        hs.append(h)
        outs.append(m * h)
    loss_of(torch.stack(outs, 1), h, c, up).backward()
    torch.testing.assert_close(ours.grad_h_sq, torch.stack([v.grad.pow(2).sum(-1) for v in hs]),
                               rtol=1e-10, atol=1e-12)
    if cs:
        torch.testing.assert_close(ours.grad_c_sq, torch.stack([v.grad.pow(2).sum(-1) for v in cs]),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_taps_with_lengths_equal_loop_engine(cell):
    a, up = make(cell, seed=7, rmask=True)
    assert_same_taps(taps_of("reference", cell, a, up, LENGTHS), taps_of("loop", cell, a, up, LENGTHS))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_come_back_on_cuda():
    a, up = make("gru", seed=8, dtype=torch.float32)
    a = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in a.items()}
    a["weights"] = [w.cuda() for w in a["weights"]]
    up = {k: v.cuda() for k, v in up.items()}
    taps = StepTaps()
    t = leaves(a)
    out, h_n, _ = run_engine("reference", "gru", t, LENGTHS, True, taps)
    loss_of(out, h_n, None, up).backward()
    taps.finalize()
    assert out.is_cuda and t["weights"][0].grad.is_cuda and taps.grad_h_sq.is_cuda
