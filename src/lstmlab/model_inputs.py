"""What ``fit`` / ``evaluate`` / ``predict`` take as ``x``: arrays and tensors, a wide numeric
DataFrame (its values, as Keras takes it) or a :class:`~lstmlab.data.SequenceData` split, which is
how a long-format DataFrame (id, time, features, label) arrives via ``ll.data.from_dataframe``."""

from __future__ import annotations

import numpy as np
import torch

from .data.base import SequenceData
from .validation import InputError, as_tensor

__all__ = ["FROM_DATAFRAME", "as_input", "is_dataframe", "unpack"]

FROM_DATAFRAME = ("ll.data.from_dataframe(df, id=..., time=..., label=..., val_fraction=0, test_fraction=0).train "
                  "(a split with x, y and lengths) and pass that as x")


def is_dataframe(x) -> bool:
    """A pandas DataFrame, told without importing pandas."""
    return type(x).__name__ == "DataFrame" and type(x).__module__.startswith("pandas")


def unpack(x, y, lengths, need_y: bool = True) -> tuple:
    """``(x, y, lengths)`` from a :class:`~lstmlab.data.SequenceData` split passed as ``x`` (what
    ``ll.data.from_dataframe`` and every loader give), else as passed; ``y`` must then be omitted."""
    if isinstance(x, SequenceData):
        for arg, v in (("y", y), ("lengths", lengths)):
            if v is not None:
                raise InputError(f"{arg}: x is a SequenceData split, which carries its own {arg}; "
                                 f"expected {arg}=None, got {type(v).__name__}")
        return x.x, x.y, x.lengths
    if y is None and need_y:
        raise InputError("y: expected the targets (an array with one row per sample of x), got None; "
                         "pass y, or a SequenceData split as x")
    return x, y, lengths


def as_input(name: str, x) -> torch.Tensor:
    """``x`` as a non-empty tensor; a DataFrame or Series by its values (numeric columns only)."""
    if is_dataframe(x):
        x = frame_values(name, x)
    elif type(x).__name__ == "Series" and type(x).__module__.startswith("pandas"):
        x = x.to_numpy(copy=True)  # pandas may hand out a read-only view
    t = as_tensor(name, x)
    if t.numel() == 0:
        raise InputError(f"{name}: expected a non-empty array, got shape {tuple(t.shape)}")
    return t


def frame_values(name: str, df) -> np.ndarray:
    """A wide DataFrame (one sample per row, numeric columns) as its values, as Keras takes it."""
    bad = [str(c) for c, kind in zip(df.columns, (dt.kind for dt in df.dtypes)) if kind not in "biuf"]
    if bad:
        raise InputError(f"{name}: expected numeric columns (one sample per row), got a DataFrame with "
                         f"non-numeric column(s) {bad[:5]}; a long-format table (id, time, features, label) "
                         f"becomes sequences with {FROM_DATAFRAME}")
    return df.to_numpy(copy=True)  # pandas may hand out a read-only view
