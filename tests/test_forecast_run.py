"""``lstmlab train`` on a forecasting series: errors in original units next to the naive forecasts.

Oracles are written here in NumPy from the raw CSV values, not with ``lstmlab.data.forecast``:
the test windows, the differencing and its inverse, the persistence and seasonal-naive
forecasts and the MASE scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lstmlab as ll
from lstmlab import train as T

N, M, TEST = 96, 12, 24  # monthly rows, season, test rows


def _csv(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A trending, seasonal, positive monthly series with noise."""
    t = np.arange(N)
    v = 50 + 0.8 * t + 10 * np.sin(2 * np.pi * t / M) + np.random.default_rng(3).normal(0, 1.5, N)
    path = tmp_path / "sales.csv"
    months = [f"{2000 + k // 12}-{k % 12 + 1:02d}" for k in t]
    path.write_text("month,sales\n" + "".join(f"{m},{x:.6f}\n" for m, x in zip(months, v)))
    return path, np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)


def _train(tmp_path: Path, capsys, data: str) -> tuple[dict, list[str], Path]:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(data + '\n[model]\nlayers = [{type = "LSTM", units = 4}, {type = "Dense"}]\n'
                   "[train]\nepochs = 2\nbatch_size = 16\nseed = 1\n[train.monitor]\nenabled = false\n")
    run = tmp_path / "run"
    assert T.main([str(cfg), "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1]), out, run


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _naive(v: np.ndarray, anchors: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    steps = np.arange(1, horizon + 1)
    truth = v[anchors[:, None] + steps]
    persistence = np.repeat(v[anchors][:, None], horizon, axis=1)
    seasonal = v[anchors[:, None] + steps - M]  # horizon <= M: one season back
    return {"truth": truth, "persistence": persistence, "seasonal": seasonal}


def _check_baselines(fc: dict, v: np.ndarray, anchors: np.ndarray, horizon: int, model: np.ndarray,
                     n_train: int = N - TEST) -> None:
    b = _naive(v, anchors, horizon)
    assert fc["windows"] == len(anchors) and fc["seasonal_period"] == M
    assert fc["persistence_rmse"] == pytest.approx(_rmse(b["persistence"], b["truth"]), rel=1e-9)
    assert fc["seasonal_naive_rmse"] == pytest.approx(_rmse(b["seasonal"], b["truth"]), rel=1e-9)
    assert fc["persistence_mae"] == pytest.approx(np.mean(np.abs(b["persistence"] - b["truth"])), rel=1e-9)
    assert fc["rmse"] == pytest.approx(_rmse(model, b["truth"]), rel=1e-5)
    assert fc["mae"] == pytest.approx(np.mean(np.abs(model - b["truth"])), rel=1e-5)
    assert fc["per_step_rmse"] == pytest.approx([_rmse(model[:, j], b["truth"][:, j]) for j in range(horizon)],
                                                 rel=1e-5)
    train = v[:n_train]  # the training rows (not the validation ones)
    scale = np.mean(np.abs(train[M:] - train[:-M]))  # in-sample seasonal-naive MAE (Hyndman & Koehler)
    assert fc["mase"] == pytest.approx(np.mean(np.abs(model - b["truth"])) / scale, rel=1e-5)


def test_multi_step_diff_forecast_in_original_units(tmp_path, capsys):
    path, v = _csv(tmp_path)
    h, window = 3, 12
    res, out, run = _train(tmp_path, capsys, f'[data]\nsource = "csv-series"\npath = "{path}"\nwindow = {window}\n'
                           f'horizon = {h}\nval_fraction = 0.0\ntest_size = {TEST}\ntransform = "diff"\n'
                           'scale = "none"')
    # test windows: the last target row lies in the last TEST rows
    anchors = np.arange(N - TEST - h, N - h)
    d = np.diff(v, prepend=np.nan)
    x = np.stack([d[a - window + 1:a + 1] for a in anchors])[:, :, None].astype(np.float32)
    model = ll.load_model(run / "model.lstmlab")
    pred = model.predict(x)  # (windows, h): the next h differences
    orig = v[anchors][:, None] + np.cumsum(pred.astype(np.float64), axis=1)
    fc = res["test"]["forecast"]
    assert fc["transform"] == "diff" and len(fc["per_step_rmse"]) == h
    _check_baselines(fc, v, anchors, h, orig)
    assert res["test"]["rmse_original_units"] == fc["rmse"] and res["test"]["mae_original_units"] == fc["mae"]
    assert res["test"]["mase"] == fc["mase"] and res["val"] is None
    stored = json.loads((run / "result.json").read_text())
    assert stored["test"]["forecast"] == fc  # JSON keeps floats exactly
    line = next(s for s in out if s.startswith("test forecast"))
    assert f"persistence RMSE {fc['persistence_rmse']:.4g}" in line and "RMSE per step ahead" in line
    page = (run / "report.html").read_text()
    assert "Forecast in original units" in page and "RMSE per step ahead" in page and "t+3" in page


def test_seasonal_diff_and_minmax_scaling_are_undone(tmp_path, capsys):
    path, v = _csv(tmp_path)
    res, out, run = _train(tmp_path, capsys, f'[data]\nsource = "csv-series"\npath = "{path}"\nwindow = 12\n'
                           f'val_fraction = 0.15\ntest_size = {TEST}\nscale = "minmax"\ntransform = "seasonal-diff"')
    splits = ll.data.load("csv-series", path=str(path), window=12, val_fraction=0.15, test_size=TEST,
                          scale="minmax", transform="seasonal-diff")
    anchors = np.arange(N - TEST - 1, N - 1)
    sd = v[M:] - v[:-M]  # sd[t - M] = v[t] - v[t - M]
    # the targets are an affine image of the seasonal difference: recover the map from the training
    # windows, then undo it and the difference by hand
    n_train = len(splits.train)
    train_anchors = np.arange(N - TEST - 1 - len(splits.val) - n_train, N - TEST - 1 - len(splits.val))
    slope, icept = np.polyfit(sd[train_anchors + 1 - M], splits.train.y[:, 0].astype(np.float64), 1)
    assert np.allclose(slope * sd[train_anchors + 1 - M] + icept, splits.train.y[:, 0], atol=1e-5)
    pred = ll.load_model(run / "model.lstmlab").predict(splits.test.x).astype(np.float64)
    orig = ((pred - icept) / slope + v[anchors + 1 - M][:, None])
    _check_baselines(res["test"]["forecast"], v, anchors, 1, orig, splits.meta["rows"]["train"])
    val = res["val"]["forecast"]
    assert val["windows"] == len(splits.val) and val["transform"] == "seasonal-diff"
    assert any(s.startswith("val forecast") for s in out) and any(s.startswith("test forecast") for s in out)


def test_a_regression_set_that_is_not_a_forecast_keeps_its_scaled_errors():
    from lstmlab.run.session import final_metrics

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5, 2)).astype(np.float32), rng.normal(size=(40, 1)).astype(np.float32)
    scaler = ll.data.Scaler("standard").fit(y[:30] * 3 + 7)
    splits = ll.data.DataSplits(ll.data.SequenceData(x[:30], y[:30]), ll.data.SequenceData(x[30:35], y[30:35]),
                                ll.data.SequenceData(x[35:], y[35:]), {"kind": "regression", "scaler": scaler})
    model = ll.Sequential([ll.LSTM(3), ll.Dense(1)])
    model.compile(loss="mse")
    res = final_metrics(model, splits, 8)["test"]
    pred = scaler.inverse_transform(model.predict(x[35:]))
    assert "forecast" not in res
    assert res["rmse_original_units"] == pytest.approx(_rmse(pred, scaler.inverse_transform(y[35:])), rel=1e-6)
