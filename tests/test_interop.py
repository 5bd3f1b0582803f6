"""lstmlab vs torch.nn.LSTM/GRU/RNN (from_torch / to_torch) and Keras weights (from_keras).

Oracles: torch's own modules (packed sequences for variable lengths) and a NumPy transcription
of Keras' LSTM equations.  Outputs and every gradient must agree to 1e-5 (float32) and 1e-10
(float64) on every engine.
"""

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmlab as ll
from lstmlab.engine import fused_module

ENGINES = ["loop", "native", "reference", "fused"]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def _skip_unavailable(engine):
    if engine == "fused" and fused_module() is None:
        pytest.skip("fused engine not built on this machine (no compiler): see the warning")


def set_engine(model, engine):
    for layer in model.recurrent_layers():
        layer.engine = engine


def torch_run(module, x, lengths):
    xin = x if module.batch_first else x.transpose(0, 1)
    if lengths is None:
        out, _ = module(xin)
    else:
        packed = pack_padded_sequence(xin, lengths, batch_first=module.batch_first, enforce_sorted=False)
        out, _ = module(packed)
        out, _ = pad_packed_sequence(out, batch_first=module.batch_first, total_length=x.shape[1])
    return out if module.batch_first else out.transpose(0, 1)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,layers,bidir,batch_first,lengths", [
    ("LSTM", 1, False, True, None),
    ("LSTM", 2, True, False, [7, 3, 5]),
    ("GRU", 2, False, True, [7, 1, 4]),
    ("GRU", 1, True, True, None),
    ("RNN", 2, True, True, [2, 7, 6]),
    ("RNN_relu", 1, False, False, None),
])
def test_from_torch_matches_outputs_and_all_gradients(engine, dtype, kind, layers, bidir, batch_first, lengths):
    _skip_unavailable(engine)
    torch.manual_seed(0)
    kw = {"nonlinearity": "relu"} if kind == "RNN_relu" else {}
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(kind, torch.nn.RNN)
    tm = cls(4, 5, num_layers=layers, bidirectional=bidir, batch_first=batch_first, **kw).to(dtype)
    model = ll.from_torch(tm)
    set_engine(model, engine)
    x = torch.randn(3, 7, 4, dtype=dtype)
    lens = None if lengths is None else torch.tensor(lengths)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref = torch_run(tm, x1, lens)
    out = model(x2, lengths=lens)
    torch.testing.assert_close(out, ref, **TOL[dtype])
    w = torch.randn_like(ref)
    (ref * w).sum().backward()
    (out * w).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, **TOL[dtype])
    ours = dict(model.named_parameters())
    for name, p in tm.named_parameters():
        k, sfx = int(name.split("_l")[1].split("_")[0]), name.endswith("_reverse")
        base = name.split("_l")[0]
        idx = [i for i, m in enumerate(model.layers) if not isinstance(m, ll.Dropout)][k]
        prefix = f"layers.{idx}." + (("backward_layer." if sfx else "forward_layer.") if bidir else "")
        torch.testing.assert_close(ours[prefix + base].grad, p.grad, **TOL[dtype])


def test_to_torch_round_trip_and_layer_to_torch():
    torch.manual_seed(1)
    model = ll.Sequential([ll.Bidirectional(ll.LSTM(6, return_sequences=True)),
                           ll.Bidirectional(ll.LSTM(6, return_sequences=True))])
    x = torch.randn(2, 5, 3)
    ours = model(x)
    tm = ll.to_torch(model)
    assert isinstance(tm, torch.nn.LSTM) and tm.num_layers == 2 and tm.bidirectional and tm.batch_first
    torch.testing.assert_close(tm(x)[0], ours, rtol=1e-5, atol=1e-6)
    gru = ll.GRU(4, return_sequences=True)
    y = gru(x)
    torch.testing.assert_close(gru.to_torch()(x)[0], y, rtol=1e-5, atol=1e-6)


def keras_lstm_numpy(x, kernel, rkernel, bias):
    """Keras' LSTM (implementation 2), transcribed: z = x k + h rk + b, split i, f, c, o."""
    batch, steps, _ = x.shape
    units = rkernel.shape[0]
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    sig = lambda v: 1 / (1 + np.exp(-v))
    outs = []
    for t in range(steps):
        z = x[:, t] @ kernel + h @ rkernel + bias
        i, f, cc, o = np.split(z, 4, axis=-1)
        c = sig(f) * c + sig(i) * np.tanh(cc)
        h = sig(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1)


def test_from_keras_matches_keras_equations():
    rng = np.random.default_rng(0)
    kernel, rkernel, bias = rng.normal(size=(3, 16)), rng.normal(size=(4, 16)) * 0.5, rng.normal(size=16)
    x = rng.normal(size=(2, 6, 3))
    layer = ll.from_keras(kernel, rkernel, bias, return_sequences=True)
    assert layer.weight_ih.dtype == torch.float64
    out = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, keras_lstm_numpy(x, kernel, rkernel, bias), rtol=1e-10, atol=1e-12)


def test_from_keras_rejects_bad_shapes():
    with pytest.raises(ValueError, match="kernel"):
        ll.from_keras(np.zeros((3, 15)), np.zeros((4, 16)), np.zeros(16))
    with pytest.raises(ValueError, match="bias"):
        ll.from_keras(np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(12))


def test_from_torch_rejects_other_modules():
    with pytest.raises(ValueError, match="torch.nn.LSTM"):
        ll.from_torch(torch.nn.Linear(2, 2))
