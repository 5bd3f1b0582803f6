"""``csv-series``: a time column plus value columns -> windowed forecasting splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, DataSplits, suggest
from .csv_io import Table, read_table
from .timecol import TimeAxis, check_increasing, is_time_name, looks_like_time, parse_time_column
from .windowing import forecast_splits, interpolate_missing

__all__ = ["load_csv_series", "series_from_table", "series_from_tables"]

MISSING_CHOICES = ("error", "interpolate", "drop")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    return list(value)


def _auto_time_column(table: Table) -> str | None:
    first = table.header[0]
    if is_time_name(first):
        return first
    return first if looks_like_time(str(table.frame.iat[0, 0])) else None


@dataclass
class _Part:
    """One file's rows: values of the used columns, the time cells and parsed times."""

    table: Table
    values: np.ndarray
    times: list[str]
    axis: TimeAxis | None


def _columns(table: Table, tcol: str | None, target: Any, features: Any, autoregressive: bool
             ) -> tuple[list[str], list[str], list[str]]:
    """(all used columns, targets, inputs) by name."""
    others = [h for h in table.header if h != tcol]
    targets = [table.name(t, "target") for t in _as_list(target)] or ([others[-1]] if others else [])
    if not targets:
        raise DataError("no value column besides the time column", path=table.path, row=1)
    if tcol in targets:
        raise DataError(f"option 'target': {tcol!r} is the time column; choose a value column", path=table.path)
    feats = [table.name(f, "features") for f in _as_list(features)] if features is not None else list(others)
    if autoregressive:
        feats += [t for t in targets if t not in set(feats)]
    if not feats:
        raise DataError("no input columns: give features=[...] or autoregressive=true", path=table.path)
    return list(dict.fromkeys(feats + targets)), targets, feats


def _read_part(table: Table, tcol: str | None, cols: list[str], missing: str, note: dict) -> _Part:
    """Parse times (in order) and values of one file; apply the missing-value policy to it."""
    axis = None
    if tcol is not None:
        axis = parse_time_column(table, tcol)
        check_increasing(table, axis, tcol)
    values = table.numeric_block(cols, allow_missing=missing != "error")
    times = list(axis.cells) if axis is not None else None
    gaps = int(np.isnan(values).sum())
    note["cells"] += gaps
    if gaps and missing == "interpolate":
        values, filled = interpolate_missing(values)
        note["filled"] += filled
    elif gaps and missing == "drop":
        keep = ~np.isnan(values).any(axis=1)
        note["dropped"] += int((~keep).sum())
        values = values[keep]
        times = None if times is None else [t for t, k in zip(times, keep) if k]
        if axis is not None:
            axis = TimeAxis(axis.keys[keep], axis.kind, axis.period, axis.cells[keep])
    return _Part(table, values, times if times is not None else [str(i) for i in range(len(values))], axis)


def _check_joined(parts: list[_Part], tcol: str | None) -> None:
    """Each file's times must follow the previous file's (same kind of time)."""
    for a, b in zip(parts, parts[1:]):
        if tcol is None or a.axis is None or b.axis is None or not len(a.axis) or not len(b.axis):
            continue
        if a.axis.kind != b.axis.kind or b.axis.keys[0] <= a.axis.keys[-1]:
            raise DataError("the files must continue one series in time order", path=b.table.path,
                            row=int(b.table.lines[0]), column=tcol,
                            expected=f"a time after {a.axis.cells[-1]!r} (the last row of {a.table.path})",
                            got=b.axis.cells[0])


