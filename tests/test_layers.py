"""Layer behaviour: Keras defaults and semantics, masking, states, dropout, config round-trips."""

import math

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.layers import deserialize, serialize


def test_input_size_inferred_and_torch_layout():
    layer = ll.LSTM(5)
    assert not layer.built
    out = layer(torch.randn(2, 4, 3))
    assert out.shape == (2, 5)
    assert layer.weight_ih.shape == (20, 3) and layer.weight_hh.shape == (20, 5)
    assert layer.bias_ih.shape == (20,) and layer.bias_hh.shape == (20,)
    assert ll.GRU(4, input_size=3).weight_ih.shape == (12, 3)
    assert ll.SimpleRNN(4, input_size=3).weight_hh.shape == (4, 4)


def test_keras_default_initialisation():
    torch.manual_seed(0)
    layer = ll.LSTM(8, input_size=5)
    h = 8
    # unit_forget_bias: b_f = 1, all other biases 0
    assert torch.all(layer.bias_ih[h:2 * h] == 1) and torch.all(layer.bias_ih[:h] == 0)
    assert torch.all(layer.bias_hh == 0)
    # orthogonal recurrent kernel (H, 4H) in Keras' shape: orthonormal rows
    rk = layer.weight_hh.detach().t()
    torch.testing.assert_close(rk @ rk.t(), torch.eye(h), atol=1e-5, rtol=0)
    # glorot_uniform on the (I, 4H) kernel
    lim = math.sqrt(6 / (5 + 32))
    assert layer.weight_ih.abs().max() <= lim
    assert layer.weight_ih.abs().max() > 0.8 * lim
    assert not torch.any(ll.LSTM(8, unit_forget_bias=False, input_size=5).bias_ih != 0)


def test_irnn_identity_and_chrono_initialisers():
    irnn = ll.SimpleRNN(6, activation="relu", recurrent_initializer="identity", input_size=2)
    torch.testing.assert_close(irnn.weight_hh.detach(), torch.eye(6))
    lstm = ll.LSTM(50, bias_initializer="chrono", chrono_max_len=100, input_size=2, seed=3)
    bf, bi = lstm.bias_ih[50:100].detach(), lstm.bias_ih[:50].detach()
    assert torch.all(bf >= 0) and torch.all(bf <= math.log(99) + 1e-6)
    torch.testing.assert_close(bi, -bf)
    with pytest.raises(ValueError, match="chrono_max_len"):
        ll.LSTM(4, bias_initializer="chrono")


def test_padded_steps_do_not_change_real_outputs_or_gradients():
    torch.manual_seed(0)
    layer = ll.LSTM(4, return_sequences=True, engine="loop")
    x = torch.randn(2, 6, 3)
    lengths = torch.tensor([6, 3])
    x_garbage = x.clone()
    x_garbage[1, 3:] = 1e3 * torch.randn(3, 3)  # padding content must not matter
    xa = x_garbage.clone().requires_grad_()
    out = layer(xa, lengths=lengths)
    assert torch.all(out[1, 3:] == 0)
    out.sum().backward()
    assert torch.all(xa.grad[1, 3:] == 0)
    gw = layer.weight_hh.grad.clone()
    layer.zero_grad()
    # oracle: each sequence on its own, truncated to its length
    xb0 = x[0:1].clone().requires_grad_()
    xb1 = x[1:2, :3].clone().requires_grad_()
    s0 = layer(xb0)
    s1 = layer(xb1)
    torch.testing.assert_close(out[0], s0[0])
    torch.testing.assert_close(out[1, :3], s1[0])
    (s0.sum() + s1.sum()).backward()
    torch.testing.assert_close(xa.grad[1, :3], xb1.grad[0])
    torch.testing.assert_close(gw, layer.weight_hh.grad)


def test_last_output_is_last_valid_step_and_return_state():
    torch.manual_seed(0)
    layer = ll.LSTM(4, return_sequences=True, return_state=True)
    x = torch.randn(3, 5, 2)
    lengths = torch.tensor([5, 2, 4])
    seq, h, c = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(h[b], seq[b, n - 1])
    assert c.shape == (3, 4)
    gru = ll.GRU(4, return_state=True)
    out, h = gru(x)
    torch.testing.assert_close(out, h)


def test_initial_state_and_stateful_continuation():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3)
    layer = ll.LSTM(5, return_sequences=True, return_state=True)
    full, h, c = layer(x)
    first, h1, c1 = layer(x[:, :4])
    second, _, _ = layer(x[:, 4:], initial_state=[h1, c1])
    torch.testing.assert_close(torch.cat([first, second], 1), full)
    stateful = ll.LSTM(5, return_sequences=True, stateful=True)
    stateful.build((2, 8, 3), torch.float32, torch.device("cpu"))
    stateful.load_state_dict(layer.state_dict())
    a, b = stateful(x[:, :4]), stateful(x[:, 4:])
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    stateful.reset_states()
    torch.testing.assert_close(stateful(x[:, :4]), first)
    with pytest.raises(ll.InputError, match="initial_state"):
        layer(x, initial_state=[h1])


def test_go_backwards_returns_reversed_sequence_like_keras():
    torch.manual_seed(0)
    fw = ll.SimpleRNN(3, return_sequences=True, input_size=2)
    bw = ll.SimpleRNN(3, return_sequences=True, go_backwards=True, input_size=2)
    bw.load_state_dict(fw.state_dict())
    x = torch.randn(2, 5, 2)
    torch.testing.assert_close(bw(x), fw(x.flip(1)))


