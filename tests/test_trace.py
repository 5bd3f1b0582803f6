"""trace(): step-by-step re-run of every recurrent direction equals the layers' own outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.engine import reverse_index
from lstmlab.tracing import trace


def _data(batch=4, steps=7, feats=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, feats, generator=g)
    lengths = torch.tensor([7, 5, 2, 6])[:batch]
    return x, lengths


@pytest.mark.parametrize("cls", [ll.LSTM, ll.GRU, ll.SimpleRNN])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_trace_matches_layer_output(cls, use_lengths):
    x, lengths = _data()
    layer = cls(5, return_sequences=True, seed=1)
    lens = lengths if use_lengths else None
    with torch.no_grad():
        out = layer(x, lengths=lens).numpy()
    tr = trace(layer, x, lengths=lens)
    (name, rec), = tr.items()
    assert name == f"{layer.name}/forward"
    assert rec["h"].shape == (4, 7, 5)
    np.testing.assert_allclose(rec["h"], out, atol=1e-5)
    gates = {"lstm": "ifgoc", "gru": "rzn", "rnn": ""}[layer.cell]
    for g in gates:
        assert rec[g].shape == (4, 7, 5)
    if use_lengths:
        assert not rec["mask"][2, 2:].any() and rec["mask"][2, :2].all()
        assert np.all(rec["h"][2, 2:] == 0)
    for g in {"lstm": "ifo", "gru": "rz", "rnn": ""}[layer.cell]:  # sigmoid gates in (0, 1)
        v = rec[g][rec["mask"]]
        assert v.min() >= 0 and v.max() <= 1


def test_lstm_cell_state_matches_final_state():
    x, lengths = _data()
    layer = ll.LSTM(5, return_state=True, seed=2)
    with torch.no_grad():
        _, h_n, c_n = layer(x, lengths=lengths)
    rec = trace(layer, x, lengths=lengths)[f"{layer.name}/forward"]
    last = (lengths - 1).numpy()
    b = np.arange(4)
    np.testing.assert_allclose(rec["c"][b, last], c_n.numpy(), atol=1e-5)
    np.testing.assert_allclose(rec["h"][b, last], h_n.numpy(), atol=1e-5)
    # candidate g is the tanh gate; c_t = f*c_{t-1} + i*g on valid steps
    c_prev = np.concatenate([np.zeros((4, 1, 5)), rec["c"][:, :-1]], 1)
    expect = rec["f"] * c_prev + rec["i"] * rec["g"]
    np.testing.assert_allclose(rec["c"][rec["mask"]], expect[rec["mask"]], atol=1e-6)


@pytest.mark.parametrize("cls", [ll.LSTM, ll.GRU])
def test_trace_bidirectional_in_sequential(cls):
    x, lengths = _data()
    bi = ll.Bidirectional(cls(4, return_sequences=True, seed=3))
    model = ll.Sequential([bi, ll.Dense(2)])
    with torch.no_grad():
        model(x, lengths=lengths)
        seq = bi(x, lengths=lengths).numpy()
    tr = trace(model, x, lengths=lengths)
    assert set(tr) == {f"{bi.name}/forward", f"{bi.name}/backward"}
    fw, bw = tr[f"{bi.name}/forward"], tr[f"{bi.name}/backward"]
    assert bw["reverse"] and not fw["reverse"]
    np.testing.assert_allclose(np.concatenate([fw["h"], bw["h"]], -1), seq, atol=1e-5)
    assert np.all(bw["h"][1, 5:] == 0) and np.all(fw["h"][1, 5:] == 0)


def test_trace_go_backwards_and_stacked_layers():
    x, lengths = _data()
    back = ll.LSTM(3, return_sequences=True, go_backwards=True, seed=4)
    model = ll.Sequential([ll.GRU(6, return_sequences=True, seed=5), back, ll.Dense(1)])
    with torch.no_grad():
        model(x, lengths=lengths)
        mid = model.layers[0](x, lengths=lengths)
        out = back(mid, lengths=lengths)  # processing order (Keras)
    tr = trace(model, x, lengths=lengths)
    rec = tr[f"{back.name}/backward"]
    idx = reverse_index(lengths, 4, 7, "cpu").numpy()
    np.testing.assert_allclose(np.take_along_axis(rec["h"], idx[..., None], 1), out.numpy(), atol=1e-5)
    assert list(tr) == [f"{model.layers[0].name}/forward", f"{back.name}/backward"]


def test_trace_layer_norm_and_stateful_initial_state():
    x, _ = _data()
    layer = ll.LSTM(5, return_sequences=True, layer_norm=True, stateful=True, seed=6)
    with torch.no_grad():
        layer(x)  # sets a carried state
        saved = tuple(s.clone() for s in layer._states)
        ref = layer(x).numpy()
        layer._states = saved
    tr = trace(layer, x)[f"{layer.name}/forward"]
    np.testing.assert_allclose(tr["h"], ref, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(layer._states, saved, strict=True))  # not advanced


def test_trace_without_recurrent_layer_raises():
    with pytest.raises(ValueError, match="no recurrent layer"):
        trace(ll.Sequential([ll.Dense(2)]), np.zeros((2, 3, 4), np.float32))
