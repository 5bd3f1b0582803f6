"""GradientMonitor: sampling, records, warnings, stop / fix actions, TensorBoard, plot_history."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.callbacks import Callback
from lstmlab.diagnostics import GradientMonitor, plot_history
from lstmlab.diagnostics.monitor import GradientWarning


def adding(n: int = 64, steps: int = 20, seed: int = 0):
    g = np.random.default_rng(seed)
    values = g.random((n, steps)).astype(np.float32)
    marks = np.zeros((n, steps), np.float32)
    marks[:, 0] = 1.0
    marks[:, -1] = 1.0
    x = np.stack([values, marks], -1)
    return x, (values[:, 0] + values[:, -1])[:, None]


def lstm_model(units: int = 8, lr: float = 1e-2, opt: str = "adam", **kw) -> ll.Sequential:
    m = ll.Sequential([ll.LSTM(units, seed=0, **kw), ll.Dense(1, seed=1)])
    m.compile(loss="mse", optimizer=ll.optim.Optimizer(opt, lr))
    return m


class TapsSeen(Callback):
    """Records, per step, whether the recurrent layers recorded taps for its forward pass."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_backward_end(self, step, logs=None):
        self.seen.append(all(bool(r.last_taps) for r in self.model.recurrent_layers()))


def fit(model, x, y, callbacks, epochs=1, batch_size=8, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=callbacks, seed=0,
                         **kw)
    return hist, [w for w in caught if issubclass(w.category, GradientWarning)]


def test_records_every_n_steps_and_taps_only_when_sampled():
    x, y = adding()
    model = lstm_model()
    seen = TapsSeen()
    mon = GradientMonitor(every=3)
    hist, _ = fit(model, x, y, [mon, seen], epochs=2)
    steps = [r["step"] for r in hist.records]
    assert steps == list(range(0, 16, 3))
    assert seen.seen == [s % 3 == 0 for s in range(16)]
    for r in hist.records:
        assert {"step", "verdict", "decay", "grad_norm", "param_norm", "loss", "decay/lstm/forward"} <= set(r)
        assert r["verdict"] in ("healthy", "vanishing", "exploding")
    assert mon.last_report is not None and mon.last_report.step == 15
    assert [r.record_taps for r in model.recurrent_layers()] == [False]


def test_native_engine_layers_are_not_tapped():
    x, y = adding()
    model = lstm_model(engine="native")
    mon = GradientMonitor(every=2)
    hist, _ = fit(model, x, y, [mon])
    assert len(hist.records) == 4
    assert any("no gradient taps" in r for r in mon.last_report.reasons)
    assert mon.last_report.grad_norm > 0


def test_tbptt_samples_first_chunk():
    x, _ = adding(steps=12)
    y = np.cumsum(x[..., :1], 1)          # a per-step target: one backward per chunk of 4 steps
    model = lstm_model(return_sequences=True)
    seen = TapsSeen()
    hist, _ = fit(model, x, y, [GradientMonitor(every=4), seen], tbptt=4)
    assert len(seen.seen) == 8 * 3
    steps = [r["step"] for r in hist.records]
    assert steps == [0, 6, 12, 18]       # sampled at the first chunk of the batch that is due
    assert [k for k, s in enumerate(seen.seen) if s] == steps


