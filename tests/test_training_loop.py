"""The one training loop (lstmlab.training) and the callbacks it drives, against hand-written
gradient descent in plain torch (the oracle) and against uninterrupted runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import lstmlab as ll
from lstmlab import metrics as M
from lstmlab.callbacks import StopOnDivergence
from lstmlab.training import Loop, Position, Strategy


def _data(n: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32) + 0.3).astype(np.float32)
    return x, y


def _dense(lr: float = 0.1) -> ll.Sequential:
    model = ll.Sequential([ll.Dense(1, seed=0)])
    model.compile(loss="mse", optimizer=ll.SGD(lr))
    return model


def _by_hand(model: ll.Sequential, x, y, batches: list[list[int]], epochs: int, lr: float):
    """Plain SGD on the same weights: W <- W - lr * grad(mean squared error) per batch."""
    w = model.layers[0].weight.detach().clone().requires_grad_(True)
    b = model.layers[0].bias.detach().clone().requires_grad_(True)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    losses = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for idx in batches:
            loss = F.mse_loss(F.linear(xt[idx], w, b), yt[idx])
            gw, gb = torch.autograd.grad(loss, (w, b))
            with torch.no_grad():
                w -= lr * gw
                b -= lr * gb
            total += loss.item() * len(idx)
            count += len(idx)
        losses.append(total / count)
    return w.detach(), b.detach(), losses


def test_fit_is_plain_minibatch_sgd():
    x, y = _data()
    model = _dense()
    model.build(torch.as_tensor(x))
    w, b, losses = _by_hand(model, x, y, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], epochs=2, lr=0.1)
    hist = model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    torch.testing.assert_close(model.layers[0].weight.detach(), w)
    torch.testing.assert_close(model.layers[0].bias.detach(), b)
    np.testing.assert_allclose(hist.history["loss"], losses, rtol=1e-6)
    assert model.global_step == 6


class _Reversed(Strategy):
    """A strategy of one's own: batches of 5 taken from the end."""

    def batches(self, n, epoch, batch_size):
        order = torch.arange(n - 1, -1, -1)
        return [order[i:i + 5] for i in range(0, n, 5)]


def test_a_strategy_decides_the_batches():
    x, y = _data()
    model = _dense(0.05)
    model.build(torch.as_tensor(x))
    w, b, _ = _by_hand(model, x, y, [[11, 10, 9, 8, 7], [6, 5, 4, 3, 2], [1, 0]], epochs=1, lr=0.05)
    xt, yt = model.prepare_training(torch.as_tensor(x), torch.as_tensor(y), None)
    Loop(model, strategy=_Reversed()).run(xt, yt, epochs=1, batch_size=4)
    torch.testing.assert_close(model.layers[0].weight.detach(), w)
    torch.testing.assert_close(model.layers[0].bias.detach(), b)


class _Hook:
    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def batch_done(self, done) -> None:
        self.seen.append((done.epoch, done.batch, done.n_batches, done.skipped, done.stopping,
                          math.isfinite(done.loss)))


class _StopAt(ll.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, batch, logs=None):
        if self.model.global_step == self.step:
            self.model.stop_training = True


def test_checkpoint_hook_sees_every_batch_and_the_stop():
    x, y = _data()
    model = _dense()
    model.build(torch.as_tensor(x))
    xt, yt = model.prepare_training(torch.as_tensor(x), torch.as_tensor(y), None)
    hook = _Hook()
    Loop(model, [_StopAt(5)], Strategy(shuffle=False), checkpoint=hook).run(xt, yt, epochs=3, batch_size=4)
    assert hook.seen == [(0, 0, 3, False, False, True), (0, 1, 3, False, False, True), (0, 2, 3, False, False, True),
                         (1, 0, 3, False, False, True), (1, 1, 3, False, True, True)]
    assert model.global_step == 5


