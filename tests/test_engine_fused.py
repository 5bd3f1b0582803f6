"""The fused engine (compiled C++ time loops, hand-derived BPTT) against torch.nn and the loop engine.

Every test runs the compiled extension itself: a build failure fails ``test_extension_builds``
and every test that needs it (no silent fallback to the loop engine).  CUDA tests are marked
``cuda`` and skipped, with the reason shown, where no GPU is available.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmlab import cells, engine
from lstmlab.engine import StepTaps, fused, loop

TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-10}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
LENGTHS = [9, 4, 7, 1, 9]  # B = 5, T = 9: full, partial and length-1 sequences
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")


@pytest.fixture(scope="module", autouse=True)
def built():
    fused.load()
    assert engine.fused_module() is fused, "the dispatcher fell back to another engine"
    yield
    fused.FORCE_GENERIC = False


@pytest.fixture(params=[False, True], ids=["cpu-kernel", "generic-route"])
def route(request):
    """Run a test through the CPU kernels and through the device-generic (CUDA) route."""
    fused.FORCE_GENERIC = request.param
    yield request.param
    fused.FORCE_GENERIC = False


def test_extension_builds():
    info = fused.configure()
    assert info["simd_lanes"] in (1, 8, 16)
    assert fused.load() is torch.ops.lstmlab_fused


def _torch_module(cell, inp, hidden, dtype, activation="tanh", bidirectional=False, scale=1.0):
    torch.manual_seed(1)
    if cell == "lstm":
        m = torch.nn.LSTM(inp, hidden, batch_first=True, bidirectional=bidirectional)
    elif cell == "gru":
        m = torch.nn.GRU(inp, hidden, batch_first=True, bidirectional=bidirectional)
    else:
        m = torch.nn.RNN(inp, hidden, batch_first=True, nonlinearity=activation, bidirectional=bidirectional)
    m = m.to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def _weights(m, suffix=""):
    return tuple(getattr(m, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def _inputs(cell, batch, steps, inp, hidden, dtype, directions=1):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(batch, steps, inp, dtype=dtype, generator=g).requires_grad_()
    h0 = (0.5 * torch.randn(directions, batch, hidden, dtype=dtype, generator=g)).requires_grad_()
    c0 = (0.5 * torch.randn(directions, batch, hidden, dtype=dtype, generator=g)).requires_grad_()
    return x, h0, c0


def _loss(tensors):
    """A loss that gives every output element a different gradient."""
    total = 0
    for k, t in enumerate(tensors):
        if t is None:
            continue
        w = torch.randn(t.shape, dtype=t.dtype, generator=torch.Generator().manual_seed(10 + k))
        total = total + (t * w.to(t.device)).sum()
    return total


def _close(actual, expected, dtype, what=""):
    torch.testing.assert_close(actual, expected, **TOL[dtype], msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,activation", [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"),
                                             ("rnn", "relu")])
@pytest.mark.parametrize("hidden", [13, 16])
def test_matches_torch_nn(cell, activation, dtype, hidden, route):
    batch, steps, inp = 4, 11, 5
    m = _torch_module(cell, inp, hidden, dtype, activation)
    x, h0, c0 = _inputs(cell, batch, steps, inp, hidden, dtype)
    params = list(m.parameters())
    if cell == "lstm":
        ref_out, (ref_h, ref_c) = m(x, (h0, c0))
        ref = [ref_out, ref_h[0], ref_c[0]]
    else:
        ref_out, ref_h = m(x, h0)
        ref = [ref_out, ref_h[0]]
    wrt = [x, h0, c0, *params] if cell == "lstm" else [x, h0, *params]
    ref_grads = torch.autograd.grad(_loss(ref), wrt)

    out, h_n, c_n = engine.run(cell, x, h0[0], c0[0] if cell == "lstm" else None, _weights(m),
                               activation=activation, engine="fused")
    got = [out, h_n, c_n] if cell == "lstm" else [out, h_n]
    grads = torch.autograd.grad(_loss(got), wrt)
    for name, a, b in zip(("out", "h_n", "c_n")[:len(got)], got, ref, strict=True):
        _close(a, b, dtype, name)
    for k, (a, b) in enumerate(zip(grads, ref_grads, strict=True)):
        _close(a, b, dtype, f"grad {k}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bidirectional_packed(cell, dtype, route):
    """Forward + reverse=True with lengths == a bidirectional torch module on a PackedSequence."""
    batch, steps, inp, hidden = 5, 9, 3, 6
    lengths = torch.tensor(LENGTHS)
    m = _torch_module(cell, inp, hidden, dtype, bidirectional=True)
    x, h0, c0 = _inputs(cell, batch, steps, inp, hidden, dtype, directions=2)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    if cell == "lstm":
        po, (rh, rc) = m(packed, (h0, c0))
    else:
        po, rh = m(packed, h0)
        rc = None
    ref_out, _ = pad_packed_sequence(po, batch_first=True, total_length=steps)
    ref = [ref_out, rh, rc]
    params = list(m.parameters())
    wrt = [x, h0, *params] + ([c0] if cell == "lstm" else [])
    ref_grads = torch.autograd.grad(_loss(ref), wrt)

    outs, hs, cs = [], [], []
    for d, suffix in enumerate(("", "_reverse")):
        o, h, c = engine.run(cell, x, h0[d], c0[d] if cell == "lstm" else None, _weights(m, suffix),
                             lengths=lengths, reverse=bool(d), engine="fused")
        outs.append(o)
        hs.append(h)
        cs.append(c)
    got = [torch.cat(outs, -1), torch.stack(hs), torch.stack(cs) if cell == "lstm" else None]
    grads = torch.autograd.grad(_loss(got), wrt)
    _close(got[0], ref_out, dtype, "out")
    _close(got[1], rh, dtype, "h_n")
    if cell == "lstm":
        _close(got[2], rc, dtype, "c_n")
    for k, (a, b) in enumerate(zip(grads, ref_grads, strict=True)):
        _close(a, b, dtype, f"grad {k}")


def _run_engine(mod, cell, x, h0, c0, weights, lengths, rmask, activation, taps):
    if cell == "lstm":
        return mod.lstm(x, h0, c0, *weights, lengths, rmask, taps)
    if cell == "gru":
        return mod.gru(x, h0, *weights, lengths, rmask, taps)
    return mod.rnn(x, h0, *weights, lengths, rmask, activation, taps)


def _vs_loop(cell, dtype, *, activation="tanh", lengths=None, rmask=False, taps=True, scale=1.0,
             hidden=13, outputs="all", device="cpu", x_grad=True, batch=5, inp=4):
    steps = 9
    G = GATES[cell]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, steps, inp, dtype=dtype, generator=g)
    h0 = torch.randn(batch, hidden, dtype=dtype, generator=g)
    c0 = torch.randn(batch, hidden, dtype=dtype, generator=g)
    weights = [scale * torch.randn(G * hidden, inp, dtype=dtype, generator=g) / inp ** 0.5,
               scale * torch.randn(G * hidden, hidden, dtype=dtype, generator=g) / hidden ** 0.5,
               0.3 * torch.randn(G * hidden, dtype=dtype, generator=g),
               0.3 * torch.randn(G * hidden, dtype=dtype, generator=g)]
    rm = (torch.rand(batch, hidden, generator=g) > 0.25).to(dtype) / 0.75 if rmask else None
    results = []
    for mod, dev in ((fused, device), (loop, "cpu")):
        xs = x.to(dev).requires_grad_(x_grad)
        h0s, c0s = h0.to(dev).requires_grad_(), c0.to(dev).requires_grad_()
        ws = [w.to(dev).requires_grad_() for w in weights]
        tp = StepTaps() if taps else None
        res = _run_engine(mod, cell, xs, h0s, c0s, ws, lengths, None if rm is None else rm.to(dev),
                          activation, tp)
        res = list(res)
        if outputs == "h_n":
            loss_on = [None, res[1]]
        elif outputs == "out":
            loss_on = [res[0]]
        else:
            loss_on = res
        wrt = ([xs] if x_grad else []) + [h0s] + ([c0s] if cell == "lstm" else []) + ws
        grads = torch.autograd.grad(_loss(loss_on), wrt)
        if tp is not None:
            tp.finalize()
        results.append(([r.cpu() for r in res], [gr.cpu() for gr in grads], tp))
    (fo, fg, ft), (lo, lg, lt) = results
    for k, (a, b) in enumerate(zip(fo, lo, strict=True)):
        _close(a, b, dtype, f"output {k}")
    for k, (a, b) in enumerate(zip(fg, lg, strict=True)):
        _close(a, b, dtype, f"grad {k}")
    if taps:
        assert ft.filled_backward and lt.filled_backward
        assert ft.units == lt.units == hidden
        assert set(ft.saturated) == set(lt.saturated)
        for k in lt.saturated:
            assert ft.saturated[k].shape == (steps, batch)
            torch.testing.assert_close(ft.saturated[k].cpu(), lt.saturated[k], rtol=0, atol=0,
                                       msg=lambda m, k=k: f"saturated[{k}]: {m}")
        _close(ft.grad_h_sq.cpu(), lt.grad_h_sq, dtype, "grad_h_sq")
        if cell == "lstm":
            _close(ft.grad_c_sq.cpu(), lt.grad_c_sq, dtype, "grad_c_sq")
        else:
            assert ft.grad_c_sq is None
    return ft


CELLS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]


@pytest.mark.parametrize("cell,activation", CELLS)
@pytest.mark.parametrize("lengths,rmask", [(None, False), (LENGTHS, False), (None, True), (LENGTHS, True)],
                         ids=["plain", "lengths", "rmask", "lengths+rmask"])
def test_matches_loop_with_taps(cell, activation, lengths, rmask, route):
    lengths = None if lengths is None else torch.tensor(lengths)
    _vs_loop(cell, torch.float64, activation=activation, lengths=lengths, rmask=rmask)


@pytest.mark.parametrize("cell,activation", CELLS)
def test_matches_loop_float32(cell, activation, route):
    _vs_loop(cell, torch.float32, activation=activation, lengths=torch.tensor(LENGTHS), rmask=True,
             taps=False, hidden=16)


@pytest.mark.parametrize("cell,activation", CELLS)
def test_saturation_counts_nonzero(cell, activation):
    """Large weights saturate many units; counts must match the loop engine unit for unit."""
    ft = _vs_loop(cell, torch.float64, activation=activation, lengths=torch.tensor(LENGTHS), scale=4.0)
    assert sum(float(v.sum()) for v in ft.saturated.values()) > 0
    # padded steps record 0
    pad = torch.arange(9).unsqueeze(1) >= torch.tensor(LENGTHS).unsqueeze(0)
    for v in ft.saturated.values():
        assert float(v[pad].abs().sum()) == 0.0


@pytest.mark.parametrize("outputs", ["h_n", "out"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_partial_outputs_and_no_input_grad(cell, outputs, route):
    """Unused outputs (None gradients) and an input that needs no gradient."""
    _vs_loop(cell, torch.float64, lengths=torch.tensor(LENGTHS), rmask=True, outputs=outputs, x_grad=False)


@pytest.fixture(params=[1, 0], ids=["futex_barrier", "yield_barrier"])
def threaded(request):
    """Force the multi-thread split of hidden units (slots) whatever the problem size, with either
    per-step barrier (futex after a short spin, the default; or spin then yield)."""
    info, threads = fused.configure(), torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    fused.configure(par_threshold=0, barrier=request.param)
    yield
    fused.configure(par_threshold=info["par_threshold"], barrier=int(info["futex_barrier"]))
    torch.set_num_threads(threads)


@pytest.mark.parametrize("hidden", [8, 40])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_inference_path_matches_training_path(cell, hidden, route, threaded):
    g = torch.Generator().manual_seed(5)
    H = hidden
    x = torch.randn(3, 6, 4, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, H, generator=g, dtype=torch.float64)
    c0 = torch.randn(3, H, generator=g, dtype=torch.float64)
    G = GATES[cell]
    ws = [torch.randn(G * H, 4, generator=g, dtype=torch.float64),
          torch.randn(G * H, H, generator=g, dtype=torch.float64) / H ** 0.5,
          torch.randn(G * H, generator=g, dtype=torch.float64),
          torch.randn(G * H, generator=g, dtype=torch.float64)]
    lengths = torch.tensor([6, 2, 5])
    rm = torch.full((3, H), 1.25, dtype=torch.float64)
    with torch.no_grad():
        t_inf = StepTaps()
        a = _run_engine(fused, cell, x, h0, c0, ws, lengths, rm, "tanh", t_inf)
    t_tr = StepTaps()
    b = _run_engine(fused, cell, x, h0, c0, [w.requires_grad_() for w in ws], lengths, rm, "tanh", t_tr)
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v.detach(), rtol=0, atol=0)
    for k in t_tr.saturated:
        torch.testing.assert_close(t_inf.saturated[k], t_tr.saturated[k], rtol=0, atol=0)
    assert not t_inf.filled_backward and t_inf.grad_h_sq is None


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_noncontiguous_inputs(cell, route):
    """Non-contiguous x, states, weights and rmask give the same results as contiguous ones."""
    g = torch.Generator().manual_seed(7)
    B, T, n_in, H = 3, 5, 4, 20
    G = GATES[cell]
    base = [torch.randn(T, B, n_in, generator=g, dtype=torch.float64).transpose(0, 1),
            torch.randn(H, B, generator=g, dtype=torch.float64).t(),
            torch.randn(H, B, generator=g, dtype=torch.float64).t(),
            torch.randn(n_in, G * H, generator=g, dtype=torch.float64).t(),
            torch.randn(H, G * H, generator=g, dtype=torch.float64).t() / H ** 0.5,
            torch.randn(2 * G * H, generator=g, dtype=torch.float64)[::2],
            torch.randn(G * H, generator=g, dtype=torch.float64)]
    rm = torch.full((H, B), 1.25, dtype=torch.float64).t()
    assert not base[0].is_contiguous() and not base[4].is_contiguous()
    results = []
    for make in (lambda t: t, lambda t: t.contiguous()):
        ts = [make(t).detach().requires_grad_() for t in base]
        outs = _run_engine(fused, cell, ts[0], ts[1], ts[2], ts[3:], torch.tensor([5, 2, 4]), make(rm), "tanh",
                           None)
        grads = torch.autograd.grad(_loss(list(outs)), [t for k, t in enumerate(ts) if cell == "lstm" or k != 2])
        results.append([o.detach() for o in outs] + list(grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_nan_propagates():
    x = torch.randn(2, 5, 3)
    x[1, 2, 0] = float("nan")
    m = _torch_module("lstm", 3, 16, torch.float32)
    out, h_n, c_n = engine.run("lstm", x, torch.zeros(2, 16), torch.zeros(2, 16), _weights(m), engine="fused")
    assert torch.isnan(out[1, 2:]).all() and torch.isfinite(out[0]).all() and torch.isfinite(out[1, :2]).all()
    assert torch.isnan(h_n[1]).all() and torch.isnan(c_n[1]).all()


def test_blas_routes_agree():
    """Direct BLAS calls and the at::mm fallback give the same numbers."""
    info = fused.configure()
    try:
        runs = []
        for mode in (0, 1):
            fused.configure(blas=mode)
            ft = _vs_loop("lstm", torch.float64, lengths=torch.tensor(LENGTHS), rmask=True)
            runs.append(ft.grad_h_sq)
        torch.testing.assert_close(runs[0], runs[1], rtol=1e-12, atol=1e-12)
    finally:
        fused.configure(blas=int(info["direct_blas"]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("hidden", [37, 64])
@pytest.mark.parametrize("cell,activation", CELLS)
def test_thread_slots_match_loop(cell, activation, hidden, dtype, threaded):
    """Hidden units split over threads (one GEMM + elementwise slice per thread) == loop engine."""
    _vs_loop(cell, dtype, activation=activation, lengths=torch.tensor(LENGTHS), rmask=True, hidden=hidden,
             taps=dtype == torch.float64)
    _vs_loop(cell, dtype, activation=activation, hidden=hidden, taps=dtype == torch.float64)


@pytest.mark.parametrize("packed", [0, 2])
def test_packed_gemm_agrees(packed):
    """MKL's packed GEMM (float32) and the plain BLAS call give the same results."""
    info = fused.configure()
    try:
        fused.configure(packed=packed)
        _vs_loop("lstm", torch.float32, lengths=torch.tensor(LENGTHS), rmask=True, taps=False, hidden=24)
        _vs_loop("gru", torch.float32, taps=False, hidden=24)
    finally:
        fused.configure(packed=info["packed_gemm"])