def test_vanishing_warns_once_and_stop():
    x, y = adding(steps=120)
    model = ll.Sequential([ll.SimpleRNN(8, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse")
    hist, warns = fit(model, x, y, [GradientMonitor(every=1)], epochs=2)
    assert len(warns) == 1 and "vanishing" in str(warns[0].message)
    assert "replace SimpleRNN with LSTM or GRU" in str(warns[0].message)
    assert [e["event"] for e in hist.events] == ["vanishing"]
    model = ll.Sequential([ll.SimpleRNN(8, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse")
    hist, _ = fit(model, x, y, [GradientMonitor(every=1, on_vanishing="stop")], epochs=3)
    assert model.global_step == 1 and len(hist.epoch) == 1   # fit stops after the batch


def exploding_model(opt="sgd", lr=0.5):
    x, y = adding(steps=50)
    model = lstm_model(units=16, opt=opt, lr=lr)
    model.build(torch.as_tensor(x[:2]))
    with torch.no_grad():
        model.layers[0].weight_hh.mul_(14.0)
    return model, x, y


def test_exploding_fix_switches_clipping_on():
    model, x, y = exploding_model()
    hist, warns = fit(model, x, y, [GradientMonitor(every=2, on_exploding="fix", on_nan="ignore")])
    assert model.global_clipnorm == 1.0
    assert {"step": 0, "event": "clip", "global_clipnorm": 1.0} in hist.events
    assert any("exploding" in str(w.message) and "compile(clipnorm=1.0)" in str(w.message) for w in warns)


class Poison(Callback):
    """Puts a NaN into a weight before the forward pass of the given steps."""

    def __init__(self, steps) -> None:
        self.steps = set(steps)

    def on_batch_begin(self, batch, logs=None):
        if self.model.global_step in self.steps:
            with torch.no_grad():
                self.model.layers[0].weight_hh[0, 0] = float("nan")


def test_nan_fix_restores_weights_and_halves_lr():
    x, y = adding()
    model = lstm_model(lr=0.01)
    mon = GradientMonitor(every=2, on_nan="fix")
    hist, warns = fit(model, x, y, [Poison([5, 6]), mon], epochs=2)
    restores = [e for e in hist.events if e["event"] == "restore"]
    assert restores == [{"step": 5, "event": "restore", "lr": 0.005, "restored_step": 4},
                        {"step": 6, "event": "restore", "lr": 0.0025, "restored_step": 4}]
    assert model.global_step == 16
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(model.evaluate(x, y))
    assert model.optimizer.param_groups[0]["lr"] == 0.0025
    assert sum("non-finite" in str(w.message) for w in warns) == 1


def test_restore_twice_from_one_snapshot():
    x, y = adding()
    model = lstm_model()
    fit(model, x, y, [], epochs=1)
    mon = GradientMonitor(every=1, on_nan="fix")
    mon.set_model(model)
    mon.on_train_begin()
    snap = {k: v.clone() for k, v in model.optimizer.state_dict()["state"][0].items()}

    def step():
        model.zero_grad()
        model.compute_loss(torch.as_tensor(x), torch.as_tensor(y)).backward()
        model.optimizer.step()

    for k in range(2):   # a later step must not write into the snapshot through the restored state
        step()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mon._restore(k, "test")
        state = model.optimizer.state_dict()["state"][0]
        for key, v in snap.items():
            assert torch.equal(state[key], v), key
    assert mon.restores == 2


def test_nan_restore_gives_up_after_max_restores():
    x, y = adding()
    model = lstm_model()
    mon = GradientMonitor(every=1, on_nan="fix", max_restores=2)
    hist, _ = fit(model, x, y, [Poison(range(3, 100)), mon], epochs=3)
    events = [e["event"] for e in hist.events]
    assert events.count("restore") == 2 and events[-1] == "stop"
    assert model.global_step == 6


def test_nan_stop_and_warn():
    x, y = adding()
    model = lstm_model()
    hist, warns = fit(model, x, y, [Poison([3]), GradientMonitor(every=1, on_nan="stop")], epochs=2)
    assert model.global_step == 4 and len(hist.epoch) == 1
    assert hist.events[-1]["event"] == "nan" and hist.events[-1]["action"] == "stop"
    nf = [r for r in hist.records if r["step"] == 3]
    assert nf and nf[0]["verdict"] == "exploding"
    model = lstm_model()
    hist, warns = fit(model, x, y, [Poison([3]), GradientMonitor(every=1, on_nan="warn")], epochs=1)
    assert sum("non-finite" in str(w.message) for w in warns) == 1


def test_slow_loss_and_param_growth():
    x, y = adding()
    model = lstm_model(lr=1e-9)
    hist, warns = fit(model, x, y, [GradientMonitor(every=5, slow_loss_steps=10)], epochs=12, batch_size=64)
    assert [e["event"] for e in hist.events] == ["slow_loss"]
    assert hist.events[0]["step"] == 9
    assert "learning_rate" in str(warns[0].message)

    class Inflate(Callback):
        def on_batch_end(self, batch, logs=None):
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(1.2)

    model = lstm_model()
    hist, warns = fit(model, x, y, [GradientMonitor(every=1, on_param_growth="fix", growth_window=5,
                                                    on_vanishing="ignore", on_exploding="ignore",
                                                    on_nan="ignore"), Inflate()], epochs=1)
    kinds = [e["event"] for e in hist.events]
    assert "param_growth" in kinds and "weight_decay" in kinds
    assert model.optimizer.param_groups[0]["weight_decay"] == 1e-4
    assert "weight_decay" in str([w.message for w in warns])


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = adding()
    model = lstm_model()
    fit(model, x, y, [GradientMonitor(every=2, log_dir=str(tmp_path / "tb"))])
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"gradients/grad_norm", "gradients/param_norm", "gradients/decay", "gradients/loss",
            "gradients/decay/lstm/forward", "gradients/verdict"} <= set(tags)
    assert [e.step for e in acc.Scalars("gradients/grad_norm")] == [0, 2, 4, 6]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="every"):
        GradientMonitor(every=0)
    with pytest.raises(ValueError, match="on_vanishing"):
        GradientMonitor(on_vanishing="repair")
    with pytest.raises(ValueError, match="on_nan"):
        GradientMonitor(on_nan="explode")
    GradientMonitor(on_slow_loss=None)


def test_plot_history(tmp_path):
    x, y = adding()
    model = lstm_model()
    hist, _ = fit(model, x, y, [Poison([5]), GradientMonitor(every=2, on_nan="fix")], epochs=2,
                  validation_data=(x[:8], y[:8]))
    for target in (hist, model, hist.to_dict()):
        path = tmp_path / "h.png"
        plot_history(target, path)
        assert path.stat().st_size > 1000
    plot_history(hist, tmp_path / "h.svg")
    with pytest.raises(ValueError, match="history"):
        plot_history(42, tmp_path / "x.png")
