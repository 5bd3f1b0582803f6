"""``GradientMonitor(on_vanishing="fix")``: chrono biases in place for a vanishing LSTM once the loss
has plateaued (checked against the chrono formula), the doctor's treatment named for what cannot be
fixed in place (a SimpleRNN), nothing done while the loss still falls."""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

import lstmlab as ll


def _data(steps: int, n: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=n)  # labels unrelated to the inputs: the loss cannot fall
    return x, y


def _fit(layer, steps: int, mon: ll.GradientMonitor, epochs: int = 3):
    torch.manual_seed(0)
    model = ll.Sequential([layer, ll.Dense(2, activation="softmax", seed=1)])
    model.compile(loss="sparse_categorical_crossentropy", learning_rate=1e-4)
    x, y = _data(steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[mon], seed=0)
    return model, hist


def test_vanishing_lstm_on_a_plateau_gets_chrono_biases_in_place():
    lstm = ll.LSTM(6, seed=0, kernel_initializer="zeros", recurrent_initializer="zeros")
    mon = ll.GradientMonitor(every=1, on_vanishing="fix", slow_loss_steps=4, on_slow_loss="ignore",
                             on_param_growth="ignore")
    model, hist = _fit(lstm, 120, mon, epochs=1)
    events = [e for e in hist.events if e["event"] == "chrono"]
    assert len(events) == 1 and events[0]["chrono_max_len"] == 120 and events[0]["layer"] == "lstm/forward"
    h = lstm.units
    bf = lstm.bias_ih[h:2 * h].detach().double()
    # Tallec & Ollivier 2018: b_f = log(u), u ~ U[1, T - 1]; b_i = -b_f (trained a few steps after the move)
    assert bool((bf > -0.05).all()) and bool((bf < math.log(119) + 0.05).all()) and float(bf.std()) > 0.3
    torch.testing.assert_close(lstm.bias_ih[:h].detach().double(), -bf, atol=0.05, rtol=0)


def test_what_cannot_be_fixed_in_place_names_the_doctor_treatment():
    mon = ll.GradientMonitor(every=1, on_vanishing="fix", slow_loss_steps=4, on_slow_loss="ignore",
                             on_param_growth="ignore")
    _, hist = _fit(ll.SimpleRNN(6, seed=0), 120, mon, epochs=1)
    doc = [e for e in hist.events if e["event"] == "doctor"]
    assert len(doc) == 1 and "replace SimpleRNN" in doc[0]["treatment"] and "Patch(size=3)" in doc[0]["treatment"]
    assert not any(e["event"] == "chrono" for e in hist.events)


def test_no_fix_before_the_loss_has_plateaued():
    mon = ll.GradientMonitor(every=1, on_vanishing="fix", slow_loss_steps=1000, on_slow_loss="ignore",
                             on_param_growth="ignore")
    _, hist = _fit(ll.LSTM(6, seed=0, kernel_initializer="zeros", recurrent_initializer="zeros"), 120, mon)
    assert any(e["event"] == "vanishing" for e in hist.events)
    assert not any(e["event"] in ("chrono", "doctor") for e in hist.events)
