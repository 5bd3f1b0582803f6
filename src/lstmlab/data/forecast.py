"""Forecast results in original units, next to the persistence and seasonal-naive baselines.

A forecasting :class:`~lstmlab.data.DataSplits` (``csv-series``, ``airline``, ``sunspots``,
``co2``) carries ``meta["forecast"]``, a :class:`ForecastInfo`. The model's outputs are in the
model's units (transformed, then scaled); :func:`forecast_metrics` turns them into the series'
own units and scores them::

    pred = model.predict(splits.test.x)                  # (N, horizon * targets)
    metrics = forecast_metrics(splits, pred, "test")
    # {"rmse", "mae", "mase", "persistence_rmse", "seasonal_naive_rmse", "per_step_rmse", ...}

Baselines are scored on exactly the same windows: persistence repeats the last observed value
for every step ahead; seasonal-naive repeats the value one season before the step (the last
observed one with the same phase). MASE (Hyndman & Koehler 2006) divides the model's MAE by the
in-sample MAE of the seasonal-naive one-step forecast on the training rows (period 1 when the
series has no season: the naive forecast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import DataError, DataSplits, Scaler
from .transforms import Transform

__all__ = ["ForecastInfo", "forecast_metrics", "baselines", "mase", "naive_forecast"]


@dataclass
class ForecastInfo:
    """What it takes to put predictions back into original units and to score baselines.

    ``series`` holds the target columns in original units ``(rows, k)``; ``anchors[split]``
    the last row each window of that split saw; ``scaler`` maps model units to transformed units.
    """

    transform: Transform
    scaler: Scaler
    horizon: int
    targets: list[str]
    period: int
    series: np.ndarray
    anchors: dict[str, np.ndarray]
    n_train: int
    choice: dict[str, Any] = field(default_factory=dict)

    def _stages(self) -> list[np.ndarray]:
        if not hasattr(self, "_cache"):
            self._cache = self.transform.stages(self.series)
        return self._cache

    def _anchors(self, split: str) -> np.ndarray:
        if split not in self.anchors:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(self.anchors)}")
        return self.anchors[split]

    def to_original(self, pred: Any, split: str = "test") -> np.ndarray:
        """Model outputs ``(N, horizon * k)`` (or ``(N, horizon, k)``) -> ``(N, horizon, k)`` original units."""
        if hasattr(pred, "detach"):
            pred = pred.detach().cpu().numpy()
        pred = np.asarray(pred, dtype=np.float64)
        anchors = self._anchors(split)
        k = len(self.targets)
        if pred.shape[0] != len(anchors) or pred.size != len(anchors) * self.horizon * k:
            raise DataError(f"predictions for split {split!r} have shape {pred.shape}; expected "
                            f"({len(anchors)}, {self.horizon * k}) (windows x horizon * targets)")
        flat = self.scaler.inverse_transform(pred.reshape(len(anchors), self.horizon * k))
        return self.transform.invert(flat.reshape(len(anchors), self.horizon, k), anchors, self._stages())

    def truth(self, split: str = "test") -> np.ndarray:
        """The true values ``(N, horizon, k)`` for the windows of ``split``."""
        anchors = self._anchors(split)
        rows = anchors[:, None] + 1 + np.arange(self.horizon)[None, :]
        return self.series[rows] if len(anchors) else np.zeros((0, self.horizon, len(self.targets)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no arrays)."""
        return {"transform": self.transform.to_dict(), "horizon": self.horizon, "targets": list(self.targets),
                "seasonal_period": self.period, "train_rows": self.n_train, "choice": self.choice,
                "windows": {k: int(len(v)) for k, v in self.anchors.items()}}


def naive_forecast(series: np.ndarray, anchors: np.ndarray, horizon: int, period: int = 1) -> np.ndarray:
    """Seasonal-naive forecasts ``(N, horizon, k)``: step ``j`` takes row ``a + j - m*ceil(j/m)``.

    ``period=1`` is persistence (every step repeats row ``a``)."""
    m = max(1, int(period))
    j = np.arange(1, horizon + 1)
    back = j - m * np.ceil(j / m).astype(np.int64)
    rows = np.asarray(anchors, dtype=np.int64)[:, None] + back[None, :]
    return np.asarray(series, dtype=np.float64)[rows]


def _info(splits: DataSplits) -> ForecastInfo:
    info = splits.meta.get("forecast")
    if not isinstance(info, ForecastInfo):
        raise DataError(f"{splits.meta.get('name', 'data')}: not a forecasting data set (meta['forecast'] "
                        "is missing); forecast metrics need csv-series or a packaged series")
    return info


def baselines(splits: DataSplits, split: str = "test") -> dict[str, np.ndarray]:
    """Persistence and seasonal-naive forecasts ``(N, horizon, k)`` for the windows of ``split``."""
    info = _info(splits)
    anchors = info._anchors(split)
    return {"persistence": naive_forecast(info.series, anchors, info.horizon, 1),
            "seasonal_naive": naive_forecast(info.series, anchors, info.horizon, info.period)}


def mase(y_true: np.ndarray, y_pred: np.ndarray, history: np.ndarray, period: int = 1) -> float:
    """Mean absolute scaled error: MAE of ``y_pred`` over the in-sample MAE of the period-``m`` naive forecast.

    ``y_true``/``y_pred`` end in ``k`` target columns, ``history`` is ``(rows, k)`` (training
    rows); with several columns the per-column ratios are averaged. NaN when the scale is 0.
    """
    history = np.asarray(history, dtype=np.float64).reshape(len(history), -1)
    k = history.shape[1]
    m = max(1, int(period))
    if len(history) <= m:
        return float("nan")
    scale = np.mean(np.abs(history[m:] - history[:-m]), axis=0)
    err = np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)).reshape(-1, k).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), np.nan)
    return float(np.mean(ratio))


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def forecast_metrics(splits: DataSplits, pred: Any, split: str = "test") -> dict[str, Any]:
    """Score model outputs on ``split`` in original units, with the baselines on the same windows.

    ``pred`` is what the model returns for ``getattr(splits, split).x`` (numpy or torch). Returns
    ``rmse``, ``mae``, ``mase``, ``persistence_rmse``, ``seasonal_naive_rmse``, their MAEs,
    ``per_step_rmse`` (one per horizon step), ``seasonal_period``, ``transform``, ``windows``.
    """
    info = _info(splits)
    model = info.to_original(pred, split)
    true = info.truth(split)
    base = baselines(splits, split)
    history = info.series[: info.n_train]
    return {
        "rmse": _rmse(model, true),
        "mae": float(np.mean(np.abs(model - true))) if true.size else float("nan"),
        "mase": mase(true, model, history, info.period),
        "persistence_rmse": _rmse(base["persistence"], true),
        "seasonal_naive_rmse": _rmse(base["seasonal_naive"], true),
        "persistence_mae": float(np.mean(np.abs(base["persistence"] - true))) if true.size else float("nan"),
        "seasonal_naive_mae": float(np.mean(np.abs(base["seasonal_naive"] - true))) if true.size else float("nan"),
        "per_step_rmse": [_rmse(model[:, j], true[:, j]) for j in range(info.horizon)],
        "seasonal_period": info.period,
        "transform": info.transform.name,
        "windows": int(len(true)),
    }
