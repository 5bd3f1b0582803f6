"""The four cases of examples/vanishing.py, at small sizes: the same code the example runs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vanishing.py"


@pytest.fixture(scope="module")
def ex():
    spec = importlib.util.spec_from_file_location("vanishing_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_tanh_rnn_on_adding_problem_vanishes(ex, tmp_path):
    res = ex.case_a(length=120, n=16, units=16, out=str(tmp_path))
    assert res["verdict"] == "vanishing"
    assert res["decay"] < -3
    assert res["report"].remedies[0] == "replace SimpleRNN with LSTM or GRU"
    assert res["fixed_verdict"] == "healthy"    # the chrono LSTM it suggests
    assert Path(res["plot"]).stat().st_size > 1000


def test_b_forget_biased_lstm_is_healthy(ex):
    res = ex.case_b(length=20, n=16, units=16)
    assert res["verdict"] == "healthy"
    assert -3 < res["decay"] < 3
    assert res["report"].remedies == []


def test_c_scaled_lstm_explodes_and_clipping_trains(ex):
    res = ex.case_c(length=30, n=128, units=16, epochs=4)
    assert res["verdict"] == "exploding" and res["scale"] > 1
    assert res["remedy"] == "compile(clipnorm=1.0)"
    clipped = res["losses"]["clipnorm=1.0"]
    assert all(math.isfinite(v) for v in clipped)
    assert clipped[-1] < clipped[0]
    plain = res["losses"]["no clipping"]
    assert not all(math.isfinite(v) and v < 10 for v in plain)   # without clipping it blows up


def test_d_nan_mid_training_is_restored(ex, tmp_path):
    res = ex.case_d(length=20, n=256, units=16, epochs=4, out=str(tmp_path))
    assert res["restores"], "expected at least one restore event"
    first = res["restores"][0]
    assert first["event"] == "restore" and first["step"] > 0 and first["lr"] == pytest.approx(1.5)
    assert res["steps"] == 4 * 8
    assert math.isfinite(res["final_loss"])
    assert math.isfinite(res["epoch_losses"][-1])
    assert Path(res["plot"]).stat().st_size > 1000
