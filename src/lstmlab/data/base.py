"""Common containers, errors and small helpers shared by every data source.

Conventions
-----------
* ``x`` is batch-first: float32 ``(N, T, F)`` features, or int64 ``(N, T)`` token ids
  (0 = padding, 1 = unknown).
* ``y`` is float32 for regression (``(N, k)`` one target vector per sequence, or ``(N, T)``
  / ``(N, T, k)`` per step) and int64 class ids for classification (``(N,)`` per sequence,
  ``(N, T)`` per step).
* ``lengths`` is int64 ``(N,)`` for variable-length (post-padded) data, else ``None``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DataError",
    "SequenceData",
    "DataSplits",
    "Scaler",
    "Vocab",
    "suggest",
    "check_fractions",
    "stratified_split",
    "random_split",
    "pad_sequences",
]


class DataError(ValueError):
    """A problem with a data source, described the way a user sees the file.

    The message names the file, the row (1-based line number as shown in an editor), the
    column, and what was expected versus received, e.g.
    ``data.csv, row 17, column 'value': expected a number, got 'abc'``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        path: Any = None,
        row: int | None = None,
        column: str | None = None,
        expected: str | None = None,
        got: Any = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.row = row
        self.column = column
        self.expected = expected
        self.got = got
        self.detail = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        text = message
        if expected is not None:
            text = f"expected {expected}, got {_show(got)}" + (f" ({message})" if message else "")
        super().__init__(", ".join(where) + ": " + text if where else text)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return str(value)


def suggest(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or ``""``."""
    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered:
        return f"; did you mean {lowered[word.lower()]!r}?"
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        match = [lowered[m] for m in match]
    return f"; did you mean {match[0]!r}?" if match else ""


@dataclass
class SequenceData:
    """One split: inputs ``x``, targets ``y`` and optional ``lengths`` (see module doc)."""

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} sequences but y has {len(self.y)}")
        if self.lengths is not None:
            self.lengths = np.asarray(self.lengths, dtype=np.int64)
            if self.lengths.shape != (len(self.x),):
                raise ValueError(f"lengths must have shape ({len(self.x)},), got {self.lengths.shape}")

    def __len__(self) -> int:
        return int(len(self.x))

    @property
    def seq_len(self) -> int:
        """Padded number of time steps ``T``."""
        return int(self.x.shape[1]) if self.x.ndim >= 2 else 0

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``(N, T)``: True at real (non-padding) steps."""
        n, t = len(self), self.seq_len
        if self.lengths is None:
            return np.ones((n, t), dtype=bool)
        return np.arange(t)[None, :] < self.lengths[:, None]

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> SequenceData:
        """The sequences at ``index`` (a new SequenceData sharing nothing mutable)."""
        lengths = None if self.lengths is None else self.lengths[index]
        return SequenceData(self.x[index], self.y[index], lengths)

    def to_tensors(self) -> tuple:
        """``(x, y)`` or ``(x, y, lengths)`` as torch tensors."""
        import torch

        out = [torch.from_numpy(np.ascontiguousarray(self.x)), torch.from_numpy(np.ascontiguousarray(self.y))]
        if self.lengths is not None:
            out.append(torch.from_numpy(self.lengths))
        return tuple(out)


@dataclass
class DataSplits:
    """Train / validation / test splits plus ``meta`` (kind, classes, vocab, scaler, ...)."""

    train: SequenceData
    val: SequenceData
    test: SequenceData
    meta: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.train, self.val, self.test))

    def meta_dict(self) -> dict[str, Any]:
        """``meta`` made JSON-friendly (scalers as dicts, vocab as a token list, arrays as lists)."""
        return jsonable(self.meta)

    def summary(self) -> str:
        """One line per split with shapes, for logs and the CLI."""
        lines = [f"{self.meta.get('name', 'data')}: {self.meta.get('kind', '?')}"]
        for name, part in (("train", self.train), ("val", self.val), ("test", self.test)):
            extra = "" if part.lengths is None or len(part) == 0 else (
                f", lengths {int(part.lengths.min())}..{int(part.lengths.max())}")
            lines.append(f"  {name}: x {tuple(part.x.shape)} {part.x.dtype}, y {tuple(part.y.shape)} "
                         f"{part.y.dtype}{extra}")
        return "\n".join(lines)


