"""Turn a multivariate time series into a windowed supervised forecasting problem.

Shared by the ``csv-series`` loader and the packaged forecasting sets (airline, sunspots, co2).
Order of work: transform the target columns (:mod:`.transforms`), cut windows, scale. The series
is split chronologically by the row of each window's *last target*: training windows only ever
see targets from the training rows, and the scalers are fitted on those rows only.

``transform="auto"`` picks the transform on the validation windows (or, without validation
rows, on the last 20% of the training rows), never on the test rows: for each candidate
(:func:`.transforms.candidates`) a ridge regression from the scaled window to the scaled
targets is fitted on the training windows, its predictions are clipped to the range of the
training targets (+-10%; like a tanh network it cannot extrapolate far) and turned back into
original units; the simplest candidate whose RMSE is within 2% of the best wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import DataError, DataSplits, Scaler, SequenceData, check_fractions, make_scaler
from .forecast import ForecastInfo, naive_forecast
from .transforms import Transform, candidates

__all__ = ["interpolate_missing", "forecast_splits", "split_sizes", "TRANSFORM_RULE"]

TRANSFORM_RULE = ("ridge regression on the window, clipped to the training target range, scored by RMSE in "
                  "original units on the validation windows (last 20% of training rows without validation); "
                  "simplest candidate within 2% of the best")


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
    if v < 1 or v != value or isinstance(value, bool):
        raise DataError(f"option {name!r}: expected a positive integer, got {value!r}")
    return v


def split_sizes(n: int, val_fraction: float, test_fraction: float,
                sizes: tuple[int | None, int | None] = (None, None)) -> tuple[int, int, int]:
    """Rows for train / val / test: ``sizes`` = (val rows, test rows) where given, else the fractions."""
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    n_test = int(round(n * test_fraction)) if sizes[1] is None else int(sizes[1])
    n_val = int(round(n * val_fraction)) if sizes[0] is None else int(sizes[0])
    return n - n_val - n_test, n_val, n_test


@dataclass
class _Windows:
    x: np.ndarray
    y: np.ndarray
    anchors: np.ndarray
    x_scaler: Scaler
    y_scaler: Scaler
    stages: list[np.ndarray]


def _make_windows(values: np.ndarray, ti: list[int], xi: list[int], columns: list[str], tr: Transform,
                  window: int, horizon: int, n_fit: int, scale: str | None) -> _Windows:
    """Transform the targets, cut every window that starts after the transform's lag, scale."""
    stages = tr.stages(values[:, ti])
    series = values.copy()
    series[:, ti] = stages[-1]
    lag = tr.lag
    x_scaler = make_scaler(scale, [columns[j] for j in xi]).fit(series[lag:n_fit, xi])
    y_scaler = make_scaler(scale, [columns[j] for j in ti], horizon).fit(series[lag:n_fit, ti])
    xs = x_scaler.transform(series[:, xi]).astype(np.float32)
    ys = y_scaler.transform(series[:, ti]).astype(np.float32)
    starts = np.arange(lag, len(values) - window - horizon + 1)
    if len(starts):
        x = np.lib.stride_tricks.sliding_window_view(xs, window, axis=0)[starts].transpose(0, 2, 1)
        y = np.lib.stride_tricks.sliding_window_view(ys, horizon, axis=0)[starts + window].transpose(0, 2, 1)
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y.reshape(len(starts), -1))
    else:
        x = np.zeros((0, window, len(xi)), np.float32)
        y = np.zeros((0, horizon * len(ti)), np.float32)
    return _Windows(x, y, starts + window - 1, x_scaler, y_scaler, stages)