def test_bidirectional_merge_modes():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    bi = ll.Bidirectional(ll.GRU(4, return_sequences=True), merge_mode="concat")
    out = bi(x)
    assert out.shape == (2, 5, 8)
    f = bi.forward_layer(x)
    torch.testing.assert_close(out[..., :4], f)
    b = bi.backward_layer.__class__.from_config({**bi.backward_layer.get_config(), "go_backwards": False})
    b.load_state_dict(bi.backward_layer.state_dict())
    torch.testing.assert_close(out[..., 4:], b(x.flip(1)).flip(1))
    for mode, fn in (("sum", torch.add), ("mul", torch.mul), ("ave", lambda p, q: (p + q) / 2)):
        bi2 = ll.Bidirectional(ll.GRU(4, return_sequences=True), merge_mode=mode)
        bi2.forward_layer.build((2, 5, 3), torch.float32, torch.device("cpu"))
        bi2.backward_layer.build((2, 5, 3), torch.float32, torch.device("cpu"))
        bi2.load_state_dict(bi.state_dict())
        torch.testing.assert_close(bi2(x), fn(out[..., :4], out[..., 4:]))


def test_dropout_only_in_training_and_recurrent_dropout_is_random():
    torch.manual_seed(0)
    layer = ll.LSTM(6, dropout=0.5, recurrent_dropout=0.5, return_sequences=True)
    x = torch.randn(4, 5, 3)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)
    d = ll.Dropout(0.5)
    d.eval()
    assert torch.equal(d(x), x)


def test_embedding_mask_zero_equals_explicit_lengths():
    torch.manual_seed(0)
    ids = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    model = ll.Sequential([ll.Embedding(10, 4, mask_zero=True), ll.LSTM(3)])
    out = model(ids)
    emb = model.layers[0](ids)
    ref = model.layers[1](emb, lengths=torch.tensor([3, 5]))
    torch.testing.assert_close(out, ref)
    unmasked = model.layers[1](emb)
    assert not torch.allclose(out[0], unmasked[0])
    with pytest.raises(ll.InputError, match=r"token ids in \[0, 9\]"):
        model(torch.tensor([[1, 12]]))


def test_masking_layer_marks_all_equal_steps():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3)
    x[0, 2:] = 0.0
    model = ll.Sequential([ll.Masking(0.0), ll.SimpleRNN(3)])
    ref = model.layers[1](x, lengths=torch.tensor([2, 4]))
    torch.testing.assert_close(model(x), ref)


def test_regularizers_add_to_the_loss():
    torch.manual_seed(0)
    layer = ll.LSTM(3, kernel_regularizer=ll.regularizers.l2(0.1), recurrent_regularizer=0.2,
                    bias_regularizer=ll.regularizers.L1L2(l1=0.3), input_size=2)
    expected = 0.1 * layer.weight_ih.pow(2).sum() + 0.2 * layer.weight_hh.pow(2).sum() \
        + 0.3 * (layer.bias_ih.abs().sum() + layer.bias_hh.abs().sum())
    torch.testing.assert_close(layer.regularization_loss(), expected)
    model = ll.Sequential([layer, ll.Dense(1, kernel_regularizer=0.5)])
    model(torch.randn(1, 2, 2))
    total = expected + 0.5 * model.layers[1].weight.pow(2).sum()
    torch.testing.assert_close(model.regularization_loss(), total)


@pytest.mark.parametrize("layer", [
    ll.LSTM(4, return_sequences=True, dropout=0.1, kernel_regularizer=0.01, layer_norm=True),
    ll.GRU(3, go_backwards=True, recurrent_dropout=0.2),
    ll.SimpleRNN(2, activation="relu", recurrent_initializer="identity"),
    ll.Dense(3, activation="softmax"),
    ll.Embedding(7, 2, mask_zero=True),
    ll.Dropout(0.3),
    ll.Masking(-1.0),
    ll.Bidirectional(ll.LSTM(2, return_sequences=True), merge_mode="sum"),
])
def test_get_config_round_trip(layer):
    spec = serialize(layer)
    clone = deserialize(spec)
    assert serialize(clone) == spec


def test_layers_work_inside_a_plain_torch_module():
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = ll.LSTM(16, input_size=2)
            self.head = torch.nn.Linear(16, 1)

        def forward(self, x):
            return self.head(self.rnn(x))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(64, 10, 2)
    y = x[:, :, 0].sum(1, keepdim=True)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(net(x), y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_argument_validation_names_the_argument():
    with pytest.raises(ValueError, match="units"):
        ll.LSTM(0)
    with pytest.raises(ValueError, match="dropout"):
        ll.GRU(3, dropout=1.5)
    with pytest.raises(ValueError, match="activation"):
        ll.SimpleRNN(3, activation="softplus")
    with pytest.raises(ValueError, match="engine"):
        ll.LSTM(3, engine="cudnn")
    with pytest.raises(ValueError, match="layer_norm"):
        ll.GRU(3, layer_norm=True)
    with pytest.raises(ValueError, match="recurrent_initializer"):
        ll.LSTM(3, recurrent_initializer="nope")


def test_native_engine_refuses_taps():
    layer = ll.LSTM(3, engine="native", input_size=2)
    layer.record_taps = True
    with pytest.raises(ValueError, match="native"):
        layer(torch.randn(1, 2, 2))


def test_float64_layer_builds_in_float64():
    layer = ll.GRU(3)
    out = layer(torch.randn(2, 3, 2, dtype=torch.float64))
    assert out.dtype == torch.float64 and layer.weight_ih.dtype == torch.float64
    assert np.isfinite(out.detach().numpy()).all()