def test_starting_mid_epoch_continues_the_epoch_sums():
    x, y = _data()
    straight = _dense()
    straight.build(torch.as_tensor(x))
    state = {k: v.clone() for k, v in straight.state_dict().items()}
    hist = straight.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    # the same epoch in two parts: two batches, then the rest from Position(0, 2, sums)
    model = _dense()
    model.build(torch.as_tensor(x))
    model.load_state_dict(state)
    xt, yt = model.prepare_training(torch.as_tensor(x), torch.as_tensor(y), None)
    model.fit(x[:8], y[:8], epochs=1, batch_size=4, shuffle=False, verbose=0)
    first = model.history.history["loss"][0]
    sums = {"loss": [first * 8, 8.0]}
    Loop(model, strategy=Strategy(shuffle=False)).run(xt, yt, epochs=1, batch_size=4, start=Position(0, 2, sums))
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    assert model.history.history["loss"][0] == pytest.approx(hist.history["loss"][0], rel=1e-6)


def _feed(cb, values, first_epoch: int = 0, model=None):
    model = model or _dense()
    cb.set_model(model)
    for k, v in enumerate(values):
        cb.on_epoch_end(first_epoch + k, {"val_loss": v, "val_accuracy": v})
    return model


def test_early_stopping_resumes_its_count():
    values = [1.0, 0.5, 0.6, 0.55, 0.7]
    whole = ll.EarlyStopping(patience=2, min_delta=0.01)
    whole.on_train_begin()
    _feed(whole, values)
    assert (whole.best, whole.best_epoch, whole.wait, whole.stopped_epoch) == (0.5, 2, 3, 4)
    first = ll.EarlyStopping(patience=2, min_delta=0.01)
    first.on_train_begin()
    _feed(first, values[:3])
    second = ll.EarlyStopping(patience=2, min_delta=0.01)
    second.load_state_dict(first.state_dict())
    second.on_train_begin()  # a resumed fit keeps the loaded state
    _feed(second, values[3:], first_epoch=3)
    assert (second.best, second.best_epoch, second.wait, second.stopped_epoch) == (0.5, 2, 3, 4)
    nan = ll.EarlyStopping(patience=5)
    nan.on_train_begin()
    _feed(nan, [float("nan"), 2.0])
    assert nan.best_epoch == 2 and nan.best == 2.0  # NaN never counts as the best


def test_model_checkpoint_best_only_with_min_delta_and_own_writer(tmp_path):
    saved = []
    mc = ll.ModelCheckpoint(tmp_path / "m-{epoch}.lstmlab", monitor="val_accuracy", save_best_only=True,
                            min_delta=0.05, save=lambda model, path: saved.append(path))
    _feed(mc, [0.5, 0.52, 0.6, float("inf"), 0.7])
    assert mc.mode == "max" and [p[-10:] for p in saved] == ["-1.lstmlab", "-3.lstmlab", "-5.lstmlab"]
    assert mc.state_dict() == {"best": 0.7, "best_epoch": 5}


def test_stop_on_divergence_names_the_epoch():
    model = _dense()
    model.build(torch.zeros(2, 3))
    guard = StopOnDivergence()
    guard.set_model(model)
    guard.on_train_begin()
    guard.on_epoch_end(0, {"loss": 1.0})
    assert guard.diverged_epoch is None and not model.stop_training
    with torch.no_grad():
        model.layers[0].weight[0, 0] = float("nan")
    guard.on_epoch_end(1, {"loss": 1.0})
    assert guard.diverged_epoch == 1 and model.stop_training


@pytest.mark.parametrize("name,higher", [("accuracy", True), ("val_accuracy", True), ("val_r2", True),
                                         ("loss", False), ("val_mae", False), ("rmse", False)])
def test_one_rule_for_higher_is_better(name, higher):
    assert M.higher_is_better(name) is higher
    assert M.mode(name) == ("max" if higher else "min")
    assert ll.EarlyStopping(name).mode == ll.ModelCheckpoint("x", name).mode == M.mode(name)


@pytest.mark.parametrize("kwargs, key", [
    ({"min_delta": float("nan")}, "min_delta"), ({"min_delta": float("inf")}, "min_delta"),
    ({"min_delta": "0.1"}, "min_delta"), ({"patience": -1}, "patience"), ({"patience": 1.5}, "patience")])
def test_early_stopping_refuses_a_non_finite_delta_or_bad_patience(kwargs, key):
    # Issue 12 item 8: min_delta = nan was accepted, and restore_best_weights then kept epoch 1.
    with pytest.raises(ValueError, match=f"EarlyStopping {key}: expected"):
        ll.EarlyStopping(**kwargs)