@pytest.mark.parametrize("small", [0, 2], ids=["blas", "own_kernel"])
@pytest.mark.parametrize("hidden", [5, 16, 37, 80, 261])
def test_own_small_gemm_agrees(small, hidden):
    """The own SIMD micro-kernel for the per-step float32 GEMM (forced on / off) == loop engine, with
    row and column tails (hidden 5, 37, 80, 261; batch 5 and 13 = 8 + 4 + 1 rows), K longer than one
    panel block of 256 (backward: 4H = 320, 1044; forward: H = 261) and with the thread split."""
    info, threads = fused.configure(), torch.get_num_threads()
    try:
        fused.configure(small=small)
        for cell in ("lstm", "gru", "rnn"):
            _vs_loop(cell, torch.float32, lengths=torch.tensor(LENGTHS), rmask=True, taps=False, hidden=hidden)
            _vs_loop(cell, torch.float32, taps=False, hidden=hidden, batch=13)
        torch.set_num_threads(max(threads, 2))
        fused.configure(par_threshold=0)
        _vs_loop("lstm", torch.float32, taps=False, hidden=hidden)
    finally:
        torch.set_num_threads(threads)
        fused.configure(par_threshold=info["par_threshold"], small=info["small_gemm"])

@pytest.mark.parametrize("inp", [1, 15, 16, 40])
def test_input_weight_grad_both_orientations(inp):
    """dW_ih (and dx) == loop engine on both sides of the I < 16 rule that takes (x^T dG)^T."""
    for cell in ("lstm", "gru"):
        _vs_loop(cell, torch.float32, taps=False, inp=inp)
        _vs_loop(cell, torch.float64, lengths=torch.tensor(LENGTHS), rmask=True, inp=inp)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,activation", CELLS)
