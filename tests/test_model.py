"""Sequential: compile / fit / evaluate / predict / save / load, losses and metrics vs torch."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import lstmlab as ll
from lstmlab import losses as L


def small_classification(n=96, steps=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, steps, 2)).astype(np.float32)
    x[:, 0, 0] += 2.0 * y  # the class is readable at the first step: needs memory
    return x, y


def test_fit_learns_and_history_records_metrics():
    torch.manual_seed(0)
    x, y = small_classification()
    model = ll.Sequential([ll.LSTM(16), ll.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=ll.Adam(1e-2), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=20, batch_size=16, validation_split=0.25, verbose=0, seed=0)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    loss, acc = model.evaluate(x, y)
    assert acc > 0.8  # chance is 1/3
    probs = model.predict(x[:5])
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy",
                                  "binary_crossentropy", "mse", "mae"])
def test_losses_match_torch_functional(name):
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64)
    if name == "sparse_categorical_crossentropy":
        y = torch.randint(0, 4, (5,))
        ref = F.cross_entropy(logits, y)
    elif name == "categorical_crossentropy":
        y = F.one_hot(torch.randint(0, 4, (5,)), 4).double()
        ref = F.cross_entropy(logits, y.argmax(1))
    elif name == "binary_crossentropy":
        y = torch.randint(0, 2, (5, 4)).double()
        ref = F.binary_cross_entropy_with_logits(logits, y)
    elif name == "mse":
        y = torch.randn(5, 4, dtype=torch.float64)
        ref = F.mse_loss(logits, y)
    else:
        y = torch.randn(5, 4, dtype=torch.float64)
        ref = F.l1_loss(logits, y)
    from_logits = name in L.LOGIT_ACTIVATION
    torch.testing.assert_close(L.compute(name, logits, y, from_logits=from_logits), ref)
    if from_logits:  # the probability path agrees with the logit path
        probs = torch.softmax(logits, -1) if "categorical" in name else torch.sigmoid(logits)
        torch.testing.assert_close(L.compute(name, probs, y, from_logits=False), ref, rtol=1e-6, atol=1e-7)


def test_metrics_accuracy_mae_rmse():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 5, 1)).astype(np.float32)
    y = x.sum(1)
    model = ll.Sequential([ll.GRU(8), ll.Dense(1)])
    model.compile(loss="mse", optimizer="rmsprop", metrics=["mae", "rmse", "mse"])
    res = model.evaluate(x, y, return_dict=True, batch_size=7)
    pred = model.predict(x)
    np.testing.assert_allclose(res["mae"], np.abs(pred - y).mean(), rtol=1e-5)
    np.testing.assert_allclose(res["rmse"], np.sqrt(((pred - y) ** 2).mean()), rtol=1e-5)
    np.testing.assert_allclose(res["loss"], ((pred - y) ** 2).mean(), rtol=1e-5)


def test_per_step_targets_with_lengths_ignore_padding():
    torch.manual_seed(0)
    x = np.random.default_rng(1).normal(size=(6, 5, 2)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, (6, 5))
    lengths = np.array([5, 3, 2, 5, 1, 4])
    model = ll.Sequential([ll.LSTM(4, return_sequences=True), ll.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    res = model.evaluate(x, y, lengths=lengths, return_dict=True)
    probs = model.predict(x, lengths=lengths)
    mask = np.arange(5)[None] < lengths[:, None]
    ce = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    np.testing.assert_allclose(res["loss"], ce[mask].mean(), rtol=1e-5)
    y2 = y.copy()
    y2[~mask] = 0  # labels at padded steps do not matter
    assert model.evaluate(x, y2, lengths=lengths, return_dict=True)["loss"] == pytest.approx(res["loss"])


def test_compute_loss_is_what_fit_optimises():
    """The value against cross-entropy of the predicted probabilities over the valid steps; the
    gradient against the update that one full-batch SGD step of ``fit`` makes."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 5, 2)).astype(np.float32)
    y = rng.integers(0, 3, (8, 5))
    lengths = np.array([5, 3, 2, 5, 1, 4, 5, 2])
    model = ll.Sequential([ll.LSTM(4, return_sequences=True, seed=0), ll.Dense(3, activation="softmax", seed=1)])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=ll.SGD(0.1))
    loss = model.compute_loss(x, y, lengths)
    probs = model.predict(x, lengths=lengths)
    mask = np.arange(5)[None] < lengths[:, None]
    ce = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    assert loss.item() == pytest.approx(ce[mask].mean(), rel=1e-5)
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params)
    before = [p.detach().clone() for p in params]
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0, lengths=lengths)
    for p, b, g in zip(params, before, grads):
        torch.testing.assert_close(p.detach(), b - 0.1 * g)


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw", "rmsprop", ll.SGD(0.05, momentum=0.9)])
def test_optimizers_by_name_and_object_reduce_loss(opt):
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 4, 2)).astype(np.float32)
    y = x[:, :, :1].mean(1)
    model = ll.Sequential([ll.SimpleRNN(8), ll.Dense(1)])
    model.compile(loss="mse", optimizer=opt)
    h = model.fit(x, y, epochs=8, batch_size=16, verbose=0, seed=0)
    assert h.history["loss"][-1] < h.history["loss"][0]