def series_from_tables(
    tables: Sequence[Table | None],
    *,
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    time_column: str | None = "auto",
    autoregressive: bool = True,
    missing: str = "error",
    test_size: int | None = None,
    name: str | None = None,
    source: str = "",
    extra_meta: dict[str, Any] | None = None,
    **window_options: Any,
) -> DataSplits:
    """Forecasting splits from (train, val or None, test or None) tables of one series.

    Given val/test tables are those splits (rows in time order after the training file's); else
    the fractions (or ``test_size`` rows) cut the training table. ``window_options`` go to
    :func:`~lstmlab.data.windowing.forecast_splits` (window, horizon, fractions, scale, transform, period).
    """
    if missing not in MISSING_CHOICES:
        raise DataError(f"option 'missing': expected one of {', '.join(MISSING_CHOICES)}, got {missing!r}"
                        + suggest(str(missing), MISSING_CHOICES))
    main = tables[0]
    if tables[1] is not None and tables[2] is None:
        raise DataError("val_path needs test_path too: the files continue one series (path, then val_path, "
                        "then test_path); without test_path use val_fraction", path=tables[1].path)
    tcol = _auto_time_column(main) if time_column == "auto" else (
        None if time_column is None else main.name(time_column, "time_column"))
    cols, targets, feats = _columns(main, tcol, target, features, autoregressive)
    for t in tables[1:]:
        if t is not None:
            for c in cols + ([tcol] if tcol else []):
                t.index(c, "the training file's columns")
    note = {"policy": missing, "cells": 0, "filled": 0, "dropped": 0}
    parts = [None if t is None else _read_part(t, tcol, cols, missing, note) for t in tables]
    used = [p for p in parts if p is not None]
    _check_joined(used, tcol)
    sizes = [None if p is None else len(p.values) for p in parts[1:]]
    if test_size is not None:
        if sizes[1] is not None:
            raise DataError("give either test_path or test_size, not both")
        if isinstance(test_size, bool) or int(test_size) != test_size or not 0 < test_size < len(used[0].values):
            raise DataError(f"option 'test_size': expected a number of rows between 1 and "
                            f"{len(used[0].values) - 1}, got {test_size!r}")
        sizes[1] = int(test_size)
    axis = used[0].axis
    if window_options.get("period") is None:
        window_options["period"] = axis.period if axis is not None else None
    if note["filled"]:
        note["note"] = f"{note['filled']} missing cell(s) filled by linear interpolation in time"
    if note["dropped"]:
        note["note"] = f"{note['dropped']} row(s) with missing cells dropped"
    meta = {"path": main.path, "time_column": tcol, "time_format": axis.kind if axis is not None else None,
            "missing": note, **(extra_meta or {})}
    meta["splits_from"] = {"val": tables[1].path if tables[1] is not None else "fraction",
                           "test": tables[2].path if tables[2] is not None else
                           ("test_size" if test_size is not None else "fraction")}
    return forecast_splits(np.concatenate([p.values for p in used]), cols, targets, feats,
                           sizes=(sizes[0], sizes[1]), times=[t for p in used for t in p.times],
                           name=name or Path(main.path).name, source=source or f"CSV time series {main.path}",
                           extra_meta=meta, **window_options)


def series_from_table(table: Table, **options: Any) -> DataSplits:
    """Forecasting splits from one table (see :func:`series_from_tables`)."""
    return series_from_tables([table, None, None], **options)


def load_csv_series(
    path: str,
    target: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    time_column: str | None = "auto",
    autoregressive: bool = True,
    missing: str = "error",
    window: int = 12,
    horizon: int = 1,
    transform: str = "auto",
    period: int | None = None,
    val_path: str | None = None,
    test_path: str | None = None,
    test_size: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    scale: str | None = "standard",
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> DataSplits:
    """Forecast ``target`` column(s) ``horizon`` steps ahead from the last ``window`` rows.

    ``time_column="auto"`` takes the first column when it is named like a time (``date``,
    ``quarter``, ...) or holds dates; ``None`` means there is none. Times may be numbers or
    years, ``YYYY-MM``, ``YYYYQn`` or ISO dates/datetimes; rows must be in time order. ``features``
    defaults to every other column; with ``autoregressive`` the targets' past values are inputs
    too. ``missing``: ``error`` | ``interpolate`` | ``drop`` (per file).

    Splits: ``val_path`` / ``test_path`` name files that continue the series (same columns);
    otherwise ``test_size`` (the last N rows) or ``val_fraction`` / ``test_fraction`` cut the
    end of ``path``. ``transform`` (``auto``, ``none``, ``log``, ``diff``, ``seasonal-diff`` or
    ``+``-combinations) is applied to the targets before windowing and scaling; ``period`` is the
    season length (default: from the time column: monthly 12, quarterly 4, weekly 52, daily 7,
    hourly 24). Scaling (``standard`` | ``minmax`` | ``None``) is fitted on the training rows.
    :func:`lstmlab.data.forecast.forecast_metrics` scores predictions in original units.
    """
    text = [time_column] if isinstance(time_column, (str, int)) and time_column != "auto" else [0]
    tables = [None if p is None else read_table(p, delimiter=delimiter, encoding=encoding, text_columns=text)
              for p in (path, val_path, test_path)]
    return series_from_tables(tables, target=target, features=features, time_column=time_column,
                              autoregressive=autoregressive, missing=missing, test_size=test_size,
                              window=window, horizon=horizon, val_fraction=val_fraction,
                              test_fraction=test_fraction, scale=scale, transform=transform, period=period)
