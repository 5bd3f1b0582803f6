"""``csv-sequences``: long format (one row per time step) -> padded sequences + one label each.

The same code reads a CSV file and a pandas DataFrame (:func:`from_dataframe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import (
    DataError,
    DataSplits,
    SequenceData,
    check_fractions,
    make_scaler,
    pad_sequences,
    random_split,
    stratified_split,
    suggest,
)
from .csv_io import Table, pandas, read_table
from .timecol import parse_time_column

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["load_csv_sequences", "from_dataframe", "sequences_from_tables", "pack_sequences"]


@dataclass
class _Seqs:
    """Sequences read from one table: ids, raw labels (with the row they were first seen), values."""

    ids: list[str]
    labels: list[str]
    label_rows: list[int]
    values: list[np.ndarray]
    table: Table


def _feature_columns(table: Table, id_column: Any, label_column: Any, time_column: Any,
                     features: Any) -> tuple[int, int, int | None, list[int]]:
    ic = table.index(id_column, "id_column")
    lc = table.index(label_column, "label_column")
    tc = table.index(time_column, "time_column") if time_column is not None else None
    skip = {ic, lc} | ({tc} if tc is not None else set())
    if features is None:
        fcols = [j for j in range(len(table.header)) if j not in skip]
    else:
        fcols = [table.index(f, "features") for f in ([features] if isinstance(features, str) else features)]
        for j in fcols:
            if j in skip:
                raise DataError(f"option 'features': {table.header[j]!r} is the id, label or time column",
                                path=table.path)
    if not fcols:
        raise DataError("no feature columns besides the id and label columns", path=table.path, row=1)
    return ic, lc, tc, fcols


def _group(table: Table, ic: int, lc: int) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, int]]]:
    """Row positions of every sequence id (file order) and each id's label; DataError on bad cells."""
    sids, labs = table.column(ic), table.column(lc)
    for col, cells, what in ((ic, sids, "a sequence id"), (lc, labs, "a label")):
        empty = np.flatnonzero(cells == "")
        if len(empty):
            raise DataError("", **table.where(int(empty[0]), col), expected=what, got=cells[empty[0]])
    codes, first = pandas().factorize(pandas().Series(sids, dtype=object))
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = dict(zip(first.tolist(), np.split(order, bounds)))
    label_of: dict[str, tuple[str, int]] = {}
    for sid, rows in groups.items():
        differ = np.flatnonzero(labs[rows] != labs[rows[0]])
        if len(differ):
            i = int(rows[differ[0]])
            raise DataError(f"sequence {sid!r} has label {labs[i]!r} here but {labs[rows[0]]!r} on row "
                            f"{int(table.lines[rows[0]])}; the label must be the same on every row of a sequence",
                            **table.where(i, lc))
        label_of[sid] = (labs[rows[0]], int(rows[0]))
    return groups, label_of


