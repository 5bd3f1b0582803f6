"""Turn a multivariate time series into a windowed supervised forecasting problem.

Shared by the ``csv-series`` loader and the packaged forecasting sets (airline, sunspots, co2).
The series is split chronologically by the time of each window's *last target*: training
windows only ever see targets from the first ``1 - val - test`` of the rows, and both scalers
are fitted on those training rows only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import DataError, DataSplits, SequenceData, check_fractions, make_scaler

__all__ = ["interpolate_missing", "forecast_splits"]


def interpolate_missing(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Linear interpolation of NaNs per column (edges take the nearest value).

    Returns the filled copy and the number of cells filled.
    """
    values = np.array(values, dtype=np.float64, copy=True)
    if values.ndim == 1:
        values = values[:, None]
    filled = 0
    idx = np.arange(len(values))
    for j in range(values.shape[1]):
        col = values[:, j]
        bad = np.isnan(col)
        if bad.all():
            raise DataError(f"column {j}: every value is missing; nothing to interpolate from")
        if bad.any():
            col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
            filled += int(bad.sum())
    return values, filled


def _positive_int(name: str, value: Any) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise DataError(f"option {name!r}: expected a positive integer, got {value!r}") from None
    if v < 1 or v != value:
        raise DataError(f"option {name!r}: expected a positive integer, got {value!r}")
    return v


def forecast_splits(
    values: np.ndarray,
    columns: Sequence[str],
    targets: Sequence[str],
    inputs: Sequence[str],
    *,
    window: int = 12,
    horizon: int = 1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scale: str | None = "standard",
    times: Sequence[str] | None = None,
    name: str = "series",
    source: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> DataSplits:
    """Windowed forecasting splits.

    ``values`` is ``(rows, len(columns))`` without NaN. ``x[i]`` holds ``window`` consecutive
    rows of the ``inputs`` columns; ``y[i]`` holds the next ``horizon`` rows of the ``targets``
    columns, flattened step-major to ``(horizon * len(targets),)``. ``meta['scaler']`` inverts
    scaled targets (or predictions) to original units.
    """
    window = _positive_int("window", window)
    horizon = _positive_int("horizon", horizon)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    columns = list(columns)
    n = len(values)
    if np.isnan(values).any():
        raise DataError(f"{name}: the series has missing values; interpolate or drop them first")
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    n_train = n - n_val - n_test
    if n_train < window + horizon:
        raise DataError(f"{name}: {n} rows leave {n_train} for training, fewer than window + horizon = "
                        f"{window + horizon}; use a smaller window or smaller val/test fractions")
    ti = [columns.index(c) for c in targets]
    xi = [columns.index(c) for c in inputs]
    train_rows = values[:n_train]
    x_scaler = make_scaler(scale, [columns[j] for j in xi]).fit(train_rows[:, xi])
    y_scaler = make_scaler(scale, [columns[j] for j in ti], horizon).fit(train_rows[:, ti])

    xs = x_scaler.transform(values[:, xi]).astype(np.float32)
    ys = y_scaler.transform(values[:, ti]).astype(np.float32)
    starts = np.arange(0, n - window - horizon + 1)
    if len(starts):
        x = np.stack([xs[s:s + window] for s in starts])
        y = np.stack([ys[s + window:s + window + horizon].reshape(-1) for s in starts])
    else:
        x = np.zeros((0, window, len(xi)), np.float32)
        y = np.zeros((0, horizon * len(ti)), np.float32)
    last = starts + window + horizon - 1
    part = np.where(last < n_train, 0, np.where(last < n_train + n_val, 1, 2))

    def split(k: int) -> SequenceData:
        sel = part == k
        return SequenceData(x[sel].astype(np.float32), y[sel].astype(np.float32), None)

    # Persistence ("tomorrow = today") baseline on the test windows, in original units.
    baseline: dict[str, Any] = {}
    test_sel = part == 2
    if test_sel.any():
        raw_t = values[:, ti]
        pred = np.stack([np.tile(raw_t[s + window - 1], horizon) for s in starts[test_sel]])
        true = np.stack([raw_t[s + window:s + window + horizon].reshape(-1) for s in starts[test_sel]])
        baseline = {"persistence_test_mse": float(np.mean((pred - true) ** 2)),
                    "persistence_test_mae": float(np.mean(np.abs(pred - true))),
                    "note": "predict the last observed value for every horizon step (original units)"}
    target_names = [f"{columns[j]}[t+{h + 1}]" for h in range(horizon) for j in ti]
    meta: dict[str, Any] = {
        "name": name,
        "kind": "regression",
        "target": "sequence",
        "input_type": "features",
        "n_classes": None,
        "class_names": None,
        "n_features": len(xi),
        "n_outputs": horizon * len(ti),
        "feature_names": [columns[j] for j in xi],
        "target_columns": [columns[j] for j in ti],
        "target_names": target_names,
        "window": window,
        "horizon": horizon,
        "rows": {"train": n_train, "val": n_val, "test": n_test},
        "scaler": y_scaler,
        "feature_scaler": x_scaler,
        "scaling": {"method": y_scaler.method, "fitted_on": f"first {n_train} rows (training part only)"},
        "baseline": baseline,
        "vocab": None,
        "source": source,
    }
    if times is not None:
        first_target = np.array([str(times[s + window]) for s in starts], dtype=object)
        meta["times"] = {k: list(first_target[part == i]) for i, k in enumerate(("train", "val", "test"))}
    if extra_meta:
        meta.update(extra_meta)
    return DataSplits(split(0), split(1), split(2), meta)