def _ridge_score(w: _Windows, tr: Transform, raw: np.ndarray, fit: np.ndarray, ev: np.ndarray,
                 horizon: int) -> float:
    """RMSE in original units of a clipped ridge fit (see the module doc) on the ``ev`` windows."""
    design = np.concatenate([w.x.reshape(len(w.x), -1), np.ones((len(w.x), 1), np.float32)], axis=1)
    a, b = design[fit].astype(np.float64), w.y[fit].astype(np.float64)
    beta = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ b)
    lo, hi = b.min(axis=0), b.max(axis=0)
    pred = np.clip(design[ev] @ beta, lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    k = raw.shape[1]
    orig = tr.invert(w.y_scaler.inverse_transform(pred).reshape(-1, horizon, k), w.anchors[ev], w.stages)
    true = raw[w.anchors[ev][:, None] + 1 + np.arange(horizon)[None, :]]
    return float(np.sqrt(np.mean((orig - true) ** 2)))


def _choose_transform(values: np.ndarray, ti: list[int], xi: list[int], columns: list[str], window: int,
                      horizon: int, n_train: int, n_val: int, period: int | None) -> tuple[Transform, dict]:
    """``transform = "auto"``: the rule in the module doc. Returns the choice and the scores."""
    if n_val > 0:
        n_fit, n_end, on = n_train, n_train + n_val, "validation windows"
    else:
        n_fit = n_train - max(horizon, int(round(0.2 * n_train)))
        n_end, on = n_train, f"training rows {n_fit + 1}..{n_train} (no validation rows)"
    scores: dict[str, float] = {}
    skipped: list[str] = []
    for tr in candidates(period, bool(np.all(values[:, ti] > 0))):
        if n_fit - tr.lag - window - horizon + 1 < 4:
            skipped.append(tr.name)
            continue
        w = _make_windows(values, ti, xi, columns, tr, window, horizon, n_fit, "standard")
        last = w.anchors + horizon
        fit, ev = last < n_fit, (last >= n_fit) & (last < n_end)
        if ev.any():
            scores[tr.name] = _ridge_score(w, tr, values[:, ti], fit, ev, horizon)
    if not scores:
        return Transform(), {"rule": TRANSFORM_RULE, "chosen": "none", "note": "too few rows to choose; none used"}
    best = min(scores.values())
    name = next(n for n in scores if scores[n] <= 1.02 * best)
    choice = {"rule": TRANSFORM_RULE, "chosen": name, "on": on,
              "val_rmse": {k: round(v, 6) for k, v in scores.items()}, "skipped_too_short": skipped}
    return Transform.parse(name, period), choice


def _resolve_transform(transform: str | Transform, period: int | None, values: np.ndarray, ti: list[int],
                       xi: list[int], columns: list[str], window: int, horizon: int, n_train: int,
                       n_val: int, times: Sequence[str] | None) -> tuple[Transform, dict]:
    if isinstance(transform, Transform):
        return transform, {"chosen": transform.name, "rule": "given"}
    if isinstance(transform, str) and transform.strip().lower() == "auto":
        return _choose_transform(values, ti, xi, columns, window, horizon, n_train, n_val, period)
    tr = Transform.parse(transform, period)
    bad = tr.first_invalid(values[:, ti])
    if bad is not None:
        when = f" at time {times[bad[0]]!r}" if times is not None else f" in row {bad[0] + 1} of the series"
        raise DataError(f"option 'transform': {tr.name!r} takes the log, but column {columns[ti[bad[1]]]!r} "
                        f"is {values[bad[0], ti[bad[1]]]:g}{when}; log needs values > 0")
    return tr, {"chosen": tr.name, "rule": "given"}


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
    transform: str | Transform = "none",
    period: int | None = None,
    sizes: tuple[int | None, int | None] = (None, None),
    times: Sequence[str] | None = None,
    name: str = "series",
    source: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> DataSplits:
    """Windowed forecasting splits.

    ``values`` is ``(rows, len(columns))`` without NaN. ``x[i]`` holds ``window`` consecutive
    rows of the ``inputs`` columns (targets among them transformed); ``y[i]`` the next
    ``horizon`` rows of the transformed ``targets``, scaled and flattened step-major to
    ``(horizon * len(targets),)``. ``sizes`` = (val rows, test rows) overrides the fractions.
    ``meta['forecast']`` (:class:`~lstmlab.data.forecast.ForecastInfo`) puts predictions back
    into original units; ``meta['scaler']`` only undoes the scaling.
    """
    window, horizon = _positive_int("window", window), _positive_int("horizon", horizon)
    if period is not None:
        period = _positive_int("period", period)
    values = np.asarray(values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    columns = list(columns)
    if np.isnan(values).any():
        raise DataError(f"{name}: the series has missing values; interpolate or drop them first")
    n = len(values)
    n_train, n_val, n_test = split_sizes(n, val_fraction, test_fraction, sizes)
    pos = {c: j for j, c in enumerate(columns)}
    ti, xi = [pos[c] for c in targets], [pos[c] for c in inputs]
    tr, choice = _resolve_transform(transform, period, values, ti, xi, columns, window, horizon, n_train, n_val,
                                    times)
    if n_train < tr.lag + window + horizon:
        raise DataError(f"{name}: {n} rows leave {n_train} for training, fewer than window + horizon"
                        + (f" + the transform's lag {tr.lag}" if tr.lag else "") + f" = {tr.lag + window + horizon}"
                        "; use a smaller window or smaller val/test parts")
    w = _make_windows(values, ti, xi, columns, tr, window, horizon, n_train, scale)
    last = w.anchors + horizon
    part = np.where(last < n_train, 0, np.where(last < n_train + n_val, 1, 2))
    splits = [SequenceData(w.x[part == k], w.y[part == k], None) for k in range(3)]
    info = ForecastInfo(tr, w.y_scaler, horizon, [columns[j] for j in ti], int(period or 1), values[:, ti].copy(),
                        {s: w.anchors[part == k] for k, s in enumerate(("train", "val", "test"))}, n_train, choice)
    meta = _meta(info, w, columns, xi, window, (n_train, n_val, n_test), name, source)
    if times is not None:
        first_target = np.asarray([str(t) for t in times], dtype=object)[w.anchors + 1]
        meta["times"] = {k: list(first_target[part == i]) for i, k in enumerate(("train", "val", "test"))}
    meta.update(extra_meta or {})
    return DataSplits(*splits, meta)


def _meta(info: ForecastInfo, w: _Windows, columns: list[str], xi: list[int], window: int,
          rows: tuple[int, int, int], name: str, source: str) -> dict[str, Any]:
    k, horizon = len(info.targets), info.horizon
    baseline: dict[str, Any] = {}
    test = info.anchors["test"]
    if len(test):
        true = info.truth("test")
        pers = naive_forecast(info.series, test, horizon, 1)
        seas = naive_forecast(info.series, test, horizon, info.period)
        baseline = {"persistence_test_mse": float(np.mean((pers - true) ** 2)),
                    "persistence_test_mae": float(np.mean(np.abs(pers - true))),
                    "seasonal_naive_test_rmse": float(np.sqrt(np.mean((seas - true) ** 2))),
                    "seasonal_period": info.period,
                    "note": "last observed value / value one season back, for every step (original units)"}
    return {
        "name": name, "kind": "regression", "target": "sequence", "input_type": "features",
        "n_classes": None, "class_names": None, "n_features": len(xi), "n_outputs": horizon * k,
        "feature_names": [columns[j] for j in xi], "target_columns": list(info.targets),
        "target_names": [f"{c}[t+{h + 1}]" for h in range(horizon) for c in info.targets],
        "window": window, "horizon": horizon,
        "rows": {"train": rows[0], "val": rows[1], "test": rows[2]},
        "transform": {**info.transform.to_dict(), **info.choice},
        "scaler": w.y_scaler, "feature_scaler": w.x_scaler, "forecast": info,
        "scaling": {"method": w.y_scaler.method, "fitted_on": f"first {rows[0]} rows (training part only)"
                    + (f", after the {info.transform.name} transform" if info.transform.steps else "")},
        "baseline": baseline, "vocab": None, "source": source,
    }
