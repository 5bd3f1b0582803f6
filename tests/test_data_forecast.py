"""Forecasting: transforms and their inverse, baselines, MASE, transform='auto', metrics in original units."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from lstmlab.data import DataError, Transform, baselines, forecast_metrics, load, mase
from lstmlab.data.forecast import naive_forecast

FIX = Path(__file__).parent / "fixtures"
SPECS = ["none", "log", "diff", "seasonal-diff", "log+diff", "log+seasonal-diff", "seasonal-diff+diff",
         "log+seasonal-diff+diff"]


def _series(n=120, m=12, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (100 + 2 * t + 20 * np.sin(2 * np.pi * t / m) + rng.normal(0, 3, n))[:, None]


@pytest.mark.parametrize("spec,horizon", list(itertools.product(SPECS, [1, 5, 14, 30])))
def test_invert_of_the_true_transformed_values_gives_the_series(spec, horizon):
    x = np.concatenate([_series(), _series(seed=1) + 50], axis=1)
    tr = Transform.parse(spec, 12)
    stages = tr.stages(x)
    anchors = np.arange(tr.lag + 3, len(x) - horizon)
    rows = anchors[:, None] + 1 + np.arange(horizon)[None, :]
    back = tr.invert(stages[-1][rows], anchors, stages)
    np.testing.assert_allclose(back, x[rows], rtol=1e-10)


@pytest.mark.parametrize("horizon", [1, 7, 12, 25])
def test_zero_change_forecasts_are_the_naive_baselines(horizon):
    # Independent formulas: predicting "no change" after diff is persistence, after seasonal-diff
    # it is the seasonal-naive forecast x[a + j - m * ceil(j / m)].
    x = _series()
    anchors = np.arange(20, len(x) - horizon)
    for spec, period in (("diff", 1), ("seasonal-diff", 12)):
        tr = Transform.parse(spec, 12)
        got = tr.invert(np.zeros((len(anchors), horizon, 1)), anchors, tr.stages(x))
        want = np.stack([[x[a + j - period * int(np.ceil(j / period))] for j in range(1, horizon + 1)]
                         for a in anchors])
        np.testing.assert_allclose(got, want)
        np.testing.assert_allclose(naive_forecast(x, anchors, horizon, period), want)


def test_transform_spec_errors():
    with pytest.raises(DataError, match=r"option 'transform': unknown step 'dif'.*did you mean 'diff'"):
        Transform.parse("log+dif")
    with pytest.raises(DataError, match=r"'seasonal-diff' needs a season length; set period"):
        Transform.parse("seasonal-diff", None)
    with pytest.raises(DataError, match=r"names a step twice"):
        Transform.parse("diff+diff")
    assert Transform.parse("diff+log").name == "log+diff"  # canonical order
    assert Transform.parse("seasonal_diff", 4).lag == 4 and Transform.parse("none").lag == 0


def test_mase_by_hand():
    # in-sample naive errors |2-1|, |4-2|, |7-4| -> scale 2; model MAE (1 + 2) / 2 = 1.5 -> 0.75
    assert mase(np.array([10.0, 12.0]), np.array([11.0, 10.0]), np.array([1.0, 2, 4, 7]), 1) == pytest.approx(0.75)
    # seasonal scale m = 2: |4-1|, |7-2| -> 4
    assert mase(np.array([10.0]), np.array([12.0]), np.array([1.0, 2, 4, 7]), 2) == pytest.approx(0.5)


def test_airline_brownlee_split_seasonal_naive_is_the_published_41_85():
    s = load("airline", val_fraction=0.0, test_fraction=0.33)
    m = forecast_metrics(s, s.test.y)  # the model's own targets: a perfect forecast
    assert m["seasonal_naive_rmse"] == pytest.approx(41.85, abs=0.01)
    assert m["rmse"] < 1e-3 and m["mase"] < 1e-4 and m["seasonal_period"] == 12 and m["windows"] == 48
    raw = np.loadtxt(Path(s.meta["path"]), delimiter=",", skiprows=1, usecols=1)
    pers = np.sqrt(np.mean((raw[96:] - raw[95:-1]) ** 2))  # persistence over the 48 test months
    assert m["persistence_rmse"] == pytest.approx(pers)
    assert s.meta["baseline"]["seasonal_naive_test_rmse"] == pytest.approx(m["seasonal_naive_rmse"])


def test_metrics_are_in_original_units_for_every_transform_and_per_step():
    raw = np.loadtxt(FIX / "series.csv", delimiter=",", skiprows=1, usecols=1)
    for spec in ("none", "log+diff", "seasonal-diff+diff"):
        s = load("csv-series", path=FIX / "series.csv", target="temperature", window=5, horizon=3,
                 transform=spec, period=7, test_size=20)
        assert s.meta["transform"]["name"] == spec
        info = s.meta["forecast"]
        np.testing.assert_allclose(info.to_original(s.test.y, "test"), info.truth("test"), atol=1e-4)
        np.testing.assert_allclose(info.truth("test")[-1, :, 0], raw[-3:])
        shifted = s.meta["scaler"].transform(s.meta["scaler"].inverse_transform(s.test.y) + 0.0)
        m = forecast_metrics(s, shifted)
        assert len(m["per_step_rmse"]) == 3 and m["rmse"] < 1e-3
        assert m["windows"] == 20  # one window per test row: those whose last target lies in the last 20 rows
    b = baselines(s, "test")
    a = s.meta["forecast"].anchors["test"]
    np.testing.assert_allclose(b["persistence"][:, 2, 0], raw[a])


def test_bad_prediction_shape_and_non_forecast_data():
    s = load("airline", window=6)
    with pytest.raises(DataError, match=r"predictions for split 'test' have shape \(3,\)"):
        forecast_metrics(s, np.zeros(3))
    with pytest.raises(DataError, match=r"not a forecasting data set"):
        forecast_metrics(load("digits"), np.zeros(3))


def _write(tmp_path, values, start="2000-01", freq="MS", name="s.csv"):
    import pandas as pd

    times = pd.date_range(start, periods=len(values), freq=freq).strftime("%Y-%m")
    p = tmp_path / name
    p.write_text("month,value\n" + "\n".join(f"{t},{v:.6f}" for t, v in zip(times, values)) + "\n")
    return p


def test_auto_picks_differencing_for_a_trend_and_none_for_a_stationary_series(tmp_path):
    rng = np.random.default_rng(3)
    trend = np.cumsum(1.0 + rng.normal(0, 0.5, 200)) + 50  # random walk with drift
    s = load("csv-series", path=_write(tmp_path, trend, name="trend.csv"), window=8)
    assert "diff" in s.meta["transform"]["chosen"]
    ar = np.zeros(300)
    for t in range(1, 300):
        ar[t] = 0.5 * ar[t - 1] + rng.normal()
    s = load("csv-series", path=_write(tmp_path, ar + 10, name="ar.csv"), window=8)
    assert s.meta["transform"]["chosen"] == "none"
    seasonal = _series(n=180)[:, 0]
    s = load("csv-series", path=_write(tmp_path, seasonal, name="season.csv"), window=12)
    assert s.meta["forecast"].period == 12 and "seasonal-diff" in s.meta["transform"]["chosen"]


def test_auto_never_looks_at_the_test_rows(tmp_path):
    x = _series(n=150)[:, 0]
    y = x.copy()
    y[-20:] = 1e6  # wild test rows
    a = load("csv-series", path=_write(tmp_path, x, name="a.csv"), window=6, test_size=20)
    b = load("csv-series", path=_write(tmp_path, y, name="b.csv"), window=6, test_size=20)
    assert a.meta["transform"]["val_rmse"] == b.meta["transform"]["val_rmse"]
    assert a.meta["transform"]["chosen"] == b.meta["transform"]["chosen"]
    np.testing.assert_array_equal(a.train.x, b.train.x)


def test_log_needs_positive_values(tmp_path):
    p = _write(tmp_path, np.r_[np.arange(1, 30), 0.0, np.arange(1, 30)])
    with pytest.raises(DataError, match=r"'log' takes the log, but column 'value' is 0 at time '2002-06'"):
        load("csv-series", path=p, transform="log", window=3)
    s = load("csv-series", path=p, window=3)  # auto leaves log out
    assert "log" not in s.meta["transform"]["val_rmse"]


@pytest.mark.slow
def test_airline_lstm_beats_seasonal_naive_and_brownlee():
    # examples/configs/airline.toml through the Python API; published anchors: seasonal-naive 41.85,
    # Brownlee's LSTM 47.53 (test RMSE, thousands of passengers, last 33% of the months).
    torch = pytest.importorskip("torch")
    import lstmlab as ll

    s = load("airline", val_fraction=0.0, test_fraction=0.33, scale="minmax")
    torch.manual_seed(0)
    model = ll.Sequential([ll.LSTM(32), ll.Dense(1)])
    model.compile(loss="mse", optimizer="adam", clipnorm=1.0, learning_rate=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is fastest
    try:
        model.fit(s.train.x, s.train.y, epochs=300, batch_size=8, verbose=0, seed=0)
    finally:
        torch.set_num_threads(threads)
    m = forecast_metrics(s, model.predict(s.test.x))
    assert m["transform"] != "none" and m["rmse"] < 41.85 < 47.53, m
