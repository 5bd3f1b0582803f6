"""The NumPy oracle against independent oracles: finite differences, torch.nn modules, torch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmlab import cells
from lstmlab.engine import loop
from lstmlab.reference import (
    gradcheck,
    gru_backward,
    gru_forward,
    join_concat,
    lstm_backward,
    lstm_forward,
    max_error,
    numerical_grad,
    rnn_backward,
    rnn_forward,
    seed_to_torch,
    sigmoid,
    split_concat,
    torch_to_seed,
)

CELLS = ["lstm", "gru", "rnn-tanh", "rnn-relu"]
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _kind(cell: str) -> tuple[str, str]:
    base, _, act = cell.partition("-")
    return base, act or "tanh"


def make(cell: str, batch=3, steps=5, inp=3, hidden=4, seed=0, lengths=False, rmask=False, scale=0.6):
    """Random float64 problem: inputs, parameters, upstream gradients."""
    base, _ = _kind(cell)
    rng = np.random.default_rng(seed)
    g = cells.get(base).n_gates * hidden
    a = {
        "x": rng.normal(size=(batch, steps, inp)),
        "h0": rng.normal(size=(batch, hidden)) * 0.5,
        "weight_ih": rng.normal(size=(g, inp)) * scale,
        "weight_hh": rng.normal(size=(g, hidden)) * scale,
        "bias_ih": rng.normal(size=g) * 0.3,
        "bias_hh": rng.normal(size=g) * 0.3,
    }
    if base == "lstm":
        a["c0"] = rng.normal(size=(batch, hidden)) * 0.5
    if rmask:
        a["rmask"] = (rng.random((batch, hidden)) > 0.3) / 0.7
    up = {"out": rng.normal(size=(batch, steps, hidden)), "h_n": rng.normal(size=(batch, hidden)),
          "c_n": rng.normal(size=(batch, hidden))}
    lens = np.array([steps] + list(rng.integers(1, steps + 1, size=batch - 1))) if lengths else None
    return a, up, lens


def np_forward(cell: str, a: dict, lens):
    """Returns ``(out, h_n, c_n or None, tape)``."""
    base, act = _kind(cell)
    w = [a[k] for k in PARAMS]
    rm = a.get("rmask")
    if base == "lstm":
        return lstm_forward(a["x"], a["h0"], a["c0"], *w, lengths=lens, rmask=rm)
    if base == "gru":
        out, h_n, tape = gru_forward(a["x"], a["h0"], *w, lengths=lens, rmask=rm)
        return out, h_n, None, tape
    out, h_n, tape = rnn_forward(a["x"], a["h0"], *w, lengths=lens, rmask=rm, activation=act)
    return out, h_n, None, tape


def np_backward(cell: str, tape, up: dict) -> dict:
    base, _ = _kind(cell)
    if base == "lstm":
        return lstm_backward(tape, up["out"], up["h_n"], up["c_n"])
    fn = gru_backward if base == "gru" else rnn_backward
    return fn(tape, up["out"], up["h_n"])


def np_loss(cell: str, a: dict, up: dict, lens) -> float:
    out, h_n, c_n, _ = np_forward(cell, a, lens)
    loss = (out * up["out"]).sum() + (h_n * up["h_n"]).sum()
    return loss + ((c_n * up["c_n"]).sum() if c_n is not None else 0.0)


VARIANTS = {"plain": {}, "lengths": {"lengths": True}, "rmask": {"rmask": True},
            "lengths+rmask": {"lengths": True, "rmask": True}}


# ----------------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_finite_differences(cell, variant):
    a, up, lens = make(cell, batch=2, steps=4, inp=3, hidden=3, seed=1, **VARIANTS[variant])
    _, _, _, tape = np_forward(cell, a, lens)
    grads = np_backward(cell, tape, up)
    errors = gradcheck(lambda: np_loss(cell, a, up, lens), a, grads, eps=1e-6, tol=1e-7)
    assert set(errors) == set(a)  # every weight, bias, input, initial state (and rmask) was checked


def test_gradcheck_utility_detects_errors():
    x = np.linspace(-2, 2, 7)
    assert max_error(numerical_grad(lambda: np.sin(x).sum(), x), np.cos(x)) < 1e-9
    with pytest.raises(AssertionError):
        gradcheck(lambda: np.sin(x).sum(), {"x": x}, {"x": np.cos(x) + 1e-3})


# ----------------------------------------------------------------------------- torch.nn modules

def _torch_module(cell: str, a: dict):
    base, act = _kind(cell)
    inp, hidden = a["weight_ih"].shape[1], a["weight_hh"].shape[1]
    if base == "lstm":
        mod = torch.nn.LSTM(inp, hidden, batch_first=True)
    elif base == "gru":
        mod = torch.nn.GRU(inp, hidden, batch_first=True)
    else:
        mod = torch.nn.RNN(inp, hidden, nonlinearity=act, batch_first=True)
    mod = mod.double()
    with torch.no_grad():
        for k in PARAMS:
            getattr(mod, f"{k}_l0").copy_(torch.from_numpy(a[k]))
    return mod


@pytest.mark.parametrize("cell", CELLS)
def test_matches_torch_nn_module(cell):
    a, up, _ = make(cell, seed=2)
    mod = _torch_module(cell, a)
    x = torch.tensor(a["x"], requires_grad=True)
    h0 = torch.tensor(a["h0"][None], requires_grad=True)
    if "c0" in a:
        c0 = torch.tensor(a["c0"][None], requires_grad=True)
        out, (h_n, c_n) = mod(x, (h0, c0))
        extra = (c_n[0] * torch.from_numpy(up["c_n"])).sum()
    else:
        out, h_n = mod(x, h0)
        extra = 0
    loss = (out * torch.from_numpy(up["out"])).sum() + (h_n[0] * torch.from_numpy(up["h_n"])).sum()
    (loss + extra).backward()

    ref_out, ref_h, ref_c, tape = np_forward(cell, a, None)
    g = np_backward(cell, tape, up)
    np.testing.assert_allclose(ref_out, out.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ref_h, h_n[0].detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g["x"], x.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g["h0"], h0.grad[0].numpy(), rtol=0, atol=1e-12)
    if "c0" in a:
        np.testing.assert_allclose(ref_c, c_n[0].detach().numpy(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(g["c0"], c0.grad[0].numpy(), rtol=0, atol=1e-12)
    for k in PARAMS:
        np.testing.assert_allclose(g[k], getattr(mod, f"{k}_l0").grad.numpy(), rtol=0, atol=1e-11, err_msg=k)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_lengths_match_packed_torch_nn(cell):
    """Padded steps output 0 and carry the state: same as torch.nn on a PackedSequence."""
    a, up, lens = make(cell, batch=4, steps=6, seed=3, lengths=True)
    mod = _torch_module(cell, a)
    x = torch.tensor(a["x"])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lens), batch_first=True,
                                                     enforce_sorted=False)
    hx = torch.tensor(a["h0"][None])
    hx = (hx, torch.tensor(a["c0"][None])) if "c0" in a else hx
    with torch.no_grad():
        out, states = mod(packed, hx)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    ref_out, ref_h, ref_c, _ = np_forward(cell, a, lens)
    np.testing.assert_allclose(ref_out, out.numpy(), rtol=0, atol=1e-12)
    h_n = states[0] if "c0" in a else states
    np.testing.assert_allclose(ref_h, h_n[0].numpy(), rtol=0, atol=1e-12)
    if "c0" in a:
        np.testing.assert_allclose(ref_c, states[1][0].numpy(), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- the loop engine

@pytest.mark.parametrize("variant", ["lengths", "rmask", "lengths+rmask"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_match_loop_engine(cell, variant):
    base, act = _kind(cell)
    a, up, lens = make(cell, seed=4, **VARIANTS[variant])
    t = {k: torch.tensor(v, requires_grad=k != "rmask") for k, v in a.items()}
    w = [t[k] for k in PARAMS]
    lengths = None if lens is None else torch.from_numpy(lens)
    if base == "lstm":
        out, h_n, c_n = loop.lstm(t["x"], t["h0"], t["c0"], *w, lengths, t.get("rmask"))
    elif base == "gru":
        (out, h_n), c_n = loop.gru(t["x"], t["h0"], *w, lengths, t.get("rmask")), None
    else:
        (out, h_n), c_n = loop.rnn(t["x"], t["h0"], *w, lengths, t.get("rmask"), act), None
    loss = (out * torch.from_numpy(up["out"])).sum() + (h_n * torch.from_numpy(up["h_n"])).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.from_numpy(up["c_n"])).sum()
    loss.backward()
    ref_out, _, _, tape = np_forward(cell, a, lens)
    g = np_backward(cell, tape, up)
    np.testing.assert_allclose(ref_out, out.detach().numpy(), rtol=0, atol=1e-12)
    for k, v in t.items():
        if k != "rmask":
            np.testing.assert_allclose(g[k], v.grad.numpy(), rtol=0, atol=1e-11, err_msg=k)


def test_layer_norm_lstm_matches_loop_engine_and_is_forward_only():
    """The layer-normalised reference step (trace uses it) against the loop engine's torch LayerNorms."""
    a, up, lens = make("lstm", seed=9, lengths=True)
    g = torch.Generator().manual_seed(9)
    lns = [torch.nn.LayerNorm(n, dtype=torch.float64) for n in (16, 16, 4)]
    with torch.no_grad():
        for ln in lns:
            ln.weight.copy_(torch.rand(ln.weight.shape, generator=g, dtype=torch.float64) + 0.5)
            ln.bias.copy_(torch.rand(ln.bias.shape, generator=g, dtype=torch.float64) - 0.5)
    ln_np = tuple((ln.weight.detach().numpy(), ln.bias.detach().numpy(), ln.eps) for ln in lns)
    out, h_n, c_n, tape = lstm_forward(a["x"], a["h0"], a["c0"], *(a[k] for k in PARAMS), lengths=lens,
                                       layer_norm=ln_np)
    t = {k: torch.from_numpy(v) for k, v in a.items()}
    with torch.no_grad():
        out2, h2, c2 = loop.lstm(t["x"], t["h0"], t["c0"], *(t[k] for k in PARAMS), torch.from_numpy(lens),
                                 None, None, layer_norm=tuple(lns))
    for mine, theirs in ((out, out2), (h_n, h2), (c_n, c2)):
        np.testing.assert_allclose(mine, theirs.numpy(), rtol=0, atol=1e-12)
    with pytest.raises(NotImplementedError, match="forward only"):
        lstm_backward(tape, up["out"])
    with pytest.raises(ValueError, match="rmask"):
        lstm_forward(a["x"], a["h0"], a["c0"], *(a[k] for k in PARAMS), rmask=np.ones((3, 4)), layer_norm=ln_np)


