"""Reading CSV files with errors that point at the file, row (editor line) and column.

Reading is linear in rows x columns. A file without quote characters in an ASCII-compatible
encoding and with at most ``MAX_FAST_COLUMNS`` columns is parsed by pandas (its pyarrow engine
when pyarrow is installed, else its C reader), and one count of delimiter bytes proves that
every record has as many fields as the header (pandas itself refuses longer rows). Anything
else (quotes, a record of the wrong length, another encoding, a very wide file) goes through
the ``csv`` module, which also gives the exact error. Text cells become numbers in one
vectorised pass; editor lines are only worked out when an error needs them.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import DataError, suggest

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Table", "read_table", "read_text", "read_bytes", "resolve_file", "MISSING_TOKENS",
           "MAX_CSV_BYTES", "MAX_TEXT_BYTES"]

MISSING_TOKENS = frozenset({"", "na", "nan", "n/a", "null", "none", "-nan"})
MAX_CSV_BYTES = 8 << 30   # a CSV file larger than this is refused (it would not fit in memory anyway)
MAX_TEXT_BYTES = 1 << 30  # a text file larger than this is refused unless max_chars reads only its start
MAX_FAST_COLUMNS = 2048   # wider files go through the csv module (linear, and cheaper per column)
MISSING_HINT = "missing value; fix the cell or set missing='interpolate' or 'drop'"
_HAVE_PYARROW = importlib.util.find_spec("pyarrow") is not None


def pandas() -> Any:
    """The pandas module, imported on first use (``import lstmlab`` stays light)."""
    import pandas as pd

    return pd
_ASCII_COMPATIBLE = {"utf-8", "utf8", "utf-8-sig", "ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1",
                     "cp1252", "windows-1252"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
csv.field_size_limit(max(csv.field_size_limit(), 1 << 28))  # long texts (e.g. reviews) in one cell


def resolve_file(path: str | Path | None, what: str = "file", hint: str = "") -> Path:
    """``path`` as a Path; DataError if it is missing, a folder, or not a regular file (``/dev/zero``)."""
    if path is None or str(path).strip() == "":
        raise DataError(f"no {what} given; pass path=...")
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise DataError(f"{what} not found" + (f"; {hint}" if hint else ""), path=path)
    if p.is_dir():
        raise DataError(f"is a directory, expected a {what}", path=path)
    if not p.is_file():
        raise DataError(f"not a regular file (a device, pipe or socket); expected a {what}", path=path)
    return p


def read_bytes(path: str | Path, what: str = "file", hint: str = "", limit: int = MAX_CSV_BYTES,
               prefix: bool = False) -> bytes:
    """At most ``limit`` bytes of a regular file: a larger file is refused, or cut when ``prefix``."""
    p = resolve_file(path, what, hint)
    with open(p, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise DataError(f"not a regular file; expected a {what}", path=path)
        raw = f.read(limit + 1)
    if len(raw) > limit:
        if prefix:
            return raw[:limit]
        raise DataError(f"the file is larger than {limit:,} bytes, the most lstmlab reads into memory"
                        + (f"; {hint}" if hint else ""), path=path)
    return raw


def decode(raw: bytes, encoding: str, path: Any, cut: bool = False) -> str:
    """Decode ``raw``; errors name the line. ``cut``: ``raw`` may end inside a character."""
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        return raw.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as e:
        if cut and e.start >= len(raw) - 3 and "unexpected end" in e.reason:
            return raw[: e.start].decode("utf-8-sig" if utf8 else encoding)
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"cannot decode byte {raw[e.start:e.start + 1]!r} as {encoding}; "
                        f"pass encoding=... (e.g. 'latin-1')", path=path, row=line) from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}", path=path) from None


def read_text(path: str | Path, encoding: str = "utf-8", what: str = "text file", hint: str = "",
              max_chars: int | None = None) -> str:
    """A whole text file (at most ``MAX_TEXT_BYTES``), or about its first ``max_chars`` characters."""
    if max_chars is not None:
        raw = read_bytes(path, what, hint, limit=4 * int(max_chars) + 4, prefix=True)
        return decode(raw, encoding, path, cut=True)[: int(max_chars)]
    hint = hint or "set max_chars to read only the start"
    return decode(read_bytes(path, what, hint, limit=MAX_TEXT_BYTES), encoding, path)


class Table:
    """A parsed CSV (or a user's DataFrame): header names, a DataFrame of cells, editor lines.

    Columns the loader asked for as text hold the cells as written; the others may already be
    numbers. ``lines[i]`` is the editor line of row ``i`` (for a DataFrame: its position).
    """

    def __init__(self, path: str, header: list[str], frame: pd.DataFrame, lines: np.ndarray | None = None,
                 text: str | None = None, delimiter: str = ",") -> None:
        self.path = path
        self.header = header
        self.frame = frame
        self.frame.columns = range(len(header))
        self.delimiter = delimiter
        self._lines = lines
        self._text = text
        self._pos = {h: j for j, h in enumerate(header)}

    @classmethod
    def from_frame(cls, df: pd.DataFrame, name: str = "DataFrame") -> Table:
        """Wrap a DataFrame; rows in errors are positions (``df.iloc[row]``)."""
        if not isinstance(df, pandas().DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}", path=name)
        header = [str(c) for c in df.columns]
        _check_header(header, name, None)
        if len(df) == 0:
            raise DataError("the DataFrame has no rows", path=name)
        return cls(name, header, df.reset_index(drop=True).copy(deep=False), np.arange(len(df)))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def lines(self) -> np.ndarray:
        """Editor line of every row (worked out on first use)."""
        if self._lines is None:
            self._lines = _record_lines(self._text or "", self.delimiter)
        return self._lines

    def index(self, name: str | int, option: str = "column") -> int:
        """Position of column ``name``; unknown names raise DataError with a suggestion."""
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            if -len(self.header) <= name < len(self.header):
                return int(name) % len(self.header)
            raise DataError(f"option {option!r}: column number {name} is out of range "
                            f"(the file has {len(self.header)} columns)", path=self.path)
        if str(name) in self._pos:
            return self._pos[str(name)]
        cols = ", ".join(repr(h) for h in self.header[:50]) + (" ..." if len(self.header) > 50 else "")
        raise DataError(f"no column {name!r} (option {option!r}); the header has {cols}"
                        + suggest(str(name), self.header), path=self.path, row=1)

    def name(self, column: str | int, option: str = "column") -> str:
        """Header name of a column given by name or position (``option`` names it in errors)."""
        return self.header[self.index(column, option)]

    def column(self, name: str | int) -> np.ndarray:
        """Cells of one column as an object array of stripped strings (a missing DataFrame cell -> '')."""
        cells = self.frame[self.index(name)].to_numpy(dtype=object)
        na = pandas().isna(cells)
        return np.array(["" if m else str(v).strip() for v, m in zip(cells, na)], dtype=object)

    def cell(self, i: int, j: int) -> str:
        """The cell at row ``i``, column ``j`` as the user wrote it."""
        value = self.frame.iat[i, j]
        if self._text is None or isinstance(value, str):
            return str(value)
        rest = _LINE_BREAK.split(self._text, maxsplit=int(self.lines[i]) - 1)[-1]
        return next(csv.reader(io.StringIO(rest, newline=""), delimiter=self.delimiter))[j]

    def where(self, i: int, j: int | None = None) -> dict[str, Any]:
        """``path``, ``row`` and ``column`` keyword arguments of DataError for a cell."""
        return {"path": self.path, "row": int(self.lines[i]), "column": None if j is None else self.header[j]}

    def numeric(self, name: str | int, allow_missing: bool = False) -> np.ndarray:
        """Column as float64; non-numbers and Inf raise DataError; missing -> NaN if allowed."""
        return self.numeric_block([name], allow_missing)[:, 0]

    def numeric_block(self, names: Sequence[str | int], allow_missing: bool = False,
                      hint: str = MISSING_HINT) -> np.ndarray:
        """Several columns as one float64 ``(rows, len(names))`` array (see :meth:`numeric`).

        Columns pandas already parsed as numbers are taken as they are; all text columns are
        converted together in one vectorised pass (no per-column overhead for wide files)."""
        idx = [self.index(n) for n in names]
        out = np.empty((len(self.frame), len(idx)), dtype=np.float64)
        invalid = np.zeros(out.shape, dtype=bool)
        kinds = [k.kind for k in self.frame.dtypes.to_numpy()]
        numeric = [k for k, j in enumerate(idx) if kinds[j] in "iufb"]
        text = [k for k, j in enumerate(idx) if kinds[j] not in "iufb"]
        if numeric:
            block = self.frame.iloc[:, [idx[k] for k in numeric]]
            out[:, numeric] = block.to_numpy(dtype=np.float64, na_value=np.nan)
        if text:
            block = self.frame.iloc[:, [idx[k] for k in text]].to_numpy(dtype=object)
            out[:, text], invalid[:, text] = _strings_to_float(block)
        bad = invalid | np.isinf(out) | (np.isnan(out) & (not allow_missing))
        if bad.any():
            i = int(np.flatnonzero(bad.any(axis=1))[0])
            j = idx[int(np.flatnonzero(bad[i])[0])]
            cell = self.cell(i, j)
            parse_number(cell, self.path, int(self.lines[i]), self.header[j], allow_missing, hint)
            raise DataError("", path=self.path, row=int(self.lines[i]), column=self.header[j],
                            expected="a number", got=cell)  # e.g. '1_0', which Python's float() accepts
        return out

    def subset_rows(self, keep: np.ndarray) -> Table:
        """The rows where ``keep`` is True."""
        idx = np.flatnonzero(keep)
        return Table(self.path, self.header, self.frame.iloc[idx].reset_index(drop=True), self.lines[idx],
                     self._text, self.delimiter)


def _strings_to_float(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells (any objects) -> float64 (missing tokens -> NaN) and a mask of cells that are not numbers."""
    pd = pandas()
    raw = pd.Series(block.ravel(), dtype=object)
    flat = raw.astype(str).str.strip()
    missing = (raw.isna() | flat.str.lower().isin(MISSING_TOKENS)).to_numpy()
    values = pd.to_numeric(flat.where(~missing), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values.reshape(block.shape), (np.isnan(values) & ~missing).reshape(block.shape)


def parse_number(cell: Any, path: str, line: int, column: str, allow_missing: bool = False,
                 hint: str = MISSING_HINT) -> float:
    """One numeric cell, with the error the user should see when it is not a finite number."""
    s = str(cell).strip()
    if s.lower() in MISSING_TOKENS:
        if allow_missing:
            return float("nan")
        raise DataError(hint,
                        path=path, row=line, column=column, expected="a number", got=cell)
    try:
        v = float(s)
    except ValueError:
        raise DataError("", path=path, row=line, column=column, expected="a number", got=cell) from None
    if v != v and not allow_missing:
        raise DataError("", path=path, row=line, column=column, expected="a number", got=cell)
    if v in (float("inf"), float("-inf")):
        raise DataError("", path=path, row=line, column=column, expected="a finite number", got=cell)
    return v


def _records(text: str, delim: str):
    """``(editor line, record)`` for every non-blank record of ``text``."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    prev = 0
    for rec in reader:
        start, prev = prev + 1, reader.line_num
        if rec and not (len(rec) == 1 and not rec[0].strip()):
            yield start, rec


def _record_lines(text: str, delim: str) -> np.ndarray:
    """Editor line of every data record (blank lines skipped, quoted line breaks followed)."""
    return np.asarray([line for line, _ in _records(text, delim)][1:], dtype=np.int64)


def _sniff_delimiter(first_line: str) -> str:
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _check_header(header: list[str], shown: str, line: int | None) -> None:
    seen: set[str] = set()
    for k, h in enumerate(header):
        if not h:
            raise DataError(f"header field {k + 1} is empty; every column needs a name", path=shown, row=line)
        if h in seen:
            raise DataError(f"column name {h!r} appears twice in the header", path=shown, row=line)
        seen.add(h)


def _read_slow(text: str, delim: str, shown: str) -> tuple[list[str], pd.DataFrame, np.ndarray]:
    """The csv-module reader: exact errors for short or long records and malformed quoting."""
    header: list[str] | None = None
    header_line, line = 1, 0
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for line, rec in _records(text, delim):
            if header is None:
                header, header_line = [h.strip() for h in rec], line
                _check_header(header, shown, line)
                continue
            if len(rec) != len(header):
                cols = ", ".join(header[:20]) + (" ..." if len(header) > 20 else "")
                raise DataError(f"the header has {len(header)} fields ({cols})", path=shown, row=line,
                                expected=f"{len(header)} fields", got=len(rec))
            rows.append(rec)
            lines.append(line)
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", path=shown, row=line + 1) from None
    if header is None:
        raise DataError("the file is empty; expected a header row and data rows", path=shown)
    if not rows:
        raise DataError("no data rows below the header", path=shown, row=header_line)
    return header, pandas().DataFrame(rows, dtype=object), np.asarray(lines, dtype=np.int64)


def _read_fast(raw: bytes, text: str, delim: str, encoding: str, shown: str,
               text_columns: Iterable[str | int]) -> tuple[list[str], pd.DataFrame] | None:
    """The file parsed by pandas, or None when it needs the csv module (see the module doc)."""
    if b'"' in raw or encoding.lower().replace("_", "-") not in _ASCII_COMPATIBLE:
        return None
    line, first = next(_records(text[:1 << 24], delim))
    header = [h.strip() for h in first]
    _check_header(header, shown, line)
    if len(header) > MAX_FAST_COLUMNS:
        return None  # pandas' cost per column outweighs its speed per cell
    pos = {h: j for j, h in enumerate(header)}
    dtype = {}
    for c in text_columns:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if -len(header) <= c < len(header):
                dtype[int(c) % len(header)] = str
        elif str(c) in pos:
            dtype[pos[str(c)]] = str
    pd = pandas()
    frame = None
    options = {"sep": delim, "header": 0, "dtype": dtype or None, "skip_blank_lines": True,
               "encoding": "utf-8" if encoding.lower().startswith("utf") else encoding}
    for engine in (("pyarrow", "c") if _HAVE_PYARROW else ("c",)):
        # no cell may turn into NaN by itself: missing tokens are this module's decision
        extra = ({"na_filter": False, "quoting": csv.QUOTE_NONE, "low_memory": False} if engine == "c" else
                 {"keep_default_na": False})
        try:
            frame = pd.read_csv(io.BytesIO(raw), engine=engine, **options, **extra)
            break
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, TypeError,
                NotImplementedError):
            continue  # the pyarrow reader refuses more than the C reader (e.g. short rows): try the next
    if frame is None:
        return None
    if frame.shape[1] != len(header) or len(frame) == 0:
        return None
    if raw.count(delim.encode("ascii")) != (len(header) - 1) * (len(frame) + 1):
        return None  # some record has fewer fields than the header
    return header, frame


def read_table(path: str | Path, delimiter: str | None = None, encoding: str = "utf-8",
               required: Sequence[str] = (), text_columns: Iterable[str | int] = ()) -> Table:
    """Parse a CSV file with a header row.

    Blank lines are skipped; every other row must have as many fields as the header.
    ``delimiter=None`` picks the most frequent of ``, ; TAB |`` in the header line.
    ``text_columns`` (names or positions) keep their cells as written (ids, labels, times).
    """
    shown = str(path)
    raw = read_bytes(path, "CSV file")
    text = decode(raw, encoding, shown)
    if not text.strip():
        raise DataError("the file is empty; expected a header row and data rows", path=shown)
    delim = delimiter or _sniff_delimiter(next((ln for ln in text[: 1 << 20].splitlines() if ln.strip()), ""))
    fast = _read_fast(raw, text, delim, encoding, shown, text_columns)
    if fast is not None:
        table = Table(shown, fast[0], fast[1], None, text, delim)
    else:
        header, frame, lines = _read_slow(text, delim, shown)
        table = Table(shown, header, frame, lines, text, delim)
    for name in required:
        table.index(name)
    return table
