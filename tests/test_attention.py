"""Attention pooling: masking, config round trip, explain(), and it finds the step that matters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.layers import LAYERS, Attention, deserialize, explain, serialize


def _seq(batch=5, steps=8, feats=4, seed=0):
    return torch.randn(batch, steps, feats, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["additive", "dot"])
def test_weights_sum_to_one_and_zero_on_padding(kind):
    x = _seq()
    lengths = torch.tensor([8, 3, 1, 6, 8])
    att = Attention(kind, seed=0)
    out = att(x, lengths=lengths)
    assert out.shape == (5, 4)
    a = att.last_attention
    assert a.shape == (5, 8)
    valid = torch.arange(8)[None] < lengths[:, None]
    assert torch.allclose(a.sum(1), torch.ones(5))
    assert torch.all(a[~valid] == 0) and torch.all(a[valid] > 0)
    assert torch.allclose(a[2, 0], torch.tensor(1.0))
    # the pooled vector is the weighted sum; padding values cannot leak in
    x2 = x.clone()
    x2[~valid] = 1e3
    assert torch.allclose(att(x2, lengths=lengths), out)
    assert torch.allclose(att(x2, mask=valid), out)
    pooled, w = Attention(kind, seed=0, return_attention=True)(x, lengths=lengths)
    assert torch.allclose(pooled, out) and torch.allclose(w, a)


def test_padding_inferred_from_zero_rows_in_sequential():
    x = _seq(4, 9, 3)
    lengths = torch.tensor([9, 4, 2, 7])
    model = ll.Sequential([ll.LSTM(6, return_sequences=True, seed=1), Attention(seed=2), ll.Dense(2)])
    w = explain(model, x, lengths=lengths)
    assert isinstance(w, np.ndarray) and w.shape == (4, 9)
    valid = np.arange(9)[None] < lengths.numpy()[:, None]
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert np.all(w[~valid] == 0)
    # the same weights as computing with explicit lengths on the LSTM output
    with torch.no_grad():
        h = model.layers[0](x, lengths=lengths)
        model.layers[1](h, lengths=lengths)
    np.testing.assert_allclose(model.layers[1].last_attention.numpy(), w, atol=1e-6)


def test_config_round_trip_and_save_load(tmp_path):
    att = Attention("additive", units=7, seed=3)
    assert "Attention" in LAYERS
    clone = deserialize(serialize(att))
    assert isinstance(clone, Attention) and clone.get_config() == att.get_config()
    model = ll.Sequential([ll.GRU(5, return_sequences=True, seed=1), att, ll.Dense(3, activation="softmax")])
    x = _seq(3, 6, 2)
    y = model.predict(x)
    model.save(tmp_path / "m.lstmlab")
    back = ll.load_model(tmp_path / "m.lstmlab")
    np.testing.assert_allclose(back.predict(x), y, atol=1e-6)
    np.testing.assert_allclose(explain(back, x), explain(model, x), atol=1e-6)
    assert back.layers[1].weight.shape == (7, 5)


def test_bad_input_and_arguments():
    with pytest.raises(ll.InputError, match="3-D"):
        Attention()(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="kind"):
        Attention("cosine")
    with pytest.raises(ValueError, match="units"):
        Attention("dot", units=4)
    with pytest.raises(ValueError, match="no Attention layer"):
        explain(ll.Sequential([ll.LSTM(2), ll.Dense(1)]), np.zeros((1, 3, 2), np.float32))


def _marked_task(n: int, steps: int, seed: int):
    """Noise in channel 0, a marker in channel 1 at one step; the label is the sign at the marker."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, steps, 2), np.float32)
    x[:, :, 0] = rng.choice([-1.0, 1.0], size=(n, steps))
    lengths = rng.integers(steps // 2, steps + 1, size=n)
    marks = np.array([rng.integers(0, ln) for ln in lengths])
    x[np.arange(n), marks, 1] = 1.0
    x[np.arange(steps)[None] >= lengths[:, None]] = 0.0
    y = (x[np.arange(n), marks, 0] > 0).astype(np.int64)
    return x, y, lengths, marks


def test_attention_learns_the_marked_step():
    torch.manual_seed(0)
    x, y, lengths, marks = _marked_task(256, 12, seed=0)
    model = ll.Sequential([ll.LSTM(8, return_sequences=True, seed=0), Attention(seed=0),
                           ll.Dense(2, activation="softmax", seed=0)])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"],
                  learning_rate=0.02)
    model.fit(x, y, epochs=7, batch_size=32, lengths=lengths, verbose=0, seed=0)
    xt, yt, lt, mt = _marked_task(200, 12, seed=1)
    acc = float((model.predict(xt, lengths=lt).argmax(1) == yt).mean())
    w = explain(model, xt, lengths=lt)
    on_mark = w[np.arange(200), mt]
    assert acc > 0.9, acc
    assert float(np.mean(on_mark)) > 0.5, float(np.mean(on_mark))
    assert float(np.mean(w.argmax(1) == mt)) > 0.8