def test_cuda_matches_loop(cell, activation, dtype):
    lengths = torch.tensor(LENGTHS)
    _vs_loop(cell, dtype, activation=activation, lengths=lengths, rmask=True, device="cuda",
             taps=dtype == torch.float64, hidden=16)
    _vs_loop(cell, dtype, activation=activation, device="cuda", taps=dtype == torch.float64, hidden=16)


@pytest.mark.cuda
@CUDA
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_matches_torch_nn(cell):
    dtype = torch.float64
    m = _torch_module(cell, 5, 12, dtype).cuda()
    x, h0, c0 = (t.detach().cuda().requires_grad_() for t in _inputs(cell, 4, 10, 5, 12, dtype))
    params = list(m.parameters())
    if cell == "lstm":
        ro, (rh, rc) = m(x, (h0, c0))
        ref = [ro, rh[0], rc[0]]
    else:
        ro, rh = m(x, h0)
        ref = [ro, rh[0]]
    wrt = [x, h0, *params] + ([c0] if cell == "lstm" else [])
    ref_g = torch.autograd.grad(_loss(ref), wrt)
    out, h_n, c_n = engine.run(cell, x, h0[0], c0[0] if cell == "lstm" else None, _weights(m), engine="fused")
    got = [out, h_n, c_n] if cell == "lstm" else [out, h_n]
    g = torch.autograd.grad(_loss(got), wrt)
    for a, b in zip(got + list(g), ref + list(ref_g), strict=True):
        assert a.is_cuda
        _close(a, b, dtype)