def jsonable(value: Any) -> Any:
    """Recursively convert meta values (Scaler, Vocab, numpy) to JSON types."""
    if isinstance(value, Scaler):
        return value.to_dict()
    if isinstance(value, Vocab):
        return {"tokens": list(value), "char_level": value.char_level}
    if hasattr(value, "to_dict") and callable(value.to_dict) and not isinstance(value, dict):
        return jsonable(value.to_dict())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def check_seed(seed: Any) -> int:
    """A non-negative integer seed, else DataError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"option 'seed': expected a non-negative integer, got {seed!r}")
    return int(seed)


# ----------------------------------------------------------------------------- scaling


class Scaler:
    """Per-column standard (z-score) or min-max scaling, fitted on training rows only.

    ``columns`` names the columns in order. For forecasting targets, ``horizon`` > 1 means
    ``y`` rows hold ``horizon`` consecutive copies of the columns (step-major), and
    :meth:`inverse_transform` accepts either that flattened layout, ``(..., horizon, k)``,
    or plain ``(..., k)``.
    """

    def __init__(self, method: str = "standard", columns: Sequence[str] = (), horizon: int = 1) -> None:
        if method not in ("standard", "minmax", "none"):
            raise DataError(f"option 'scale': unknown scaling {method!r}; use 'standard', 'minmax' or None"
                            + suggest(str(method), ["standard", "minmax"]))
        self.method = method
        self.columns = list(columns)
        self.horizon = int(horizon)
        self.offset: np.ndarray = np.zeros(len(self.columns))
        self.scale: np.ndarray = np.ones(len(self.columns))
        self.fitted_rows = 0

    def fit(self, values: np.ndarray) -> Scaler:
        """Fit on ``values`` of shape ``(rows, k)`` (NaN ignored)."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, len(self.columns) or values.shape[-1])
        if not self.columns:
            self.columns = [f"c{i}" for i in range(values.shape[1])]
        self.fitted_rows = int(values.shape[0])
        if self.method == "none" or values.shape[0] == 0:
            self.offset = np.zeros(values.shape[1])
            self.scale = np.ones(values.shape[1])
            return self
        if self.method == "standard":
            self.offset = np.nanmean(values, axis=0)
            scale = np.nanstd(values, axis=0)
        else:
            self.offset = np.nanmin(values, axis=0)
            scale = np.nanmax(values, axis=0) - self.offset
        self.scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return self

    def _broadcast(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(self.columns)
        last = y.shape[-1] if y.ndim else 1
        if last == k:
            return self.offset, self.scale
        if last == k * self.horizon:
            return np.tile(self.offset, self.horizon), np.tile(self.scale, self.horizon)
        raise ValueError(f"cannot apply a scaler for {k} column(s) x horizon {self.horizon} "
                         f"to an array whose last axis has {last} entries")

    def transform(self, y: np.ndarray) -> np.ndarray:
        """Scale ``y`` (last axis = columns, or horizon x columns)."""
        y = np.asarray(y)
        offset, scale = self._broadcast(y)
        return ((y - offset) / scale).astype(y.dtype if y.dtype.kind == "f" else np.float32)

    def inverse_transform(self, y: Any) -> np.ndarray:
        """Back to original units (accepts numpy arrays or torch tensors)."""
        if hasattr(y, "detach"):
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        offset, scale = self._broadcast(y)
        return (y * scale + offset).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (method, columns, offset, scale)."""
        return {"method": self.method, "columns": list(self.columns), "horizon": self.horizon,
                "offset": [float(v) for v in self.offset], "scale": [float(v) for v in self.scale],
                "fitted_rows": self.fitted_rows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        """Rebuild a scaler saved with :meth:`to_dict`."""
        s = cls(d["method"], d["columns"], d.get("horizon", 1))
        s.offset = np.asarray(d["offset"], dtype=np.float64)
        s.scale = np.asarray(d["scale"], dtype=np.float64)
        s.fitted_rows = int(d.get("fitted_rows", 0))
        return s

    def __repr__(self) -> str:
        return f"Scaler({self.method!r}, columns={self.columns}, horizon={self.horizon})"


def make_scaler(method: str | None, columns: Sequence[str], horizon: int = 1) -> Scaler:
    """Scaler for an option value (``None``/"none" -> identity)."""
    if method is None or (isinstance(method, str) and method.lower() == "none") or method is False:
        return Scaler("none", columns, horizon)
    return Scaler(str(method).lower(), columns, horizon)


# ----------------------------------------------------------------------------- vocab


class Vocab(list):
    """Token list (index 0 = ``<pad>``, 1 = ``<unk>``) with ``encode``/``decode``.

    It *is* a list of tokens, so it serialises as one (``json.dumps(vocab)``).
    ``char_level`` decides how :meth:`decode` joins tokens.
    """

    PAD = "<pad>"
    UNK = "<unk>"

    def __init__(self, tokens: Iterable[str] = (), char_level: bool = False) -> None:
        tokens = list(tokens)
        if tokens[:2] != [self.PAD, self.UNK]:
            tokens = [self.PAD, self.UNK] + [t for t in tokens if t not in (self.PAD, self.UNK)]
        super().__init__(tokens)
        self.char_level = char_level
        self.stoi = {t: i for i, t in enumerate(self)}

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], max_tokens: int | None = None,
              min_freq: int = 1, char_level: bool = False) -> Vocab:
        """Most frequent tokens first (ties alphabetical); ``max_tokens`` counts the 2 specials."""
        from collections import Counter

        counts: Counter[str] = Counter()
        for toks in token_lists:
            counts.update(toks)
        items = sorted(((t, c) for t, c in counts.items() if c >= min_freq), key=lambda tc: (-tc[1], tc[0]))
        tokens = [t for t, _ in items if t not in (cls.PAD, cls.UNK)]
        if max_tokens is not None:
            tokens = tokens[: max(0, int(max_tokens) - 2)]
        return cls(tokens, char_level=char_level)

    def encode(self, tokens: Iterable[str] | str) -> np.ndarray:
        """Token ids (int64); unknown tokens map to 1. A string is split into characters."""
        return np.fromiter((self.stoi.get(t, 1) for t in tokens), dtype=np.int64)

    def decode(self, ids: Iterable[int], skip_pad: bool = True) -> str:
        """Join the tokens for ``ids`` (characters joined directly, words with spaces)."""
        if hasattr(ids, "detach"):
            ids = ids.detach().cpu().numpy()
        toks = []
        for i in np.asarray(ids).reshape(-1):
            i = int(i)
            if skip_pad and i == 0:
                continue
            toks.append(self[i] if 0 <= i < len(self) else self.UNK)
        return ("" if self.char_level else " ").join(toks)


# ----------------------------------------------------------------------------- splits


def check_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Validate split fractions; raise DataError naming the bad option."""
    out = []
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(f"option {name!r}: expected a fraction between 0 and 1, got {value!r}") from None
        if not 0.0 <= v < 1.0:
            raise DataError(f"option {name!r}: expected a fraction between 0 and 1, got {value!r}")
        out.append(v)
    if out[0] + out[1] >= 1.0:
        raise DataError(f"options 'val_fraction' + 'test_fraction' must be below 1, got "
                        f"{out[0]} + {out[1]}")
    return out[0], out[1]


def random_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded shuffle, then ``(train, val, test)`` index arrays."""
    rng = np.random.default_rng(check_seed(seed))
    perm = rng.permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    test = np.sort(perm[:n_test])
    val = np.sort(perm[n_test:n_test + n_val])
    train = np.sort(perm[n_test + n_val:])
    return train, val, test


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, ...]:
    """Per-class seeded split keeping class proportions; a class with one member stays in train."""
    rng = np.random.default_rng(check_seed(seed))
    labels = np.asarray(labels)
    parts: list[list[np.ndarray]] = [[], [], []]
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = len(idx)
        n_test = min(int(round(n * test_fraction)), n - 1) if n > 1 else 0
        n_val = int(round(n * val_fraction)) if n > 2 else 0
        if n_test + n_val >= n:  # always keep at least one training example per class
            n_val = max(0, n - 1 - n_test)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts)


def pad_sequences(seqs: Sequence[np.ndarray], max_len: int | None = None, dtype: Any = np.float32,
                  truncate: str = "post") -> tuple[np.ndarray, np.ndarray]:
    """Post-pad a list of ``(t, ...)`` arrays with zeros -> ``(x, lengths)``.

    ``truncate="post"`` keeps the first ``max_len`` steps, ``"pre"`` the last.
    """
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    t = int(lengths.max()) if len(seqs) else 0
    if max_len is not None:
        t = int(max_len)
    tail = tuple(np.asarray(seqs[0]).shape[1:]) if len(seqs) else ()
    x = np.zeros((len(seqs), t) + tail, dtype=dtype)
    for i, s in enumerate(seqs):
        s = np.asarray(s)
        if len(s) > t:
            s = s[:t] if truncate == "post" else s[len(s) - t:]
        x[i, : len(s)] = s
    return x, np.minimum(lengths, t)


def empty_like(data: SequenceData) -> SequenceData:
    """A zero-length split with the same trailing shapes and dtypes as ``data``."""
    return data.subset(slice(0, 0))
