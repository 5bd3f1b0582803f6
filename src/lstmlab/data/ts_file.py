"""``ts-file``: UCR/UEA time-series classification files (``.ts`` as sktime/aeon ship them, and ``.arff``).

``.ts`` layout::

    # comment lines
    @problemName BasicMotions
    @timeStamps false          # true: each value is written "(time,value)"
    @missing false
    @univariate false
    @dimensions 6
    @equalLength true
    @seriesLength 100
    @classLabel true Standing Running Walking Badminton     # or @targetLabel true (regression)
    @data
    0.1,0.2,...:0.3,0.1,...:...:Standing                    # dimensions split by ':', values by ','

``?`` (or ``NaN``) is a missing value. Series may have different lengths (``@equalLength
false``): they are post-padded, with ``lengths``. The ``.arff`` variant (Weka) has one
``@attribute`` per time step and the class last; a multivariate one holds a quoted relational
value whose dimensions are separated by ``\\n``. The format is picked by the file extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import DataError, DataSplits, check_fractions, random_split, stratified_split, suggest
from .csv_io import decode, read_bytes
from .csv_sequences import pack_sequences

__all__ = ["load_ts_file", "read_ts", "TsData"]

MISSING_POLICIES = ("interpolate", "zero", "error")
_MISSING = {"?", "nan", "NaN", "NAN", ""}
_STAMPED = re.compile(r"\(([^()]*),([^(),]*)\)")


@dataclass
class TsData:
    """One parsed file: ``series`` (each ``(t, dims)``), raw labels, declared classes, header tags."""

    path: str
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    classes: list[str] | None = None
    regression: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    missing: int = 0


def _values(text: str, path: str, line: int, dim: int, stamped: bool) -> np.ndarray:
    """One dimension's values; ``?``/NaN -> NaN; anything else not a number is an error."""
    if stamped:
        pairs = _STAMPED.findall(text)
        if not pairs and text.strip():
            raise DataError("expected (time,value) pairs because @timeStamps is true", path=path, row=line,
                            column=f"dimension {dim}", got=text[:40])
        tokens = [v for _, v in pairs]
    else:
        tokens = text.split(",")
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(tokens))
    for k, tok in enumerate(tokens):
        tok = tok.strip()
        if tok in _MISSING:
            out[k] = np.nan
            continue
        try:
            out[k] = float(tok)
        except ValueError:
            raise DataError(f"value {k + 1}", path=path, row=line, column=f"dimension {dim}",
                            expected="a number or ? (missing)", got=tok) from None
    return out


def _header(data: TsData, tag: str, rest: str, line: int) -> None:
    words = rest.split()
    data.tags[tag] = rest.strip()
    if tag == "classlabel":
        if not words or words[0].lower() not in ("true", "false"):
            raise DataError("@classLabel must be followed by true (and the class names) or false",
                            path=data.path, row=line, got=rest.strip())
        if words[0].lower() == "true":
            if len(words) < 2:
                raise DataError("@classLabel true lists no class names", path=data.path, row=line)
            data.classes = words[1:]
    elif tag == "targetlabel" and words and words[0].lower() == "true":
        data.regression = True


def _case(data: TsData, raw: str, line: int, dims: int | None, stamped: bool) -> None:
    parts = raw.split(":") if not stamped else re.split(r":(?![^()]*\))", raw)
    labelled = data.classes is not None or data.regression
    if labelled:
        if len(parts) < 2:
            raise DataError("expected the dimensions and then ':' and the class label", path=data.path, row=line)
        label = parts.pop().strip()
        if data.classes is not None and label not in data.classes:
            raise DataError(f"class label {label!r} is not declared in @classLabel ({' '.join(data.classes)})"
                            + suggest(label, data.classes), path=data.path, row=line)
        data.labels.append(label)
    if dims is not None and len(parts) != dims:
        raise DataError(f"@dimensions says {dims}", path=data.path, row=line, expected=f"{dims} dimensions",
                        got=len(parts))
    cols = [_values(p, data.path, line, d + 1, stamped) for d, p in enumerate(parts)]
    if len({len(c) for c in cols}) > 1:
        raise DataError("the dimensions of one case must have the same length", path=data.path, row=line,
                        expected=f"{len(cols[0])} values in every dimension", got=[len(c) for c in cols])
    if not len(cols[0]):
        raise DataError("a case with no values", path=data.path, row=line)
    data.series.append(np.stack(cols, axis=1))
    data.lines.append(line)