def _small_layer(cell, dtype=torch.float64, seed=11):
    """Leaf tensors (x, h0, c0 or None, [w_ih, w_hh, b_ih, b_hh]) of a small layer, B=3, T=6, I=4, H=5."""
    g = torch.Generator().manual_seed(seed)
    B, T, n_in, H = 3, 6, 4, 5
    G = GATES[cell]
    x = torch.randn(B, T, n_in, generator=g, dtype=dtype)
    h0 = torch.randn(B, H, generator=g, dtype=dtype)
    c0 = torch.randn(B, H, generator=g, dtype=dtype) if cell == "lstm" else None
    ws = [torch.randn(G * H, n_in, generator=g, dtype=dtype) / 2, torch.randn(G * H, H, generator=g, dtype=dtype) / 2,
          0.3 * torch.randn(G * H, generator=g, dtype=dtype), 0.3 * torch.randn(G * H, generator=g, dtype=dtype)]
    return x, h0, c0, ws


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("generic", [False, True], ids=["cpu-kernel", "generic-route"])
def test_thresholds_come_from_the_caller(cell, generic):
    """The kernels count saturation with the thresholds they are given (the cell table's), not their own."""
    x, h0, c0, ws = _small_layer(cell)
    lengths = torch.tensor([6, 3, 5])
    low, high, limit = 0.3, 0.6, 0.4
    ops = fused.load()
    out, _, _, A, _, _, sat = ops.forward(cell, x, h0, c0, *ws, lengths, None, False, [low, high, limit], True, True,
                                          generic)
    acts = (A if A.numel() else out).unflatten(-1, (-1, 5))  # (B, T, blocks, H): the activations of each gate
    valid = (torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)).t()  # (T, B)
    spec = cells.get(cell)
    for q, gate in enumerate(spec.gates):
        a = acts[:, :, q].transpose(0, 1)  # (T, B, H)
        sat_ref = (a.abs() > limit) if spec.gate_kind(gate) == "tanh" else (a < low) | (a > high)
        expected = sat_ref.sum(-1).to(torch.float32) * valid
        assert float(expected.sum()) > 0
        torch.testing.assert_close(sat[q], expected, rtol=0, atol=0, msg=lambda m, gate=gate: f"gate {gate}: {m}")


