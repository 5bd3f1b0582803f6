"""The GPU engine (Triton step kernels, ``lstmlab.engine.gpu``) against the reference engine and torch.nn.

Without a GPU every test runs the very kernels that CUDA runs, in Triton's interpreter on CPU
tensors: the engine imports a second, interpreted copy of its kernel module with
``TRITON_INTERPRET=1`` set only during that import (``test_interpreter_does_not_leak`` checks that
the variable is gone afterwards).  With a GPU the same tests also run on it (marked ``cuda``).
Without the ``triton`` package (installed by the ``test`` extra) the module is skipped with that
reason.  Shapes are small: the interpreter costs about 0.1 s per kernel launch.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

pytest.importorskip("triton", reason="triton is not installed; `pip install -e '.[test]'` installs it")

from lstmlab import cells, engine  # noqa: E402
from lstmlab.engine import StepTaps, gpu, reference  # noqa: E402

F64, F32 = torch.float64, torch.float32
TOL = {F64: {"rtol": 1e-10, "atol": 1e-10}, F32: {"rtol": 1e-5, "atol": 1e-5}}
CELLS = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]
LENGTHS = [6, 3, 5, 1, 6]  # B = 5, T = 6: full, partial and length-1 sequences
NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
DEVICES = [pytest.param("cpu", id="interpreter"), pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, NO_CUDA])]
cell_ids = [f"{c}-{a}" for c, a in CELLS]


class Problem:
    """Random inputs and weights for one layer direction, on ``device``, as leaves that need grad."""

    def __init__(self, cell, dtype, device, *, batch=5, steps=6, inp=3, hidden=7, scale=2.0, rmask=False, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.spec = cells.get(cell)
        rows = self.spec.n_gates * hidden

        def leaf(*shape, std=1.0):
            return (std * torch.randn(*shape, dtype=dtype, generator=g)).to(device).requires_grad_()

        self.cell, self.dtype, self.device, self.hidden = cell, dtype, device, hidden
        self.x = leaf(batch, steps, inp)
        self.h0, self.c0 = leaf(batch, hidden, std=0.5), leaf(batch, hidden, std=0.5)
        self.weights = [leaf(rows, inp, std=scale / inp ** 0.5), leaf(rows, hidden, std=scale / hidden ** 0.5),
                        leaf(rows, std=0.5), leaf(rows, std=0.5)]
        self.rmask = None
        if rmask:
            keep = torch.rand(batch, hidden, generator=g) > 0.25
            self.rmask = (keep.to(dtype) / 0.75).to(device)

    def states(self):
        return [self.h0, self.c0][:len(self.spec.states)]

    def leaves(self):
        return [self.x, *self.states(), *self.weights]

    def run(self, mod, activation="tanh", lengths=None, taps=None):
        """One call of an engine module (its function for this cell); returns its outputs as a list."""
        out, final = engine.call(mod, self.spec, self.x, self.states(), self.weights, lengths, self.rmask, activation,
                                 taps)
        return [out, *final]


def _loss(outputs):
    """A loss that gives every output element a different gradient."""
    total = 0
    for k, t in enumerate(outputs):
        w = torch.randn(t.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(10 + k))
        total = total + (t * w.to(t.device, t.dtype)).sum()
    return total


def _record(prob, mod, activation="tanh", lengths=None):
    """Outputs, gradients of every leaf and every taps field of one engine, by name, on the CPU."""
    taps = StepTaps()
    outs = prob.run(mod, activation, lengths, taps)
    return _collect(prob, outs, torch.autograd.grad(_loss(outs), prob.leaves()), taps)


def _collect(prob, outs, grads, taps):
    taps.finalize()
    rec = {name: t for name, t in zip(("out", "h_n", "c_n"), outs)}
    rec.update({f"grad {k}": g for k, g in enumerate(grads)})
    rec.update({f"saturated {k}": v for k, v in taps.saturated.items()})
    rec["grad_h_sq"] = taps.grad_h_sq
    if taps.grad_c_sq is not None:
        rec["grad_c_sq"] = taps.grad_c_sq
    assert taps.filled_backward and taps.units == prob.hidden
    return {k: v.detach().cpu() for k, v in rec.items()}


def _compare(got: dict, want: dict, dtype, device="cpu"):
    assert sorted(got) == sorted(want)
    for name in want:
        tol = TOL[dtype]
        if name.startswith("saturated"):  # counts; a CUDA exp may move a value across a threshold by one ulp
            tol = {"rtol": 0, "atol": 1 if device == "cuda" and dtype == F32 else 0}
        torch.testing.assert_close(got[name], want[name].to(got[name].dtype), **tol,
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variable", [False, True], ids=["full", "lengths+rmask"])
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,activation", CELLS, ids=cell_ids)
def test_matches_reference_engine(cell, activation, dtype, variable, device):
    """Outputs, final states, all gradients and every taps field equal the NumPy oracle's."""
    prob = Problem(cell, dtype, device, rmask=variable)
    lengths = torch.tensor(LENGTHS) if variable else None
    got = _record(prob, gpu, activation, lengths)
    want = _record(prob, reference, activation, lengths)
    _compare(got, want, dtype, device)
    assert sum(float(v.sum()) for k, v in got.items() if k.startswith("saturated")) > 0, \
        "no saturated unit at all: the saturation taps were not exercised"
    if variable:  # padded steps record nothing and output zeros
        pad = torch.arange(6).unsqueeze(1) >= torch.tensor(LENGTHS)
        assert all(float(v[pad].abs().sum()) == 0 for k, v in got.items() if k.startswith("saturated"))
        assert float(got["out"].transpose(0, 1)[pad].abs().sum()) == 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_several_tiles(cell, device):
    """Batch 10 and hidden 150 need several (batch, hidden) tiles: the taps' partial sums add up."""
    prob = Problem(cell, F64, device, batch=10, steps=3, hidden=150, scale=1.5, rmask=True)
    lengths = torch.tensor([3, 1, 2, 3, 3, 2, 1, 3, 2, 3])
    _compare(_record(prob, gpu, lengths=lengths), _record(prob, reference, lengths=lengths), F64, device)