def read_ts(path: str | Path, encoding: str = "utf-8") -> TsData:
    """Parse a ``.ts`` file (see the module doc); errors name the file and line."""
    text = decode(read_bytes(path, ".ts file"), encoding, path)
    data = TsData(str(path))
    in_data = False
    dims = stamped = None
    for line, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if not in_data:
            if not s.startswith("@"):
                raise DataError("expected a @tag line or @data before the first case", path=path, row=line,
                                got=s[:40])
            tag, _, rest = s[1:].partition(" ")
            tag = tag.lower()
            if tag == "data":
                in_data = True
                stamped = data.tags.get("timestamps", "false").lower().startswith("true")
                dims = int(data.tags["dimensions"]) if data.tags.get("dimensions", "").isdigit() else None
                if data.tags.get("univariate", "").lower() == "true":
                    dims = 1
            else:
                _header(data, tag, rest, line)
            continue
        _case(data, s, line, dims, bool(stamped))
    if not in_data:
        raise DataError("no @data line; is this a .ts file?", path=path)
    if not data.series:
        raise DataError("no cases below @data", path=path)
    return data


def read_arff(path: str | Path, encoding: str = "utf-8") -> TsData:
    """Parse a UCR/UEA ``.arff`` file (univariate rows, or one relational value per case)."""
    text = decode(read_bytes(path, ".arff file"), encoding, path)
    data = TsData(str(path))
    in_data = relational = False
    for line, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if not s or s.startswith("%"):
            continue
        low = s.lower()
        if not in_data:
            if low.startswith("@attribute") and "relational" in low:
                relational = True
            elif low.startswith("@attribute") and "{" in s:
                data.classes = [c.strip().strip("'\"") for c in s[s.index("{") + 1: s.rindex("}")].split(",")]
            elif low.startswith("@data"):
                in_data = True
            continue
        if relational:
            body, _, label = s.rpartition(",")
            body = body.strip().strip("'\"").replace("\\n", ":")
            _case(data, f"{body}:{label}", line, None, False)
        else:
            body, _, label = s.rpartition(",")
            _case(data, f"{body}:{label}", line, 1, False)
    if not data.series:
        raise DataError("no cases below @data; is this a UCR/UEA .arff file?", path=path)
    return data


def _fill_missing(data: TsData, policy: str) -> None:
    """Apply the missing-value policy to every dimension of every case (see :func:`load_ts_file`)."""
    for i, s in enumerate(data.series):
        gaps = np.isnan(s)
        if not gaps.any():
            continue
        data.missing += int(gaps.sum())
        if policy == "error":
            d = int(np.flatnonzero(gaps.any(axis=0))[0])
            raise DataError("missing value (?); set missing='interpolate' or 'zero'", path=data.path,
                            row=data.lines[i], column=f"dimension {d + 1}")
        for d in np.flatnonzero(gaps.any(axis=0)):
            col, bad = s[:, d], gaps[:, d]
            if policy == "zero" or bad.all():
                col[bad] = 0.0
            else:
                idx = np.arange(len(col))
                col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])


def _read(path: str, encoding: str, missing: str) -> TsData:
    reader = read_arff if str(path).lower().endswith(".arff") else read_ts
    data = reader(path, encoding)
    _fill_missing(data, missing)
    return data


