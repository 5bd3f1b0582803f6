"""``csv-sequences``: long format (one row per time step) -> padded sequences + one label each."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
from .csv_io import parse_number, parse_time, read_table

__all__ = ["load_csv_sequences"]


def load_csv_sequences(
    path: str,
    id_column: str = "id",
    label_column: str = "label",
    features: Sequence[str] | None = None,
    time_column: str | None = None,
    kind: str = "classification",
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
    ``time_column``). The ``label_column`` must be constant within a sequence. ``features``
    defaults to every other column. ``x`` is post-padded float32 ``(N, T, F)`` with
    ``lengths``; ``y`` int64 class ids (``kind='classification'``) or float32 ``(N, 1)``
    (``kind='regression'``). Scaling is fitted on the training sequences' real steps only.
    """
    if kind not in ("classification", "regression"):
        raise DataError(f"option 'kind': expected 'classification' or 'regression', got {kind!r}"
                        + suggest(str(kind), ["classification", "regression"]))
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    table = read_table(path, delimiter, encoding)
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
    fnames = [table.header[j] for j in fcols]

    groups: dict[str, list[int]] = {}
    label_of: dict[str, tuple[str, int]] = {}
    for i, (row, line) in enumerate(zip(table.rows, table.lines, strict=True)):
        sid = row[ic].strip()
        if not sid:
            raise DataError("", path=table.path, row=line, column=table.header[ic], expected="a sequence id",
                            got=row[ic])
        lab = row[lc].strip()
        if not lab:
            raise DataError("", path=table.path, row=line, column=table.header[lc], expected="a label",
                            got=row[lc])
        if sid in label_of and label_of[sid][0] != lab:
            first, first_line = label_of[sid]
            raise DataError(f"sequence {sid!r} has label {lab!r} here but {first!r} on row {first_line}; "
                            "the label must be the same on every row of a sequence",
                            path=table.path, row=line, column=table.header[lc])
        label_of.setdefault(sid, (lab, line))
        groups.setdefault(sid, []).append(i)

    seqs = []
    for rows in groups.values():
        if tc is not None:
            keys = []
            for i in rows:
                k = parse_time(table.rows[i][tc])
                if k is None:
                    raise DataError("", path=table.path, row=table.lines[i], column=table.header[tc],
                                    expected="a number or ISO date", got=table.rows[i][tc])
                keys.append(k)
            order = np.argsort(keys, kind="stable")
            for a, b in zip(order[:-1], order[1:]):
                if keys[a] == keys[b]:
                    i, j = sorted((rows[a], rows[b]))
                    raise DataError(f"sequence {table.rows[j][ic].strip()!r} has time {table.rows[j][tc]!r} here "
                                    f"and on row {table.lines[i]}; each step of a sequence needs its own time",
                                    path=table.path, row=table.lines[j], column=table.header[tc])
            rows = [rows[k] for k in order]
        seqs.append(np.array([[parse_number(table.rows[i][j], table.path, table.lines[i], table.header[j])
                               for j in fcols] for i in rows], dtype=np.float64))
    ids = list(groups)
    raw_labels = [label_of[s][0] for s in ids]
    if kind == "classification":
        class_names = sorted(set(raw_labels))
        try:
            class_names = sorted(class_names, key=float)
        except ValueError:
            pass
        y_all = np.array([class_names.index(v) for v in raw_labels], dtype=np.int64)
    else:
        class_names = None
        y_all = np.array([[parse_number(label_of[s][0], table.path, label_of[s][1], table.header[lc])]
                          for s in ids], dtype=np.float32)
    if stratify and kind == "classification":
        tr, va, te = stratified_split(y_all, val_fraction, test_fraction, seed)
    else:
        tr, va, te = random_split(len(ids), val_fraction, test_fraction, seed)

    scaler = make_scaler(scale, fnames)
    if len(tr):
        scaler.fit(np.concatenate([seqs[i][: max_len or None] for i in tr]))
    scaled = [scaler.transform(s).astype(np.float32) for s in seqs]
    t_len = int(max_len) if max_len is not None else max(len(s) for s in seqs)
    x_all, lengths = pad_sequences(scaled, t_len, dtype=np.float32)

    def part(idx: np.ndarray) -> SequenceData:
        return SequenceData(x_all[idx], y_all[idx], lengths[idx])

    meta = {
        "name": Path(str(path)).name,
        "kind": kind,
        "target": "sequence",
        "input_type": "features",
        "n_classes": len(class_names) if class_names else None,
        "class_names": class_names,
        "n_features": len(fcols),
        "n_outputs": len(class_names) if class_names else 1,
        "feature_names": fnames,
        "vocab": None,
        "scaler": None,
        "feature_scaler": scaler,
        "ids": {k: [ids[i] for i in idx] for k, idx in (("train", tr), ("val", va), ("test", te))},
        "max_len": t_len,
        "baseline": {},
        "source": f"CSV sequences {path}",
        "path": str(path),
    }
    return DataSplits(part(tr), part(va), part(te), meta)
