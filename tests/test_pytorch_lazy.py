"""Lazy parameters the torch way: optimizer-first training, load_state_dict into unbuilt models,
``.to()`` before the first call, eager ``input_size=``, initialisers and RNG draws unchanged."""

import pytest
import torch
from torch.nn.parameter import UninitializedParameter, is_lazy

import lstmlab as ll


class Net(torch.nn.Module):
    """A user's model: every lstmlab layer kind, unbuilt, and a torch head."""

    def __init__(self, engine: str = "auto"):
        super().__init__()
        self.emb = ll.Embedding(12, 4)
        self.lstm = ll.LSTM(5, return_sequences=True, engine=engine)
        self.bi = ll.Bidirectional(ll.GRU(3, return_sequences=True, engine=engine))
        self.rnn = ll.SimpleRNN(4, return_sequences=True, engine=engine)
        self.att = ll.Attention()
        self.dense = ll.Dense(3, activation="tanh")
        self.head = torch.nn.Linear(3, 1)

    def forward(self, ids):
        return self.head(self.dense(self.att(self.rnn(self.bi(self.lstm(self.emb(ids)))))))


def _data():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 12, (16, 6), generator=g)
    return ids, (ids.float().mean(1, keepdim=True) - 6) / 3


def _train(net, opt, steps=3):
    ids, y = _data()
    losses = []
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(net(ids), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.Adam])
def test_optimizer_built_before_the_first_call_trains_every_weight(opt_cls):
    torch.manual_seed(0)
    net = Net()
    lazy = [n for n, p in net.named_parameters() if is_lazy(p)]
    assert {"lstm.weight_ih", "bi.forward_layer.weight_hh", "rnn.bias_ih", "att.score_vector", "dense.weight"} \
        <= set(lazy)
    opt = opt_cls(net.parameters(), lr=0.05)
    ids, _ = _data()
    net(ids)  # materialises in place: the optimizer's objects are the module's
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in net.parameters()]
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    _train(net, opt, steps=2)
    unchanged = [n for n, p in net.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []


def test_a_first_call_under_inference_mode_still_gives_trainable_weights():
    torch.manual_seed(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with torch.inference_mode():
        net(_data()[0])
    assert not any(p.is_inference() for p in net.parameters())
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    _train(net, opt, steps=1)
    assert [n for n, p in net.named_parameters() if torch.equal(p.detach(), before[n])] == []


def test_optimizer_first_equals_dry_run_first():
    """Oracle: the usual lazy-module recipe (dry run, then optimizer) gives the same training."""
    torch.manual_seed(0)
    a = Net()
    opt_a = torch.optim.Adam(a.parameters(), lr=0.05)
    losses_a = _train(a, opt_a, steps=4)
    torch.manual_seed(0)
    b = Net()
    with torch.no_grad():
        b(_data()[0])
    opt_b = torch.optim.Adam(b.parameters(), lr=0.05)
    losses_b = _train(b, opt_b, steps=4)
    assert losses_a == losses_b and losses_a[-1] < losses_a[0]


def test_state_dict_round_trip_into_a_fresh_unbuilt_model_is_exact():
    torch.manual_seed(0)
    net = Net()
    ids, _ = _data()
    _train(net, torch.optim.SGD(net.parameters(), lr=0.1), steps=1)
    state = net.state_dict()
    torch.manual_seed(123)  # a different init: only the checkpoint may decide the weights
    fresh = Net()
    assert not fresh.lstm.built
    fresh.load_state_dict(state)  # strict: every key expected, none unexpected
    assert fresh.lstm.built and fresh.lstm.input_size == 4 and fresh.dense.input_size == 4
    assert fresh.state_dict().keys() == state.keys()
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, state[k]), k
    net.eval()
    fresh.eval()
    assert torch.equal(fresh(ids), net(ids))



@pytest.mark.parametrize("device", [None, "meta"])
def test_load_state_dict_with_assign_into_an_unbuilt_model(device):
    torch.manual_seed(0)
    net = Net()
    ids, _ = _data()
    net(ids)
    with torch.device(device or "cpu"):
        fresh = Net()  # on meta: the usual deferred init, weights come from the checkpoint
    fresh.load_state_dict(net.state_dict(), assign=True)
    assert fresh.lstm.built and fresh.lstm.input_size == 4
    assert {p.device.type for p in fresh.parameters()} == {"cpu"}
    assert torch.equal(fresh(ids), net(ids))


def test_load_state_dict_refuses_a_checkpoint_of_another_size():
    src = ll.LSTM(6, input_size=3)
    with pytest.raises(RuntimeError, match=r"size mismatch for weight_hh: expected \(20, 5\)"):
        ll.LSTM(5).load_state_dict(src.state_dict())


def test_input_size_builds_eagerly_without_hooks():
    for layer in (ll.LSTM(4, input_size=3), ll.GRU(4, input_size=3), ll.Dense(2, input_size=3),
                  ll.Attention(input_size=3), ll.Bidirectional(ll.SimpleRNN(2, input_size=3))):
        assert layer.built
        assert not any(is_lazy(p) for p in layer.parameters())
        assert not layer._forward_pre_hooks, type(layer).__name__
    assert ll.LSTM(4, input_size=3).weight_ih.shape == (16, 3)


def test_lazy_and_eager_builds_draw_the_same_weights():
    """Keras initialisers at materialisation, with the same RNG draws as an eager build."""
    torch.manual_seed(7)
    eager = ll.LSTM(6, input_size=4, bias_initializer="chrono", chrono_max_len=20)
    torch.manual_seed(7)
    lazy = ll.LSTM(6, bias_initializer="chrono", chrono_max_len=20)
    assert isinstance(lazy.weight_ih, UninitializedParameter)
    lazy.build((1, 1, 4))
    for k, v in eager.state_dict().items():
        assert torch.equal(lazy.state_dict()[k], v), k
    seeded = ll.GRU(3, seed=11)
    seeded(torch.randn(2, 5, 4))
    assert torch.equal(seeded.weight_hh, ll.GRU(3, seed=11, input_size=4).weight_hh)


@pytest.mark.parametrize("convert,dtype", [(lambda m: m.to(torch.float64), torch.float64),
                                           (lambda m: m.double(), torch.float64),
                                           (lambda m: m.bfloat16(), torch.bfloat16)])
def test_dtype_set_before_the_first_call_is_honoured(convert, dtype):
    net = convert(Net())
    net.nobias = convert(ll.GRU(3, use_bias=False))  # its zero biases are lazy buffers
    assert net.lstm.weight_ih.dtype == dtype and is_lazy(net.lstm.weight_ih) and is_lazy(net.nobias.bias_ih)
    out = net(_data()[0])
    assert out.dtype == dtype
    net.nobias(torch.randn(2, 4, 3, dtype=dtype))
    assert {t.dtype for t in [*net.parameters(), *net.nobias.buffers()]} == {dtype}
    layer = ll.GRU(3).to(torch.float64)
    with pytest.raises(ll.InputError, match="expected dtype torch.float64"):
        layer(torch.randn(2, 4, 2))  # float32 data into float64 weights: a clear error, as torch's
    assert layer.weight_ih.dtype == torch.float64


def test_sequential_build_follows_a_dtype_set_before_it():
    model = ll.Sequential([ll.LSTM(3), ll.Dense(1)]).to(torch.float64)
    model.build(torch.randn(4, 5, 2))  # float32 data: Sequential casts it to the model's dtype
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model.predict(torch.randn(4, 5, 2)).dtype.name == "float64"


def test_without_to_the_first_input_decides_the_dtype():
    layer = ll.LSTM(3, layer_norm=True)
    layer(torch.randn(2, 3, 2, dtype=torch.float64))
    assert {p.dtype for p in layer.parameters()} == {torch.float64}


def test_bad_first_input_leaves_the_layer_unbuilt():
    layer = ll.LSTM(3)
    with pytest.raises(ll.InputError, match="expected a 3-D tensor"):
        layer(torch.randn(4, 2))
    assert not layer.built and is_lazy(layer.weight_ih)
    layer(torch.randn(1, 2, 5))
    assert layer.input_size == 5


def test_sequential_build_summary_and_count_params_before_and_after():
    model = ll.Sequential([ll.Embedding(10, 4), ll.GRU(3), ll.Dense(2)])
    assert not model.built
    assert model.count_params() == 40  # only the embedding table has a size yet
    assert "? (unbuilt)" in model.summary(print_fn=None)
    model.build(torch.randint(0, 10, (2, 5)))
    assert model.built
    assert model.count_params() == 40 + (9 * 4 + 9 * 3 + 2 * 9) + (2 * 3 + 2)
    assert "Total params: 129" in model.summary(print_fn=None)


def test_state_dict_keys_are_stable_and_documented():
    net = Net()
    unbuilt = list(net.state_dict())
    net(_data()[0])
    assert list(net.state_dict()) == unbuilt
    rnn = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert list(ll.LSTM(3).state_dict()) == rnn
    assert list(ll.SimpleRNN(3, use_bias=False).state_dict()) == rnn  # zero biases kept as buffers
    assert list(ll.LSTM(3, layer_norm=True).state_dict()) == rnn + [
        f"{m}.{w}" for m in ("ln_ih", "ln_hh", "ln_c") for w in ("weight", "bias")]
    assert list(ll.Dense(2).state_dict()) == ["weight", "bias"]
    assert list(ll.Attention().state_dict()) == ["weight", "bias", "score_vector"]
    assert list(ll.Attention(kind="dot").state_dict()) == ["query"]
    assert list(ll.Bidirectional(ll.GRU(2)).state_dict()) == [f"{d}_layer.{w}" for d in ("forward", "backward")
                                                             for w in rnn]
    # the names and layout are torch.nn.LSTM's layer 0 (without the _l0 suffix)
    lstm = ll.LSTM(4, input_size=3)
    ref = torch.nn.LSTM(3, 4)
    assert {k: tuple(v.shape) for k, v in lstm.state_dict().items()} == {
        k[:-3]: tuple(v.shape) for k, v in ref.state_dict().items()}


def test_data_parallel_replication_of_an_unbuilt_layer_is_refused_clearly():
    with pytest.raises(RuntimeError, match="unbuilt weights"):
        ll.LSTM(3)._replicate_for_data_parallel()
    built = ll.LSTM(3, input_size=2)
    assert built._replicate_for_data_parallel() is not built


def test_model_file_whose_config_drops_input_size_is_refused_clearly(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = ll.Sequential([ll.LSTM(3, input_size=2), ll.Dense(1)])
    model(torch.randn(2, 4, 2))
    model.save(tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as fh:
        meta = fh.metadata()
    config = json.loads(meta["config"])
    config["layers"][0]["config"]["input_size"] = None
    save_file(load_file(str(tmp_path / "m.safetensors")), str(tmp_path / "bad.safetensors"),
              metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(ll.ModelFileError, match="layers.0.weight_ih: the config builds it without a size"):
        ll.load_model(tmp_path / "bad.safetensors")
    assert torch.equal(ll.load_model(tmp_path / "m.safetensors")(torch.ones(1, 4, 2)), model(torch.ones(1, 4, 2)))
