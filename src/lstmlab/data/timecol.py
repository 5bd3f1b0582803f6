"""Time columns as people write them: numbers and years, ``YYYY-MM``, ``YYYYQn``, ISO dates/datetimes.

The format is decided by a column's first cell and every other cell must follow it; the first
cell that does not is reported with file, row and column. ISO dates and datetimes are parsed by
pandas (``format="ISO8601"``, offsets converted to UTC). :func:`seasonal_period` turns the
spacing of the times into the period of a yearly, weekly or daily season.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .base import DataError
from .csv_io import Table, pandas

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TimeAxis", "parse_time_column", "looks_like_time", "check_increasing", "is_time_name",
           "TIME_FORMATS"]

TIME_FORMATS = "a number or year, YYYY-MM, YYYYQn, or an ISO date/datetime such as 1959-01-31 or 1959-01-31T12:00"
_QUARTER = (re.compile(r"^(?P<y>\d{4})\s*[-/ ]?\s*[Qq](?P<q>[1-4])$"),
            re.compile(r"^[Qq](?P<q>[1-4])\s*[-/ ]?\s*(?P<y>\d{4})$"))
_MONTH = re.compile(r"^(?P<y>\d{4})(?:[-/.]|M)(?P<m>\d{1,2})$")
_TIME_NAMES = {"time", "date", "datetime", "timestamp", "year", "month", "week", "day", "period", "t", "ds",
               "quarter", "qtr", "hour", "yearmonth", "year_month", "date_time", "time_stamp"}
# pandas frequency prefix -> seasonal period (observations per season cycle); 1 = no season
_FREQ_PERIOD = (("BQ", 4), ("Q", 4), ("BY", 1), ("BA", 1), ("Y", 1), ("A", 1), ("SM", 24), ("BM", 12),
                ("M", 12), ("W", 52), ("B", 5), ("D", 7), ("h", 24), ("H", 24))


@dataclass
class TimeAxis:
    """Parsed times: sortable ``keys``, the ``kind`` of format and the seasonal ``period`` (or None)."""

    keys: np.ndarray
    kind: str
    period: int | None
    cells: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


def is_time_name(name: str) -> bool:
    """True for column names people give a time column (``date``, ``quarter``, ``obs_date``, ...)."""
    low = name.strip().lower()
    return low in _TIME_NAMES or low.endswith(("date", "_time", "timestamp"))


def _number(cell: str) -> float | None:
    try:
        v = float(cell)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _iso(cells: np.ndarray) -> pd.DatetimeIndex:
    pd = pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.DatetimeIndex(pd.to_datetime(pd.Series(cells, dtype=object), format="ISO8601",
                                               errors="coerce", utc=True))


def looks_like_time(cell: str) -> bool:
    """Whether a single cell is a date-like time (not a plain number)."""
    s = str(cell).strip()
    if _number(s) is not None or not s:
        return False
    if any(p.match(s) for p in _QUARTER) or _MONTH.match(s):
        return True
    return not pandas().isna(_iso(np.array([s], dtype=object))[0])


def _fail(table: Table, j: int, i: int, cells: np.ndarray, note: str = "") -> DataError:
    return DataError(note, path=table.path, row=int(table.lines[i]), column=table.header[j],
                     expected=f"a time ({TIME_FORMATS})", got=cells[i])


def _regex_keys(cells: np.ndarray, patterns, per_year: int, field: str) -> tuple[np.ndarray, int | None]:
    keys = np.empty(len(cells), dtype=np.int64)
    for i, c in enumerate(cells):
        m = next((m for m in (p.match(c) for p in patterns) if m), None)
        if m is None or not 1 <= int(m.group(field)) <= per_year:
            return keys, i
        keys[i] = int(m.group("y")) * per_year + int(m.group(field)) - 1
    return keys, None


def parse_time_column(table: Table, column: str | int, option: str = "time_column") -> TimeAxis:
    """Parse one column of ``table`` as times (see the module doc); DataError at the first bad cell."""
    j = table.index(column, option)
    cells = table.column(j)
    if len(cells) == 0:
        return TimeAxis(np.zeros(0), "number", None, cells)
    first = cells[0]
    if _number(first) is not None:
        pd = pandas()
        values = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise _fail(table, j, int(bad[0]), cells)
        yearly = "year" in table.header[j].lower() or (
            np.all(values == np.round(values)) and 1000 <= values.min() and values.max() <= 2999
            and len(values) > 1 and np.all(np.diff(values) == 1))
        return TimeAxis(values, "year" if yearly else "number", 1 if yearly else None, cells)
    for kind, patterns, per_year, field in (("quarter", _QUARTER, 4, "q"), ("month", (_MONTH,), 12, "m")):
        if any(p.match(first) for p in patterns):
            keys, bad_at = _regex_keys(cells, patterns, per_year, field)
            if bad_at is not None:
                raise _fail(table, j, bad_at, cells, f"the first row is {kind}ly ({first!r})")
            return TimeAxis(keys, kind, per_year, cells)
    stamps = _iso(cells)
    bad = np.flatnonzero(stamps.isna())
    if len(bad):
        raise _fail(table, j, int(bad[0]), cells)
    return TimeAxis(stamps.asi8.astype(np.int64), "datetime", _datetime_period(stamps), cells)


def _datetime_period(stamps: pd.DatetimeIndex) -> int | None:
    """Seasonal period from the spacing of datetimes (monthly 12, quarterly 4, weekly 52, ...)."""
    if len(stamps) < 3:
        return None
    pd = pandas()
    freq = None
    if stamps.is_monotonic_increasing and stamps.is_unique:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                freq = pd.infer_freq(stamps)
            except (TypeError, ValueError):
                freq = None
    if freq is not None:
        freq = getattr(freq, "freqstr", str(freq))
        for prefix, period in _FREQ_PERIOD:
            if freq.startswith(prefix):
                return period
        return None
    days = (stamps[1:] - stamps[:-1]).median() / pd.Timedelta(days=1)
    for low, high, period in ((1 / 24 - 1e-3, 1 / 24 + 1e-3, 24), (0.99, 1.01, 7), (6.9, 7.1, 52),
                              (28, 31.5, 12), (89, 92.5, 4), (364, 366.5, 1)):
        if low <= days <= high:
            return period
    return None


def check_increasing(table: Table, axis: TimeAxis, column: str | int) -> None:
    """DataError at the first row whose time is not after the previous row's."""
    j = table.index(column)
    steps = np.diff(axis.keys)
    bad = np.flatnonzero(steps <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        raise DataError("rows must be in time order", path=table.path, row=int(table.lines[i]),
                        column=table.header[j],
                        expected=f"a time after {axis.cells[i - 1]!r} (row {int(table.lines[i - 1])})",
                        got=axis.cells[i])
