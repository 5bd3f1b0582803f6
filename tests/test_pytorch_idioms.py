"""The PyTorch idioms users expect of any nn.Module, on a user's module holding lstmlab layers."""

import copy
import io
import warnings

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import lstmlab as ll
from lstmlab.layers import modes

TOL = {"atol": 1e-5, "rtol": 1e-5}


class Net(torch.nn.Module):
    def __init__(self, engine: str = "auto", dropout: float = 0.0):
        super().__init__()
        self.bi = ll.Bidirectional(ll.GRU(4, return_sequences=True, engine=engine, dropout=dropout))
        self.lstm = ll.LSTM(5, return_sequences=True, engine=engine)
        self.att = ll.Attention()
        self.head = torch.nn.Linear(5, 1)

    def forward(self, x):
        return self.head(self.att(self.lstm(self.bi(x))))


def _net(engine: str = "auto", dropout: float = 0.0, build: bool = True) -> Net:
    torch.manual_seed(0)
    net = Net(engine, dropout)
    if build:
        net(torch.randn(2, 3, 3))
    return net


X = torch.randn(4, 6, 3)


@pytest.mark.parametrize("build", [False, True])
def test_deepcopy_is_independent_and_equal(build):
    net = _net(build=build)
    clone = copy.deepcopy(net)
    if not build:
        torch.manual_seed(1)
        net(X)
        torch.manual_seed(1)
        clone(X)  # the copy materialises its own parameters, with the same draws
    assert all(a is not b for a, b in zip(net.parameters(), clone.parameters()))
    torch.testing.assert_close(clone(X), net(X))
    with torch.no_grad():
        clone.lstm.weight_hh.add_(1.0)
    assert not torch.allclose(clone(X), net(X))


def test_torch_save_and_load_of_a_whole_user_module_after_recording_taps():
    net = _net()
    net.lstm.record_taps = True
    net(X).sum().backward()  # the taps hold closures: they must not block pickling
    assert net.lstm.last_taps
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.lstm.last_taps == {}
    torch.testing.assert_close(back(X), net(X))
    buf = io.BytesIO()
    torch.save(_net(build=False), buf)  # unbuilt modules pickle too
    buf.seek(0)
    unbuilt = torch.load(buf, weights_only=False)
    assert not unbuilt.lstm.built and unbuilt(X).shape == (4, 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_half_and_double_convert_every_weight(dtype):
    net = _net()
    ref = net(X)
    conv = net.double() if dtype == torch.float64 else net.half()
    assert {p.dtype for p in conv.parameters()} == {dtype}
    out = conv(X.to(dtype))
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref.double(), atol=1e-2 if dtype == torch.float16 else 1e-5, rtol=0)


def test_requires_grad_false_freezes_lstmlab_weights_even_before_the_first_call():
    net = _net(build=False)
    net.lstm.requires_grad_(False)
    net(X).sum().backward()
    assert not any(p.requires_grad for p in net.lstm.parameters())
    assert all(p.grad is None for p in net.lstm.parameters())
    assert all(p.grad is not None for p in net.bi.parameters())


def test_functional_call_uses_the_given_weights():
    net = _net(engine="loop")
    params = {k: v.detach() * 0.5 for k, v in net.named_parameters()}
    out = torch.func.functional_call(net, params, (X,))
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    torch.testing.assert_close(out, twin(X))
    assert not torch.allclose(out, net(X))


def test_torch_func_grad_and_vmap():
    torch.manual_seed(0)
    layer = ll.LSTM(4, input_size=3)  # engine "auto": the loop engine under torch.func transforms
    params = dict(layer.named_parameters())

    def loss(p):
        return torch.func.functional_call(layer, p, (X,)).square().sum()

    grads = torch.func.grad(loss)(params)
    for name, ref in zip(params, torch.autograd.grad(loss(params), list(params.values()))):
        torch.testing.assert_close(grads[name], ref, **TOL)
    per_row = torch.func.vmap(lambda xi: layer(xi.unsqueeze(0))[0])(X)
    torch.testing.assert_close(per_row, layer(X), **TOL)
    with pytest.raises(RuntimeError, match="engine='fused' does not support torch.func"):
        torch.func.vmap(ll.LSTM(4, engine="fused", input_size=3))(X.unsqueeze(1))


