"""``csv-series``: a time column plus value columns -> windowed forecasting splits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, DataSplits, suggest
from .csv_io import Table, check_increasing, parse_time, read_table
from .windowing import forecast_splits, interpolate_missing

__all__ = ["load_csv_series", "series_from_table"]

_TIME_NAMES = {"time", "date", "datetime", "timestamp", "year", "month", "week", "day", "period", "t", "ds"}
MISSING_CHOICES = ("error", "interpolate", "drop")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    return list(value)


def _auto_time_column(table: Table) -> str | None:
    first = table.header[0]
    if first.strip().lower() in _TIME_NAMES:
        return first
    cell = table.rows[0][0].strip()
    try:
        float(cell)
        return None
    except ValueError:
        return first if parse_time(cell) is not None else None


def series_from_table(
    table: Table,
    *,
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    time_column: str | None = "auto",
    autoregressive: bool = True,
    missing: str = "error",
    window: int = 12,
    horizon: int = 1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scale: str | None = "standard",
    name: str | None = None,
    source: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> DataSplits:
    """Build forecasting splits from a parsed table (see :func:`load_csv_series`)."""
    if missing not in MISSING_CHOICES:
        raise DataError(f"option 'missing': expected one of {', '.join(MISSING_CHOICES)}, got {missing!r}"
                        + suggest(str(missing), MISSING_CHOICES))
    tcol = _auto_time_column(table) if time_column == "auto" else (
        None if time_column is None else table.name(time_column, "time_column"))
    others = [h for h in table.header if h != tcol]
    targets = [table.name(t, "target") for t in _as_list(target)] or ([others[-1]] if others else [])
    if not targets:
        raise DataError("no value column besides the time column", path=table.path, row=1)
    if tcol in targets:
        raise DataError(f"option 'target': {tcol!r} is the time column; choose a value column",
                        path=table.path)
    feats = [table.name(f, "features") for f in _as_list(features)] if features is not None else list(others)
    if autoregressive:
        feats += [t for t in targets if t not in feats]
    if not feats:
        raise DataError("no input columns: give features=[...] or autoregressive=true", path=table.path)
    cols = list(dict.fromkeys(feats + targets))
    if tcol is not None:
        check_increasing(table, tcol)
    values = np.stack([table.numeric(c, allow_missing=missing != "error") for c in cols], axis=1)
    times = table.column(tcol) if tcol is not None else [str(i) for i in range(len(table))]
    note: dict[str, Any] = {"missing": {"policy": missing, "cells": int(np.isnan(values).sum())}}
    if missing == "interpolate" and np.isnan(values).any():
        values, filled = interpolate_missing(values)
        note["missing"]["note"] = f"{filled} missing cell(s) filled by linear interpolation in time"
    elif missing == "drop":
        keep = ~np.isnan(values).any(axis=1)
        note["missing"]["note"] = f"{int((~keep).sum())} row(s) with missing cells dropped"
        values = values[keep]
        times = [t for t, k in zip(times, keep, strict=True) if k]
    meta = {"path": table.path, "time_column": tcol, **note, **(extra_meta or {})}
    return forecast_splits(values, cols, targets, feats, window=window, horizon=horizon,
                           val_fraction=val_fraction, test_fraction=test_fraction, scale=scale,
                           times=times, name=name or Path(table.path).name,
                           source=source or f"CSV time series {table.path}", extra_meta=meta)


def load_csv_series(
    path: str,
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    time_column: str | None = "auto",
    autoregressive: bool = True,
    missing: str = "error",
    window: int = 12,
    horizon: int = 1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scale: str | None = "standard",
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> DataSplits:
    """Forecast ``target`` column(s) ``horizon`` steps ahead from the last ``window`` rows.

    ``time_column="auto"`` takes the first column when it is named like a time (``date``,
    ``year``, ...) or holds dates; ``None`` means there is none. ``features`` defaults to every
    other column; with ``autoregressive`` the targets' past values are inputs too. Rows must be
    in time order. ``missing``: ``error`` | ``interpolate`` | ``drop``. Scaling (``standard`` |
    ``minmax`` | ``None``) is fitted on the training rows; ``meta['scaler'].inverse_transform``
    reports predictions in original units.
    """
    table = read_table(path, delimiter=delimiter, encoding=encoding)
    return series_from_table(table, target=target, features=features, time_column=time_column,
                             autoregressive=autoregressive, missing=missing, window=window,
                             horizon=horizon, val_fraction=val_fraction, test_fraction=test_fraction,
                             scale=scale)