def _order_by_time(table: Table, tc: int, groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keys = parse_time_column(table, tc).keys
    out = {}
    for sid, rows in groups.items():
        order = rows[np.argsort(keys[rows], kind="stable")]
        same = np.flatnonzero(keys[order][1:] == keys[order][:-1])
        if len(same):
            i, j = sorted((int(order[same[0]]), int(order[same[0] + 1])))
            raise DataError(f"sequence {sid!r} has time {table.cell(j, tc)!r} here and on row "
                            f"{int(table.lines[i])}; each step of a sequence needs its own time", **table.where(j, tc))
        out[sid] = order
    return out


def _read_sequences(table: Table, id_column: Any, label_column: Any, time_column: Any, features: Any,
                    names: list[str] | None = None) -> tuple[_Seqs, list[str]]:
    """All sequences of one table; ``names`` (from the training table) fixes the feature columns."""
    ic, lc, tc, fcols = _feature_columns(table, id_column, label_column, time_column,
                                         names if names is not None else features)
    groups, label_of = _group(table, ic, lc)
    if tc is not None:
        groups = _order_by_time(table, tc, groups)
    values = table.numeric_block(fcols, hint="missing value; every feature cell of a sequence needs a number")
    ids = list(groups)
    return _Seqs(ids, [label_of[s][0] for s in ids], [label_of[s][1] for s in ids],
                 [values[groups[s]] for s in ids], table), [table.header[j] for j in fcols]


def _class_ids(seqs: _Seqs, class_names: list[str], label_column: Any) -> np.ndarray:
    pos = {c: i for i, c in enumerate(class_names)}
    for lab, row in zip(seqs.labels, seqs.label_rows):
        if lab not in pos:
            shown = ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")
            raise DataError(f"label {lab!r} never occurs in the training data (training labels: {shown})",
                            **seqs.table.where(row, seqs.table.index(label_column)))
    return np.array([pos[v] for v in seqs.labels], dtype=np.int64)


def _targets(seqs: _Seqs, kind: str, class_names: list[str] | None, label_column: Any) -> np.ndarray:
    if kind == "classification":
        return _class_ids(seqs, class_names or [], label_column)
    lc = seqs.table.index(label_column)
    out = pandas().to_numeric(pandas().Series(seqs.labels, dtype=object), errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        raise DataError("", **seqs.table.where(seqs.label_rows[bad[0]], lc), expected="a finite number",
                        got=seqs.labels[bad[0]])
    return out[:, None].astype(np.float32)


def _label_order(labels: Sequence[str]) -> list[str]:
    names = sorted(set(labels))
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def sequences_from_tables(
    tables: Sequence[Table | None],
    *,
    id_column: Any = "id",
    label_column: Any = "label",
    features: Sequence[str] | None = None,
    time_column: Any = None,
    kind: str = "classification",
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    stratify: bool = True,
    seed: int = 0,
    scale: str | None = "standard",
    max_len: int | None = None,
    name: str = "sequences",
    source: str = "",
) -> DataSplits:
    """Sequences from (train, val or None, test or None) tables; see :func:`load_csv_sequences`."""
    if kind not in ("classification", "regression"):
        raise DataError(f"option 'kind': expected 'classification' or 'regression', got {kind!r}"
                        + suggest(str(kind), ["classification", "regression"]))
    if max_len is not None and (isinstance(max_len, bool) or int(max_len) != max_len or max_len < 1):
        raise DataError(f"option 'max_len': expected a positive integer or None, got {max_len!r}")
    val_fraction, test_fraction = check_fractions(0.0 if tables[1] is not None else val_fraction,
                                                  0.0 if tables[2] is not None else test_fraction)
    pool, fnames = _read_sequences(tables[0], id_column, label_column, time_column, features)
    class_names = _label_order(pool.labels) if kind == "classification" else None
    y_pool = _targets(pool, kind, class_names, label_column)
    if stratify and kind == "classification":
        tr, va, te = stratified_split(y_pool, val_fraction, test_fraction, seed)
    else:
        tr, va, te = random_split(len(pool.ids), val_fraction, test_fraction, seed)
    parts: dict[str, tuple[list[np.ndarray], np.ndarray, list[str]]] = {}
    for split, idx, table in (("train", tr, None), ("val", va, tables[1]), ("test", te, tables[2])):
        if table is None:
            parts[split] = ([pool.values[i] for i in idx], y_pool[idx], [pool.ids[i] for i in idx])
        else:
            seqs, _ = _read_sequences(table, id_column, label_column, time_column, None, fnames)
            parts[split] = (seqs.values, _targets(seqs, kind, class_names, label_column), seqs.ids)
    splits_from = {k: (t.path if t is not None else "fraction") for k, t in (("val", tables[1]), ("test", tables[2]))}
    return pack_sequences(parts, fnames, kind=kind, class_names=class_names, scale=scale, max_len=max_len,
                          meta={"name": name, "source": source, "path": tables[0].path, "splits_from": splits_from})


def pack_sequences(parts: dict[str, tuple[list[np.ndarray], np.ndarray, list[str]]], fnames: list[str], *,
                   kind: str, class_names: list[str] | None, scale: str | None, max_len: int | None,
                   meta: dict[str, Any]) -> DataSplits:
    """Scale (fitted on the training sequences' real steps), pad to one length, describe.

    ``parts[split]`` = (list of ``(t, F)`` arrays, targets, ids) for train, val and test.
    """
    scaler = make_scaler(scale, fnames)
    if parts["train"][0]:
        scaler.fit(np.concatenate([s[: max_len or None] for s in parts["train"][0]]))
    t_len = int(max_len) if max_len is not None else max(len(s) for p in parts.values() for s in p[0])

    def pack(seqs: list[np.ndarray], y: np.ndarray) -> SequenceData:
        if not seqs:
            return SequenceData(np.zeros((0, t_len, len(fnames)), np.float32), y, np.zeros(0, np.int64))
        x, lengths = pad_sequences([scaler.transform(s).astype(np.float32) for s in seqs], t_len)
        return SequenceData(x, y, lengths)

    info = {
        "kind": kind, "target": "sequence", "input_type": "features",
        "n_classes": len(class_names) if class_names else None, "class_names": class_names,
        "n_features": len(fnames), "n_outputs": len(class_names) if class_names else 1,
        "feature_names": fnames, "vocab": None, "scaler": None, "feature_scaler": scaler,
        "ids": {k: v[2] for k, v in parts.items()}, "max_len": t_len, "baseline": {},
    }
    if class_names and len(parts["test"][1]):
        majority = int(np.bincount(parts["train"][1], minlength=len(class_names)).argmax())
        info["baseline"] = {"majority_class": class_names[majority],
                            "test_accuracy": float(np.mean(parts["test"][1] == majority))}
    return DataSplits(*(pack(*parts[k][:2]) for k in ("train", "val", "test")), {**info, **meta})


def load_csv_sequences(
    path: str,
    id_column: str = "id",
    label_column: str = "label",
    features: Sequence[str] | None = None,
    time_column: str | None = None,
    kind: str = "classification",
    val_path: str | None = None,
    test_path: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    stratify: bool = True,
    seed: int = 0,
    scale: str | None = "standard",
    max_len: int | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> DataSplits:
    """Variable-length multivariate sequences in long format.

    Rows sharing an ``id_column`` value form one sequence (in file order, or sorted by
    ``time_column``: numbers, ``YYYY-MM``, ``YYYYQn`` or ISO dates). The ``label_column`` must
    be constant within a sequence. ``features`` defaults to every other column. ``x`` is
    post-padded float32 ``(N, T, F)`` with ``lengths``; ``y`` int64 class ids
    (``kind='classification'``, classes from the training file) or float32 ``(N, 1)``
    (``kind='regression'``). ``val_path`` / ``test_path`` (same columns) are those splits, the
    official split of a data set; otherwise a seeded (stratified) split of ``path`` by the
    fractions. Scaling is fitted on the training sequences' real steps only.
    """
    text = [c for c in (id_column, label_column, time_column) if c is not None]
    tables = [None if p is None else read_table(p, delimiter, encoding, text_columns=text)
              for p in (path, val_path, test_path)]
    return sequences_from_tables(tables, id_column=id_column, label_column=label_column, features=features,
                                 time_column=time_column, kind=kind, val_fraction=val_fraction,
                                 test_fraction=test_fraction, stratify=stratify, seed=seed, scale=scale,
                                 max_len=max_len, name=Path(str(path)).name, source=f"CSV sequences {path}")


def from_dataframe(
    df: pd.DataFrame,
    id: str = "id",  # noqa: A002 - the column's role, as users name it
    time: str | None = None,
    label: str = "label",
    features: Sequence[str] | None = None,
    *,
    val: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    **options: Any,
) -> DataSplits:
    """A long-format DataFrame (``id``, ``time``, features..., ``label``) -> the same splits as csv-sequences.

    ``val`` / ``test`` DataFrames are those splits; ``options`` are csv-sequences' (kind,
    fractions, seed, scale, max_len, stratify). Rows in errors are positions (``df.iloc[row]``).
    """
    tables = [None if d is None else Table.from_frame(d, name) for d, name in
              ((df, "DataFrame"), (val, "val DataFrame"), (test, "test DataFrame"))]
    return sequences_from_tables(tables, id_column=id, label_column=label, features=features, time_column=time,
                                 name="DataFrame", source="pandas DataFrame", **options)
