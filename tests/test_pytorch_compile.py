"""torch.compile and torch.export on models holding lstmlab layers: compiled == eager (outputs and
gradients, 1e-5) on every engine that can be traced; value checks skipped only while tracing."""

import importlib.util

import pytest
import torch

import lstmlab as ll
from lstmlab.layers import modes

TOL = {"atol": 1e-5, "rtol": 1e-5}


class Net(torch.nn.Module):
    def __init__(self, engine: str):
        super().__init__()
        self.bi = ll.Bidirectional(ll.GRU(4, return_sequences=True, engine=engine))
        self.lstm = ll.LSTM(5, return_sequences=True, engine=engine)
        self.rnn = ll.SimpleRNN(3, return_sequences=True, activation="relu", engine=engine)
        self.att = ll.Attention()
        self.dense = ll.Dense(2)

    def forward(self, x):
        return self.dense(self.att(self.rnn(self.lstm(self.bi(x)))))


def _net(engine: str, build: bool = True) -> Net:
    torch.manual_seed(0)
    net = Net(engine)
    if build:
        net(torch.randn(2, 3, 3))
    return net


def _compare(net: torch.nn.Module, compiled, x: torch.Tensor) -> None:
    params = list(net.parameters())
    eager = net(x)
    fast = compiled(x)
    torch.testing.assert_close(fast, eager, **TOL)
    g_eager = torch.autograd.grad(eager.square().sum(), params)
    g_fast = torch.autograd.grad(fast.square().sum(), params)
    for a, b in zip(g_fast, g_eager):
        torch.testing.assert_close(a, b, **TOL)


# Dynamo + AOT autograd (fake-tensor tracing, the joint graph) for every engine; Inductor's C++
# code generation (minutes on a small CPU, nothing lstmlab-specific in it) with -m slow.
@pytest.mark.parametrize("engine,backend", [pytest.param("native", "inductor", marks=pytest.mark.slow),
                                            pytest.param("loop", "inductor", marks=pytest.mark.slow),
                                            ("native", "aot_eager"), ("loop", "aot_eager"), ("auto", "aot_eager")])
def test_compiled_equals_eager_outputs_and_gradients(engine, backend):
    torch._dynamo.reset()
    net = _net(engine)
    _compare(net, torch.compile(net, backend=backend), torch.randn(4, 6, 3))


@pytest.mark.skipif(not modes.fused_traceable(),
                    reason="the fused engine is not built here (no C++ compiler), or its operators lack fake kernels")
def test_compiled_fused_engine_equals_eager():
    torch._dynamo.reset()
    net = _net("fused")
    _compare(net, torch.compile(net, backend="aot_eager"), torch.randn(4, 6, 3))


def test_sequential_compiles_and_exports():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = ll.Sequential([ll.LSTM(6, return_sequences=True, engine="native"), ll.GRU(4, engine="native"),
                           ll.Dense(2, activation="softmax")])
    x = torch.randn(3, 5, 2)
    model(x)
    _compare(model, torch.compile(model, backend="aot_eager"), x)
    program = torch.export.export(model.eval(), (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), **TOL)


def test_compiling_an_unbuilt_model_materialises_it_like_eager():
    torch._dynamo.reset()
    net = _net("loop", build=False)
    x = torch.randn(4, 6, 3)
    out = torch.compile(net, backend="aot_eager")(x)
    assert all(p.shape.numel() > 0 for p in net.parameters())
    torch.testing.assert_close(out, net(x), **TOL)


def test_loop_engine_with_lengths_compiles():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = ll.LSTM(4, return_sequences=True, engine="loop", input_size=3)
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    compiled = torch.compile(layer, backend="aot_eager")
    torch.testing.assert_close(compiled(x, lengths=lengths), layer(x, lengths=lengths), **TOL)


def test_value_checks_run_in_eager_and_are_skipped_only_while_tracing():
    torch._dynamo.reset()
    layer = ll.LSTM(3, engine="loop", input_size=2)
    x = torch.randn(2, 4, 2)
    x[1, 2, 0] = float("nan")
    with pytest.raises(ll.InputError, match="NaN/Inf at index"):
        layer(x)
    out = torch.compile(layer, backend="aot_eager")(x)  # traced: no data-dependent check in the graph
    assert torch.isnan(out[1]).any() and torch.isfinite(out[0]).all()
    with pytest.raises(ll.InputError, match="NaN/Inf at index"):
        layer(x)  # still refused in eager after compiling
    with pytest.raises(ll.InputError, match=r"lengths: expected every length in \[1, 4\]"):
        layer(torch.randn(2, 4, 2), lengths=torch.tensor([4, 9]))


def test_reference_engine_is_eager_only_with_a_clear_error():
    torch._dynamo.reset()
    layer = ll.GRU(3, engine="reference", input_size=2)
    x = torch.randn(2, 4, 2)
    layer(x)  # eager works
    with pytest.raises(Exception, match="engine='reference' runs in NumPy and is eager-only"):
        torch.compile(layer, backend="eager", fullgraph=True)(x)


@pytest.mark.parametrize("engine", ["native", "auto"])
def test_export_equals_eager(engine, tmp_path):
    net = _net(engine).eval()
    x = torch.randn(4, 6, 3)
    program = torch.export.export(net, (x,))
    path = tmp_path / "net.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), **TOL)
        torch.testing.assert_close(program.module()(torch.randn(4, 6, 3) * 0 + x), net(x), **TOL)
    ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("lstmlab" in op for op in ops), ops  # torch's own ops only: portable


def test_export_of_to_torch_equals_the_lstmlab_stack():
    torch.manual_seed(0)
    model = ll.Sequential([ll.LSTM(4, return_sequences=True, input_size=3), ll.LSTM(4, return_sequences=True)])
    x = torch.randn(2, 5, 3)
    with pytest.raises(RuntimeError, match="no weights yet"):
        ll.to_torch(model)
    model(x)
    mod = ll.to_torch(model).eval()
    program = torch.export.export(mod, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x)[0], model(x), **TOL)


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="onnx / onnxscript not installed: ONNX export is documented, torch.export is tested")
def test_onnx_export_runs(tmp_path):  # pragma: no cover - needs the optional onnx packages
    net = _net("native").eval()
    torch.onnx.export(net, (torch.randn(4, 6, 3),), str(tmp_path / "net.onnx"), dynamo=True)
    assert (tmp_path / "net.onnx").stat().st_size > 0