# ----------------------------------------------------------------------------- per-step dL/dh_t

def _unroll(cell: str, a: dict, lens):
    """Step-by-step torch unroll (explicit LSTM / GRU equations, torch.nn.RNNCell) keeping every state.

    Convention of lstmlab.engine.taps: ``h_t = m_t h_new + (1 - m_t) h_{t-1}``, ``out_t = m_t h_t``.
    """
    base, act = _kind(cell)
    inp, hidden = a["weight_ih"].shape[1], a["weight_hh"].shape[1]
    t = {k: torch.tensor(v, requires_grad=k != "rmask") for k, v in a.items()}
    rmask = t.get("rmask", torch.ones(hidden, dtype=torch.float64))
    steps = a["x"].shape[1]
    if base == "rnn":
        mod = torch.nn.RNNCell(inp, hidden, nonlinearity=act).double()
    else:
        mod = None
    if mod is not None:
        with torch.no_grad():
            for k in PARAMS:
                getattr(mod, k).copy_(t[k])
    h, c = t["h0"], t.get("c0")
    hs, cs, outs = [], [], []
    for s in range(steps):
        m = torch.ones(a["x"].shape[0], 1, dtype=torch.float64) if lens is None else \
            torch.tensor((s < lens).astype(np.float64))[:, None]
        x_t = t["x"][:, s]
        if base == "lstm":  # h_new reads the carried c, so c.grad is the total dL/dc_t
            pre = (torch.nn.functional.linear(x_t, t["weight_ih"], t["bias_ih"])
                   + torch.nn.functional.linear(h * rmask, t["weight_hh"], t["bias_hh"]))
            i, f, g, o = pre.chunk(4, -1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = m * (f * c + i * g) + (1 - m) * c
            c.retain_grad()
            cs.append(c)
            h_new = o * torch.tanh(c)
        elif base == "rnn":
            h_new = mod(x_t, h * rmask)
        else:
            gi = torch.nn.functional.linear(x_t, t["weight_ih"], t["bias_ih"]).chunk(3, -1)
            gh = torch.nn.functional.linear(h * rmask, t["weight_hh"], t["bias_hh"]).chunk(3, -1)
            r, z = torch.sigmoid(gi[0] + gh[0]), torch.sigmoid(gi[1] + gh[1])
            n = torch.tanh(gi[2] + r * gh[2])
            h_new = (1 - z) * n + z * h
        h = m * h_new + (1 - m) * h
        h.retain_grad()
        hs.append(h)
        outs.append(m * h)
    return torch.stack(outs, 1), h, c, hs, cs


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("cell", CELLS)
def test_per_step_state_gradients_match_retain_grad(cell, variant):
    a, up, lens = make(cell, seed=5, **VARIANTS[variant])
    out, h_n, c_n, hs, cs = _unroll(cell, a, lens)
    loss = (out * torch.from_numpy(up["out"])).sum() + (h_n * torch.from_numpy(up["h_n"])).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.from_numpy(up["c_n"])).sum()
    loss.backward()
    ref_out, _, _, tape = np_forward(cell, a, lens)
    g = np_backward(cell, tape, up)
    np.testing.assert_allclose(ref_out, out.detach().numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g["dh"], torch.stack([h.grad for h in hs]).numpy(), rtol=0, atol=1e-12)
    if cs:
        np.testing.assert_allclose(g["dc"], torch.stack([c.grad for c in cs]).numpy(), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- seed notation, dtypes

def test_seed_layout_round_trip_and_equations():
    a, up, _ = make("lstm", batch=1, steps=1, inp=3, hidden=4, seed=6)
    p = torch_to_seed(a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"])
    assert p["W_f"].shape == (4, 4 + 3)
    # seed section 4, written out for one example as column vectors
    h_prev, C_prev, x_t = a["h0"][0], a["c0"][0], a["x"][0, 0]
    hx = np.concatenate([h_prev, x_t])
    f_t = 1 / (1 + np.exp(-(p["W_f"] @ hx + p["b_f"])))
    i_t = 1 / (1 + np.exp(-(p["W_i"] @ hx + p["b_i"])))
    C_tilde = np.tanh(p["W_c"] @ hx + p["b_c"])
    C_t = f_t * C_prev + i_t * C_tilde
    o_t = 1 / (1 + np.exp(-(p["W_o"] @ hx + p["b_o"])))
    h_t = o_t * np.tanh(C_t)
    out, h_n, c_n, _ = lstm_forward(a["x"], a["h0"], a["c0"], *(a[k] for k in PARAMS))
    np.testing.assert_allclose(h_n[0], h_t, rtol=0, atol=1e-14)
    np.testing.assert_allclose(c_n[0], C_t, rtol=0, atol=1e-14)
    # torch -> seed -> torch keeps the weights; the two biases fold into one
    w_ih, w_hh, b_ih, b_hh = seed_to_torch(p, 4)
    np.testing.assert_array_equal(w_ih, a["weight_ih"])
    np.testing.assert_array_equal(w_hh, a["weight_hh"])
    np.testing.assert_allclose(b_ih + b_hh, a["bias_ih"] + a["bias_hh"], rtol=0, atol=1e-15)
    W_h, W_x = split_concat(p["W_c"], 4)
    np.testing.assert_array_equal(W_h, a["weight_hh"][8:12])  # torch gate g = seed candidate C~
    np.testing.assert_array_equal(join_concat(W_h, W_x), p["W_c"])


def test_seed_gradients_are_torch_gradients_regrouped():
    a, up, _ = make("lstm", seed=7, rmask=True)
    _, _, _, tape = np_forward("lstm", a, None)
    g = lstm_backward(tape, up["out"], up["h_n"], up["c_n"])
    H = a["weight_hh"].shape[1]
    for k, s in enumerate("ifco"):
        rows = slice(k * H, (k + 1) * H)
        np.testing.assert_array_equal(g[f"W_{s}"], join_concat(g["weight_hh"][rows], g["weight_ih"][rows]))
        np.testing.assert_array_equal(g[f"b_{s}"], g["bias_ih"][rows])
    np.testing.assert_array_equal(g["bias_ih"], g["bias_hh"])


@pytest.mark.parametrize("cell", CELLS)
def test_float32_keeps_dtype_and_agrees_with_float64(cell):
    a, up, lens = make(cell, seed=8, lengths=True, rmask=True)
    a32 = {k: v.astype(np.float32) for k, v in a.items()}
    out64, h64, _, tape64 = np_forward(cell, a, lens)
    out32, h32, _, tape32 = np_forward(cell, a32, lens)
    g64 = np_backward(cell, tape64, up)
    g32 = np_backward(cell, tape32, {k: v.astype(np.float32) for k, v in up.items()})
    assert out32.dtype == h32.dtype == g32["weight_ih"].dtype == g32["dh"].dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=0, atol=1e-5)
    for k in (*PARAMS, "x", "h0"):
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-4, err_msg=k)


def test_sigmoid_is_stable_and_exact():
    v = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = sigmoid(v)
    np.testing.assert_allclose(s, torch.sigmoid(torch.from_numpy(v)).numpy(), rtol=1e-14, atol=0)