def _targets(data: TsData, class_names: list[str] | None) -> np.ndarray:
    if class_names is None:
        try:
            return np.array([[float(v)] for v in data.labels], dtype=np.float32)
        except ValueError:
            bad = next(i for i, v in enumerate(data.labels) if not _is_float(v))
            raise DataError("", path=data.path, row=data.lines[bad], column="target", expected="a number",
                            got=data.labels[bad]) from None
    pos = {c: i for i, c in enumerate(class_names)}
    for lab, line in zip(data.labels, data.lines):
        if lab not in pos:
            raise DataError(f"class label {lab!r} is not a class of the training file ({' '.join(class_names)})",
                            path=data.path, row=line)
    return np.array([pos[v] for v in data.labels], dtype=np.int64)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def load_ts_file(
    path: str,
    test_path: str | None = None,
    val_path: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    stratify: bool = True,
    seed: int = 0,
    scale: str | None = "standard",
    missing: str = "interpolate",
    max_len: int | None = None,
    encoding: str = "utf-8",
) -> DataSplits:
    """UCR/UEA classification (or ``@targetLabel`` regression) from ``_TRAIN.ts`` / ``_TEST.ts`` files.

    ``test_path`` / ``val_path`` are those splits (the archive's official test split); otherwise
    a seeded (stratified) split of ``path`` by the fractions. Classes come from the training
    file's ``@classLabel`` list, in its order. ``missing``: ``interpolate`` (linear within each
    dimension of each case, the ends take the nearest value, an all-missing dimension becomes 0),
    ``zero``, or ``error``. Cases of different lengths are post-padded with ``lengths``;
    ``scale`` is fitted on the training cases' real steps.
    """
    if missing not in MISSING_POLICIES:
        raise DataError(f"option 'missing': expected one of {', '.join(MISSING_POLICIES)}, got {missing!r}"
                        + suggest(str(missing), MISSING_POLICIES))
    pool = _read(path, encoding, missing)
    if pool.classes is None and not pool.regression:
        raise DataError("the file has no labels (@classLabel false); lstmlab needs @classLabel true or "
                        "@targetLabel true", path=path)
    given = {k: _read(p, encoding, missing) for k, p in (("val", val_path), ("test", test_path)) if p is not None}
    val_fraction, test_fraction = check_fractions(0.0 if "val" in given else val_fraction,
                                                  0.0 if "test" in given else test_fraction)
    class_names = pool.classes if not pool.regression else None
    y = _targets(pool, class_names)
    if stratify and class_names is not None:
        tr, va, te = stratified_split(y, val_fraction, test_fraction, seed)
    else:
        tr, va, te = random_split(len(y), val_fraction, test_fraction, seed)
    ids = [f"{Path(path).name}:{line}" for line in pool.lines]
    parts = {k: ([pool.series[i] for i in idx], y[idx], [ids[i] for i in idx])
             for k, idx in (("train", tr), ("val", va), ("test", te))}
    for k, d in given.items():
        if d.series[0].shape[1] != pool.series[0].shape[1]:
            raise DataError(f"{d.series[0].shape[1]} dimensions, but the training file has "
                            f"{pool.series[0].shape[1]}", path=d.path, row=d.lines[0])
        parts[k] = (d.series, _targets(d, class_names), [f"{Path(d.path).name}:{line}" for line in d.lines])
    dims = pool.series[0].shape[1]
    meta = {"name": pool.tags.get("problemname", Path(path).stem), "source": f"UCR/UEA file {path}",
            "path": str(path), "missing": {"policy": missing, "cells": pool.missing + sum(
                d.missing for d in given.values())},
            "splits_from": {k: str(given[k].path) if k in given else "fraction" for k in ("val", "test")}}
    return pack_sequences(parts, [f"dim{d + 1}" for d in range(dims)],
                          kind="regression" if class_names is None else "classification",
                          class_names=class_names, scale=scale, max_len=max_len, meta=meta)