def test_jit_script_gives_a_clear_error():
    with pytest.raises(RuntimeError, match="not TorchScript-able.*torch.compile.*to_torch"):
        torch.jit.script(_net())
    torch.jit.script(ll.to_torch(ll.Sequential([ll.LSTM(3, return_sequences=True, input_size=2)])))


def test_eval_disables_dropout_and_train_enables_it():
    net = _net(dropout=0.5)
    net.eval()
    assert torch.equal(net(X), net(X))
    net.train()
    assert not torch.equal(net(X), net(X))
    assert all(not m.training for m in net.eval().modules())


def test_forward_hooks_named_modules_and_zero_grad():
    net = _net()
    seen = []
    handle = net.lstm.register_forward_hook(lambda mod, args, out: seen.append(tuple(out.shape)))
    net(X).sum().backward()
    handle.remove()
    net(X)
    assert seen == [(4, 6, 5)]
    names = dict(net.named_modules())
    assert isinstance(names["bi.forward_layer"], ll.GRU) and isinstance(names["att"], ll.Attention)
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("engine", ["auto", "native", "loop", "fused"])
def test_gradient_checkpointing_gives_the_plain_gradients(engine):
    net = _net(engine=engine, dropout=0.3)  # dropout: checkpoint must replay the same masks
    xa = X.clone().requires_grad_()
    torch.manual_seed(3)
    checkpoint(net, xa, use_reentrant=False).square().sum().backward()
    grads = [xa.grad.clone()] + [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    xa.grad = None
    torch.manual_seed(3)
    net(xa).square().sum().backward()
    for a, b in zip(grads, [xa.grad] + [p.grad for p in net.parameters()]):
        torch.testing.assert_close(a, b, **TOL)


def _autocast(net: torch.nn.Module, x: torch.Tensor):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
    return out, [str(w.message) for w in caught if "autocast" in str(w.message)]


# native: torch.lstm under autocast computes in bf16; loop: its matrix products run in bf16 and the
# carried state stays in the float32 of the initial state
@pytest.mark.parametrize("engine,dtype", [("native", torch.bfloat16), ("loop", torch.float32)])
def test_autocast_bf16_runs_torch_engines_in_reduced_precision(engine, dtype):
    net = ll.LSTM(8, return_sequences=True, engine=engine, input_size=3).eval()
    out, notes = _autocast(net, X)
    assert out.dtype == dtype and notes == []
    torch.testing.assert_close(out.float(), net(X), atol=3e-2, rtol=0)


def test_autocast_auto_engine_falls_back_to_native_kernels_with_one_note():
    modes._NOTED.clear()
    net = _net().eval()
    out, notes = _autocast(net, X)
    assert out.dtype == torch.bfloat16
    assert len(notes) == 1 and "native kernels" in notes[0]
    _, again = _autocast(net, X)
    assert again == []  # one-time note
    torch.testing.assert_close(out.float(), net(X), atol=3e-2, rtol=0)


def test_autocast_with_taps_runs_the_time_loop_in_float32_with_one_note():
    modes._NOTED.clear()
    layer = ll.LSTM(6, return_sequences=True, engine="fused", input_size=3)
    layer.record_taps = True
    out, notes = _autocast(layer, X)
    assert out.dtype == torch.float32 and len(notes) == 1 and "float32" in notes[0]
    out.sum().backward()
    assert layer.last_taps["forward"].finalize().filled_backward
    torch.testing.assert_close(out, layer(X), **TOL)  # the same float32 computation


def test_packed_sequence_input_is_refused_with_a_hint():
    packed = torch.nn.utils.rnn.pack_padded_sequence(X, torch.tensor([6, 5, 3, 2]), batch_first=True)
    for layer in (ll.GRU(3), ll.GRU(3, input_size=3)):
        with pytest.raises(ll.InputError, match="PackedSequence pass the padded tensor and lengths="):
            layer(packed)


_LAYERS = [lambda: ll.LSTM(4, return_sequences=True), lambda: ll.GRU(4, use_bias=False),
           lambda: ll.SimpleRNN(3, engine="loop"), lambda: ll.LSTM(4, engine="fused"),
           lambda: ll.Bidirectional(ll.LSTM(2, return_sequences=True)), lambda: ll.Dense(3), lambda: ll.Attention()]


@pytest.mark.parametrize("built", [False, True])
@pytest.mark.parametrize("make", _LAYERS)
def test_meta_tensors_give_the_shapes_of_a_real_run(make, built):
    expected = make()(X).shape
    layer = make()
    if built:
        layer.build(tuple(X.shape))
    layer.to("meta")  # unbuilt: its tensors stay lazy, on meta (torch would swap in empty plain ones)
    out = layer(X.to("meta"))  # value checks skipped: meta tensors have no values
    assert out.device.type == "meta" and out.shape == expected
    assert {t.device.type for t in [*layer.parameters(), *layer.buffers()]} == {"meta"}


def test_deferred_init_on_meta_then_to_empty_and_load_state_dict():
    src = _net()
    with torch.device("meta"):
        net = Net()
    net(X.to("meta"))  # sizes the weights without allocating them
    net.to_empty(device="cpu").load_state_dict(src.state_dict())
    torch.testing.assert_close(net(X), src(X), **TOL)
    with pytest.raises(ll.InputError, match="finite"):
        net(X.masked_fill(X > 1, float("nan")))  # on real tensors the value checks run again


def test_weight_norm_parametrization_full_backward_hook_and_clip_grad_norm():
    net = _net()
    plain = net(X)
    torch.nn.utils.parametrizations.weight_norm(net.lstm, "weight_hh")  # g * v / |v| == the weight at first
    grads = []
    net.lstm.register_full_backward_hook(lambda mod, gin, gout: grads.append(gout[0].shape))
    out = net(X)
    torch.testing.assert_close(out, plain, **TOL)
    out.pow(2).sum().backward()
    assert grads == [(4, 6, 5)]
    orig = net.lstm.parametrizations.weight_hh
    assert orig.original0.grad is not None and orig.original1.grad.abs().sum() > 0
    total = torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-3)
    norm = torch.cat([p.grad.flatten() for p in net.parameters()]).norm()
    assert total > 1e-3 and torch.isclose(norm, torch.tensor(1e-3), rtol=1e-3)


def test_averaged_model_averages_lstmlab_weights():
    a, b = _net(), _net()
    with torch.no_grad():
        b.lstm.weight_hh.add_(1.0)
    avg = torch.optim.swa_utils.AveragedModel(a)
    avg.update_parameters(a)  # the first update copies
    avg.update_parameters(b)  # the second averages
    mean = (a.lstm.weight_hh + b.lstm.weight_hh) / 2
    torch.testing.assert_close(avg.module.lstm.weight_hh, mean)
    with torch.no_grad():
        a.lstm.weight_hh.copy_(mean)
    torch.testing.assert_close(avg(X), a(X), **TOL)


def test_an_ensemble_with_stack_module_state_and_vmap_equals_each_member():
    members = [_net() for _ in range(3)]
    for i, m in enumerate(members[1:], 1):
        with torch.no_grad():
            m.lstm.weight_hh.mul_(1 + i)
    params, buffers = torch.func.stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")
    out = torch.vmap(lambda p, b: torch.func.functional_call(base, (p, b), (X,)))(params, buffers)
    for i, m in enumerate(members):
        torch.testing.assert_close(out[i], m(X), **TOL)