def _torch_module(cell, activation, inp, hidden, dtype, device, bidirectional=False):
    torch.manual_seed(1)
    kw = dict(batch_first=True, bidirectional=bidirectional)
    if cells.get(cell).uses_activation:
        kw["nonlinearity"] = activation
    return getattr(torch.nn, cells.get(cell).torch_name)(inp, hidden, **kw).to(device, dtype)


def _weights(m, suffix=""):
    return tuple(getattr(m, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell,activation", CELLS, ids=cell_ids)
def test_matches_torch_nn(cell, activation, dtype, device):
    prob = Problem(cell, dtype, device, inp=4, hidden=9)
    m = _torch_module(cell, activation, 4, 9, dtype, device)
    prob.weights = list(m.parameters())
    hx = tuple(s[None] for s in prob.states())
    ref_out, ref_state = m(prob.x, hx if prob.spec.has_cell_state else hx[0])
    ref = [ref_out, *(s[0] for s in (ref_state if prob.spec.has_cell_state else (ref_state,)))]
    got = prob.run(gpu, activation)
    for name, a, b in zip(("out", "h_n", "c_n")[:len(ref)], got, ref, strict=True):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda msg, name=name: f"{name}: {msg}")
    grads = torch.autograd.grad(_loss(got), prob.leaves())
    ref_grads = torch.autograd.grad(_loss(ref), prob.leaves())
    for k, (a, b) in enumerate(zip(grads, ref_grads, strict=True)):
        torch.testing.assert_close(a, b, **TOL[dtype], msg=lambda msg, k=k: f"grad {k}: {msg}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_bidirectional_packed(cell, device):
    """engine.run(engine="gpu") forward + reverse with lengths == a bidirectional torch module on a
    PackedSequence, and the reversed direction's taps == the reference engine's on the original time axis."""
    lengths = torch.tensor(LENGTHS)
    m = _torch_module(cell, "tanh", 3, 6, F64, device, bidirectional=True)
    prob = Problem(cell, F64, device, hidden=6)
    h0 = torch.stack([prob.h0, 2 * prob.h0])
    c0 = torch.stack([prob.c0, -prob.c0])
    packed = pack_padded_sequence(prob.x, lengths, batch_first=True, enforce_sorted=False)
    lstm_like = prob.spec.has_cell_state
    po, state = m(packed, (h0, c0) if lstm_like else h0)
    ref = [pad_packed_sequence(po, batch_first=True, total_length=6)[0], state[0] if lstm_like else state]
    got, taps = [], {}
    for name in ("gpu", "reference"):
        outs = []
        for d, suffix in enumerate(("", "_reverse")):
            taps[name, d] = StepTaps()
            outs.append(engine.run(cell, prob.x, h0[d], c0[d] if lstm_like else None,
                                   _weights(m, suffix), lengths=lengths, reverse=bool(d), engine=name,
                                   taps=taps[name, d]))
        got.append([torch.cat([o[0] for o in outs], -1), torch.stack([o[1] for o in outs])])
    for a, b in zip(got[0], ref, strict=True):
        torch.testing.assert_close(a, b, **TOL[F64])
    wrt = list(m.parameters()) + [prob.x]
    for a, b in zip(torch.autograd.grad(_loss(got[0]), wrt), torch.autograd.grad(_loss(ref), wrt), strict=True):
        torch.testing.assert_close(a, b, **TOL[F64])
    torch.autograd.grad(_loss(got[1]), wrt)  # the reference engine's backward fills its taps
    for d in (0, 1):
        mine, oracle = taps["gpu", d].finalize(), taps["reference", d].finalize()
        torch.testing.assert_close(mine.grad_h_sq, oracle.grad_h_sq, **TOL[F64])
        for k in oracle.saturated:
            torch.testing.assert_close(mine.saturated[k], oracle.saturated[k], rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell,activation", CELLS[:3], ids=cell_ids[:3])
def test_inference_records_saturation_only(cell, activation, device):
    prob = Problem(cell, F32, device)
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        mine, oracle = StepTaps(), StepTaps()
        got = prob.run(gpu, activation, lengths, mine)
        want = prob.run(reference, activation, lengths, oracle)
    for a, b in zip(got, want, strict=True):
        assert not a.requires_grad
        torch.testing.assert_close(a, b, **TOL[F32])
    assert not mine.filled_backward and mine.grad_h_sq is None and mine.units == prob.hidden
    for k in oracle.saturated:
        torch.testing.assert_close(mine.saturated[k], oracle.saturated[k], rtol=0, atol=0)


class _Rerun:
    """A CUDA graph's stand-in on the CPU: built like one (a first run), replay() runs the loop again
    on the same buffers -- so the graph path's buffer handling is tested without a GPU."""

    def __init__(self, run):
        self.run = run
        run()

    def replay(self):
        self.run()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell,activation,variable", [(c, a, True) for c, a in CELLS] + [("lstm", "tanh", False)],
                         ids=[*cell_ids, "lstm-full"])
def test_graph_path_matches_eager(cell, activation, variable, device, monkeypatch):
    """Through per-shape graph buffers, two interleaved calls of one shape (forward A, forward B,
    backward B, backward A) give what the eager loops give."""
    from lstmlab.engine.gpu import graphs

    lengths = torch.tensor(LENGTHS) if variable else None
    probs = [Problem(cell, F64, device, rmask=variable, seed=seed) for seed in (0, 1)]
    want = [_record(prob, gpu, activation, lengths) for prob in probs]
    monkeypatch.setattr(graphs, "_CACHE", type(graphs._CACHE)())
    if device == "cpu":
        monkeypatch.setattr(graphs, "enabled", lambda dev: True)
        monkeypatch.setattr(graphs, "_capture", _Rerun)
    else:
        monkeypatch.setenv("LSTMLAB_GPU_GRAPHS", "1")
    taps = [StepTaps(), StepTaps()]
    outs = [prob.run(gpu, activation, lengths, tp) for prob, tp in zip(probs, taps)]
    grads = {k: torch.autograd.grad(_loss(outs[k]), probs[k].leaves()) for k in (1, 0)}
    assert len(graphs._CACHE) == 2  # one forward and one backward graph for the shape
    for k in (0, 1):
        _compare(_collect(probs[k], outs[k], grads[k], taps[k]), want[k], F64, device)


# Mixed precision: under autocast the GEMMs and the saved gates / hidden states are half precision,
# the cell state and the taps float32.  Bounds against the float32 reference on these shapes
# (T = 6, unit-scale weights), relative to the largest reference value: 3-5x the largest deviation
# measured on the interpreter over 4 seeds (bf16: out 0.012, grads 0.025, grad_h_sq 0.013;
# f16: out 0.0009, grads 0.0019, grad_h_sq 0.0005).
AMP_BOUNDS = {torch.bfloat16: {"out": 0.04, "grad": 0.08, "taps": 0.05},
              torch.float16: {"out": 0.004, "grad": 0.008, "taps": 0.002}}


def _max_rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-6))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16], ids=["bf16", "f16"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_autocast_mixed_precision(cell, half, device):
    prob = Problem(cell, F32, device, scale=1.0)
    lengths = torch.tensor(LENGTHS)
    want = _record(prob, reference, lengths=lengths)
    taps = StepTaps()
    with torch.autocast(device, dtype=half):
        outs = prob.run(gpu, lengths=lengths, taps=taps)
    assert all(o.dtype == half for o in outs)
    grads = torch.autograd.grad(_loss([o.float() for o in outs]), prob.leaves())
    taps.finalize()
    assert all(g.dtype == F32 for g in grads) and taps.grad_h_sq.dtype == F32
    bound = AMP_BOUNDS[half]
    for name, o in zip(("out", "h_n", "c_n"), outs):
        assert _max_rel(o.cpu(), want[name]) < bound["out"], name
    for k, g in enumerate(grads):
        assert _max_rel(g.cpu(), want[f"grad {k}"]) < bound["grad"], f"grad {k}"
    assert _max_rel(taps.grad_h_sq.cpu(), want["grad_h_sq"]) < bound["taps"]


def test_second_backward_is_refused():
    prob = Problem("lstm", F32, "cpu", steps=2)
    out = prob.run(gpu)[0]
    out.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        out.sum().backward()


def test_bad_lengths_are_refused():
    prob = Problem("gru", F32, "cpu", steps=3)
    with pytest.raises(ValueError, match=r"lengths: expected values in \[1, 3\].*max 4"):
        prob.run(gpu, lengths=torch.tensor([3, 1, 4, 2, 3]))


def test_interpreter_does_not_leak():
    """Loading the interpreted kernels leaves TRITON_INTERPRET as it was."""
    from lstmlab.engine.gpu import plan

    before = os.environ.get("TRITON_INTERPRET")
    plan._KERNELS.pop("interpreted", None)
    mod = plan.kernels(torch.device("cpu"))
    assert os.environ.get("TRITON_INTERPRET") == before
    assert type(mod.lstm_fwd).__name__ == "InterpretedFunction"


_POINTERS = {"LEN": "*i32", "SAT": "*fp32", **{n: "*acc" for n in ("C0", "CS", "DHC", "DC", "PH", "PC", "THR")}}


def _compile_sm90(fn, io: str, acc: str, flags: dict) -> int:
    """Compile one kernel variant to a cubin for sm_90 (H100 / H200); returns the cubin's size."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig, consts = {}, {}
    for a in fn.arg_names:
        if a in ("t", "B", "T", "H"):
            sig[a] = "i32"
        elif a.isupper() and a not in flags:
            sig[a] = _POINTERS.get(a, "*io").replace("acc", acc).replace("io", io)
        else:
            sig[a], consts[a] = "constexpr", flags[a]
    kernel = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    return len(kernel.asm["cubin"])


@pytest.mark.parametrize("io,acc", [("fp32", "fp32"), ("bf16", "fp32"), ("fp64", "fp64")])
def test_compiled_kernels_build_for_sm90(io, acc):
    """The compiled (not interpreted) kernels type-check and assemble for sm_90 with Triton's own LLVM
    and ptxas, no GPU needed: the interpreter runs Python and would not catch a compile error."""
    import triton.language as tl

    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"this triton has no ASTSource / GPUTarget: {exc}")
    from lstmlab.engine.gpu import kernels as K

    if type(K.lstm_fwd).__name__ != "JITFunction":
        pytest.skip("TRITON_INTERPRET is set for the whole process: no compiled kernels to build")
    base = dict(HAS_LEN=True, HAS_RMASK=True, TAPS=True, ACC=getattr(tl, {"fp32": "float32", "fp64": "float64"}[acc]),
                BLOCK_B=8, BLOCK_H=128, HAS_OUT=True, SAVE=True)
    variants = [(K.lstm_fwd, None), (K.lstm_bwd, None), (K.gru_fwd, None), (K.gru_bwd, None),
                (K.rnn_fwd, False), (K.rnn_fwd, True), (K.rnn_bwd, False), (K.rnn_bwd, True)]
    if io != "fp32":  # the dtype-dependent code paths: loads, stores and the sums of every kernel kind
        variants = [variants[k] for k in (0, 3, 7)]
    for fn, relu in variants:
        flags = {k: v for k, v in dict(base, RELU=relu).items() if k in fn.arg_names}
        assert _compile_sm90(fn, io, acc, flags) > 1000, fn.__name__


def test_every_cell_of_the_table_has_steps_and_kernels():
    """A cell added to lstmlab.cells without its Steps entry or its two kernels fails here, not at a first call."""
    from lstmlab.engine.gpu import plan, steps

    k = plan.kernels(torch.device("cpu"))
    for spec in cells.CELLS.values():
        kind = steps.of(spec)
        assert kind.spec is spec
        assert [kind.kernel(k, d).__name__ for d in ("fwd", "bwd")] == [f"{spec.name}_fwd", f"{spec.name}_bwd"]


def test_launcher_names_a_missing_buffer():
    """Kernel arguments are bound to buffers by name: a required one that is missing is named, not replaced."""
    from lstmlab.engine.gpu import loops, plan

    p = plan.make_plan(cells.LSTM, torch.zeros(2, 3, 4), 5, None, None, False, True)
    b = loops.fwd_buffers(p, torch.device("cpu"), save=True)
    fwd = plan.kernels(torch.device("cpu")).lstm_fwd
    loops.launcher(fwd, p, {**b, "h0": b["rec"], "c0": b["rec"]})  # optional ones (HR, RMASK, LEN) absent: fine
    del b["cs"]
    with pytest.raises(KeyError, match="lstm_fwd: no buffer 'cs' for its argument CS"):
        loops.launcher(fwd, p, {**b, "h0": b["rec"], "c0": b["rec"]})