def _layer_outputs(cell, activation, lengths):
    def layer(x, h0, c0, *ws):
        out, h_n, c_n = engine.run(cell, x, h0, c0, tuple(ws), lengths=lengths, activation=activation,
                                   engine="fused")
        return [t for t in (out, h_n, c_n) if t is not None]

    return layer


@pytest.mark.parametrize("cell,activation", CELLS)
def test_compiled_equals_eager(cell, activation):
    """torch.compile (default backend, one graph) of the fused forward + backward == eager: outputs, gradients,
    and outputs without gradients (the inference path)."""
    layer = _layer_outputs(cell, activation, torch.tensor([6, 3, 5]))
    compiled = torch.compile(layer, fullgraph=True)
    results = []
    for fn in (layer, compiled):
        x, h0, c0, ws = _small_layer(cell, torch.float32)
        leaves = [t.requires_grad_() for t in (x, h0, c0, *ws) if t is not None]
        outs = fn(x, h0, c0, *ws)
        grads = torch.autograd.grad(_loss(outs), leaves)
        with torch.no_grad():
            infer = fn(x, h0, c0, *ws)
        results.append([*outs, *grads, *infer])
    assert len(results[0]) == len(results[1])
    for k, (a, b) in enumerate(zip(*results, strict=True)):
        _close(b, a, torch.float32, f"compiled vs eager, tensor {k}")


