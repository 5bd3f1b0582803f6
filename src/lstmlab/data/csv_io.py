"""Reading CSV files with errors that point at the file, row (editor line) and column."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .base import DataError, suggest

__all__ = ["Table", "read_table", "resolve_file", "MISSING_TOKENS"]

MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none", "-nan"})
_YEAR_MONTH = re.compile(r"^\s*(\d{4})-(\d{1,2})\s*$")
csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # long texts (e.g. reviews) in one cell


def resolve_file(path: str | Path | None, what: str = "file", hint: str = "") -> Path:
    """Return ``path`` as a Path, or raise DataError if it is missing or not a regular file."""
    if path is None or str(path).strip() == "":
        raise DataError(f"no {what} given; pass path=...")
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise DataError(f"{what} not found" + (f"; {hint}" if hint else ""), path=path)
    if p.is_dir():
        raise DataError(f"is a directory, expected a {what}", path=path)
    return p


def read_text(path: str | Path, encoding: str = "utf-8", what: str = "text file", hint: str = "") -> str:
    """Read a whole text file; decoding errors name the line."""
    p = resolve_file(path, what, hint)
    raw = p.read_bytes()
    try:
        utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
        return raw.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"cannot decode byte {raw[e.start:e.start + 1]!r} as {encoding}; "
                        f"pass encoding=... (e.g. 'latin-1')", path=path, row=line) from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}", path=path) from None


@dataclass
class Table:
    """A parsed CSV: header names, string cells, and the editor line where each row starts."""

    path: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, name: str, option: str = "column") -> int:
        """Position of column ``name``; unknown names raise DataError with a suggestion."""
        if isinstance(name, int) and not isinstance(name, bool):
            if -len(self.header) <= name < len(self.header):
                return name % len(self.header)
            raise DataError(f"option {option!r}: column number {name} is out of range "
                            f"(the file has {len(self.header)} columns)", path=self.path)
        try:
            return self.header.index(str(name))
        except ValueError:
            cols = ", ".join(repr(h) for h in self.header)
            raise DataError(f"no column {name!r} (option {option!r}); the header has {cols}"
                            + suggest(str(name), self.header), path=self.path, row=1) from None

    def name(self, column: str | int, option: str = "column") -> str:
        """Header name of a column given by name or position (``option`` names it in errors)."""
        return self.header[self.index(column, option)]

    def column(self, name: str | int) -> list[str]:
        """Raw string cells of one column."""
        j = self.index(name)
        return [r[j] for r in self.rows]

    def numeric(self, name: str | int, allow_missing: bool = False) -> np.ndarray:
        """Column as float64; non-numbers and Inf raise DataError; missing -> NaN if allowed."""
        j = self.index(name)
        col = self.header[j]
        out = np.empty(len(self.rows), dtype=np.float64)
        for i, row in enumerate(self.rows):
            out[i] = parse_number(row[j], self.path, self.lines[i], col, allow_missing)
        return out

    def subset_rows(self, keep: np.ndarray) -> Table:
        """The rows where ``keep`` is True."""
        idx = np.flatnonzero(keep)
        return Table(self.path, self.header, [self.rows[i] for i in idx], [self.lines[i] for i in idx])


def parse_number(cell: str, path: str, line: int, column: str, allow_missing: bool = False) -> float:
    """One numeric cell; see :meth:`Table.numeric`."""
    s = cell.strip()
    if s.lower() in MISSING_TOKENS:
        if allow_missing:
            return math.nan
        raise DataError("missing value; fix the cell or set missing='interpolate' or 'drop'",
                        path=path, row=line, column=column, expected="a number", got=cell)
    try:
        v = float(s)
    except ValueError:
        raise DataError("", path=path, row=line, column=column, expected="a number", got=cell) from None
    if math.isnan(v):
        if allow_missing:
            return v
        raise DataError("", path=path, row=line, column=column, expected="a number", got=cell)
    if math.isinf(v):
        raise DataError("", path=path, row=line, column=column, expected="a finite number", got=cell)
    return v


def parse_time(cell: str) -> float | None:
    """A sortable key for a time cell (number, ISO date/time, or YYYY-MM), else None."""
    s = cell.strip()
    try:
        return float(s)
    except ValueError:
        pass
    m = _YEAR_MONTH.match(s)
    if m:
        return float(int(m.group(1)) * 12 + int(m.group(2)) - 1)
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check_increasing(table: Table, column: str | int) -> None:
    """Raise DataError at the first row whose time is not after the previous one.

    Columns whose cells are not all numbers or ISO dates are left unchecked.
    """
    j = table.index(column)
    keys = [parse_time(r[j]) for r in table.rows]
    if any(k is None for k in keys):
        return
    for i in range(1, len(keys)):
        if keys[i] <= keys[i - 1]:  # type: ignore[operator]
            raise DataError("rows must be in time order", path=table.path, row=table.lines[i],
                            column=table.header[j],
                            expected=f"a time after {table.rows[i - 1][j]!r} (row {table.lines[i - 1]})",
                            got=table.rows[i][j])


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def read_table(path: str | Path, delimiter: str | None = None, encoding: str = "utf-8",
               required: Sequence[str] = ()) -> Table:
    """Parse a CSV file with a header row.

    Blank lines are skipped; every other row must have as many fields as the header.
    ``delimiter=None`` picks the most frequent of ``, ; TAB |`` in the header line.
    """
    text = read_text(path, encoding, what="CSV file")
    shown = str(path)
    if not text.strip():
        raise DataError("the file is empty; expected a header row and data rows", path=shown)
    first = text.lstrip("\r\n").splitlines()[0]
    delim = delimiter or _sniff_delimiter(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header: list[str] | None = None
    header_line = 1
    rows: list[list[str]] = []
    lines: list[int] = []
    prev = 0
    try:
        for rec in reader:
            start = prev + 1
            prev = reader.line_num
            if not rec or (len(rec) == 1 and not rec[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in rec]
                header_line = start
                for k, h in enumerate(header):
                    if not h:
                        raise DataError(f"header field {k + 1} is empty; every column needs a name",
                                        path=shown, row=start)
                    if h in header[:k]:
                        raise DataError(f"column name {h!r} appears twice in the header",
                                        path=shown, row=start)
                continue
            if len(rec) != len(header):
                raise DataError(f"the header has {len(header)} fields ({', '.join(header)})", path=shown,
                                row=start, expected=f"{len(header)} fields", got=len(rec))
            rows.append(rec)
            lines.append(start)
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", path=shown, row=prev + 1) from None
    if header is None:
        raise DataError("the file is empty; expected a header row and data rows", path=shown)
    if not rows:
        raise DataError("no data rows below the header", path=shown, row=header_line)
    table = Table(shown, header, rows, lines)
    for name in required:
        table.index(name)
    return table
