"""``csv-text``: a text column and a label column -> padded token ids + class ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import DataError, DataSplits, check_fractions, random_split, stratified_split
from .csv_io import Table, read_table
from .text import LabelledText, text_classification_splits

__all__ = ["load_csv_text", "table_examples"]


def table_examples(table: Table, text_column: str, label_column: str) -> list[LabelledText]:
    """Examples from a table; an empty label cell raises DataError naming the row."""
    ti, li = table.index(text_column, "text_column"), table.index(label_column, "label_column")
    labels = table.column(li)
    empty = np.flatnonzero(labels == "")
    if len(empty):
        i = int(empty[0])
        raise DataError("", **table.where(i, li), expected="a label", got=table.cell(i, li))
    texts = [str(v) for v in table.frame[ti].tolist()]
    return [LabelledText(t, lab, f"{table.path}, row {line}")
            for t, lab, line in zip(texts, labels, table.lines.tolist())]


def load_csv_text(
    path: str,
    text_column: str = "text",
    label_column: str = "label",
    val_path: str | None = None,
    test_path: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    stratify: bool = True,
    seed: int = 0,
    max_tokens: int | None = 20000,
    min_freq: int = 1,
    max_len: int | None = 200,
    lowercase: bool = True,
    truncate: str = "post",
    unseen_labels: str = "error",
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> DataSplits:
    """Short-text classification from CSV.

    Val/test come from ``val_path``/``test_path`` when given, otherwise from a seeded
    (by default stratified) split of ``path``. Tokenizer: lower-cased regex words and
    punctuation; vocabulary from the training split only (``max_tokens`` incl. ``<pad>``/
    ``<unk>``, ``min_freq``); sequences padded/truncated to ``max_len`` (``None`` = longest).
    """
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    cols = [text_column, label_column]
    pool = table_examples(read_table(path, delimiter, encoding, text_columns=cols), text_column, label_column)
    given = {}
    for key, p in (("val", val_path), ("test", test_path)):
        if p is not None:
            given[key] = table_examples(read_table(p, delimiter, encoding, text_columns=cols), text_column,
                                        label_column)
    frac_val = 0.0 if "val" in given else val_fraction
    frac_test = 0.0 if "test" in given else test_fraction
    labels = np.array([ex.label for ex in pool], dtype=object)
    if stratify:
        tr, va, te = stratified_split(labels.astype(str), frac_val, frac_test, seed)
    else:
        tr, va, te = random_split(len(pool), frac_val, frac_test, seed)
    train = [pool[i] for i in tr]
    val = given.get("val", [pool[i] for i in va])
    test = given.get("test", [pool[i] for i in te])
    return text_classification_splits(
        train, val, test, max_tokens=max_tokens, min_freq=min_freq, max_len=max_len, lowercase=lowercase,
        truncate=truncate, unseen_labels=unseen_labels, name=Path(str(path)).name,
        source=f"CSV text {path}", extra_meta={"path": str(path), "text_column": text_column,
                                                "label_column": label_column, "splits_from": {
                                                    k: str(p) if p is not None else "fraction"
                                                    for k, p in (("val", val_path), ("test", test_path))}})