def test_compiled_with_taps_records_the_same():
    """Taps are filled under torch.compile too (the Function that fills them runs eagerly there)."""
    layer_taps = []

    def layer(x, h0, c0, *ws):
        taps = StepTaps()
        layer_taps.append(taps)
        return engine.run("lstm", x, h0, c0, tuple(ws), lengths=torch.tensor([6, 3, 5]), engine="fused",
                          taps=taps)

    for fn in (layer, torch.compile(layer, backend="aot_eager")):
        x, h0, c0, ws = _small_layer("lstm")
        torch.autograd.grad(_loss(fn(x, h0, c0, *[w.requires_grad_() for w in ws])), ws)
    eager, comp = (t.finalize() for t in layer_taps)
    assert comp.filled_backward and set(comp.saturated) == set(eager.saturated) == {"i", "f", "g", "o"}
    for k in eager.saturated:
        torch.testing.assert_close(comp.saturated[k], eager.saturated[k], rtol=0, atol=0)
    _close(comp.grad_h_sq, eager.grad_h_sq, torch.float64, "grad_h_sq")
    _close(comp.grad_c_sq, eager.grad_c_sq, torch.float64, "grad_c_sq")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("generic", [False, True], ids=["cpu-kernel", "generic-route"])
def test_opcheck(cell, generic):
    """torch.library.opcheck: schema, fake (meta) shapes, and tracing under AOTAutograd of both operators."""
    x, h0, c0, ws = _small_layer(cell)
    lengths = torch.tensor([6, 3, 5])
    rmask = torch.full_like(h0, 1.25)
    ops = fused.load()
    thr = list(cells.saturation_thresholds())
    fwd = (cell, x, h0, c0, *ws, lengths, rmask, False, thr, True, True, generic)
    torch.library.opcheck(ops.forward.default, fwd)
    out, h_n, _, A, C, S, _ = ops.forward(*fwd)
    g = torch.Generator().manual_seed(12)
    grads = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (out, h_n, h_n)]
    bwd = (cell, grads[0], grads[1], grads[2] if cell == "lstm" else None, x, h0, c0, ws[0], ws[1], lengths, rmask,
           False, A if A.numel() else out, C, S, True, True, generic)
    torch.library.opcheck(ops.backward.default, bwd)