def test_clipping_limits_the_update():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(8, 3, 2)).astype(np.float32) * 100
    y = np.full((8, 1), 1e3, dtype=np.float32)
    model = ll.Sequential([ll.SimpleRNN(4, input_size=2), ll.Dense(1, input_size=4)])
    model.compile(loss="mse", optimizer=ll.SGD(1.0), global_clipnorm=0.01)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((after - before).norm()) <= 0.01 + 1e-6
    assert model.last_grad_norm > 1.0


def test_weight_decay_and_l2_shrink_weights():
    x = np.random.default_rng(0).normal(size=(32, 3, 2)).astype(np.float32)
    y = np.zeros((32, 1), np.float32)
    norms = []
    for wd in (None, 0.5):
        torch.manual_seed(0)
        model = ll.Sequential([ll.GRU(4), ll.Dense(1)])
        model.compile(loss="mse", optimizer="adamw", weight_decay=wd)
        model.fit(x, y, epochs=5, verbose=0, seed=0)
        norms.append(float(model.layers[0].weight_hh.detach().norm()))
    assert norms[1] < norms[0]


def test_tbptt_trains_and_refuses_lengths():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(32, 12, 1)).astype(np.float32)
    y = np.cumsum(x, 1)
    model = ll.Sequential([ll.LSTM(8, return_sequences=True), ll.Dense(1)])
    model.compile(loss="mse", optimizer=ll.Adam(1e-2))
    h = model.fit(x, y, epochs=6, batch_size=16, verbose=0, tbptt=4, seed=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert not model.layers[0].stateful
    with pytest.raises(ll.InputError, match="tbptt"):
        model.fit(x, y, epochs=1, tbptt=4, lengths=np.full(32, 12), verbose=0)


def test_early_stopping_and_model_checkpoint(tmp_path):
    torch.manual_seed(0)
    x, y = small_classification(n=48)
    model = ll.Sequential([ll.GRU(4), ll.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=ll.SGD(1e-9))
    es = ll.EarlyStopping(monitor="loss", patience=1, min_delta=1.0)
    ck = ll.ModelCheckpoint(str(tmp_path / "m-{epoch}.lstmlab"), monitor="loss")
    h = model.fit(x, y, epochs=10, verbose=0, callbacks=[es, ck])
    assert len(h.history["loss"]) == 3 and es.stopped_epoch == 2
    assert len(ck.saved) == 3 and all((tmp_path / f"m-{k}.lstmlab").exists() for k in (1, 2, 3))
    assert not list(tmp_path.glob("*.tmp"))


def test_save_load_round_trips_architecture_weights_and_optimizer(tmp_path):
    torch.manual_seed(0)
    x, y = small_classification(n=64)
    model = ll.Sequential([ll.Bidirectional(ll.LSTM(5, return_sequences=True)), ll.Dropout(0.1),
                           ll.GRU(4), ll.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"], clipnorm=2.0)
    model.fit(x, y, epochs=2, verbose=0, seed=0)
    path = tmp_path / "model.lstmlab"
    model.save(path)
    clone = ll.load_model(path)
    assert clone.get_config() == model.get_config()
    assert clone.compile_config() == model.compile_config()
    for (k, a), (k2, b) in zip(model.state_dict().items(), clone.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    model.eval()
    clone.eval()
    np.testing.assert_array_equal(model.predict(x), clone.predict(x))
    # continuing training from the file equals continuing in memory (optimizer state restored)
    torch.manual_seed(5)
    model.fit(x, y, epochs=1, verbose=0, seed=1, shuffle=True)
    torch.manual_seed(5)
    clone.fit(x, y, epochs=1, verbose=0, seed=1, shuffle=True)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    raw = path.read_bytes()
    assert b"pickle" not in raw[:200]


def test_summary_lists_layers_and_params():
    model = ll.Sequential([ll.LSTM(128, return_sequences=True), ll.LSTM(64), ll.Dense(10, activation="softmax")])
    model(torch.zeros(1, 8, 8))
    text = model.summary(print_fn=None)
    assert "lstm (LSTM)" in text and "lstm_1 (LSTM)" in text
    assert f"Total params: {4 * 128 * (8 + 128) + 8 * 128 + 4 * 64 * (128 + 64) + 8 * 64 + 650:,}" in text


def test_a_read_only_array_is_taken_without_a_warning_and_left_untouched():
    # pandas hands out read-only arrays; torch.from_numpy warns on them and would share the memory.
    import warnings

    from lstmlab.validation import as_tensor

    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    a.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = as_tensor("x", a)
    t += 1
    np.testing.assert_array_equal(a, np.arange(6, dtype=np.float32).reshape(2, 3))
