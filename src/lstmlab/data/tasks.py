"""Synthetic long-time-lag tasks: adding problem, copy memory, temporal order.

All generators are seeded. Train, val and test come from independent child streams of
``seed``, so changing ``n_train`` leaves the test set unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import DataError, DataSplits, SequenceData

__all__ = ["adding_problem", "copy_memory", "temporal_order"]


def _check_int(name: str, value: Any, low: int) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise DataError(f"option {name!r}: expected an integer >= {low}, got {value!r}") from None
    if v != value or v < low:
        raise DataError(f"option {name!r}: expected an integer >= {low}, got {value!r}")
    return v


def _streams(seed: int, n_train: int, n_val: int, n_test: int) -> list[tuple[np.random.Generator, int]]:
    n_train = _check_int("n_train", n_train, 0)
    n_val = _check_int("n_val", n_val, 0)
    n_test = _check_int("n_test", n_test, 0)
    children = np.random.SeedSequence(_check_int("seed", seed, 0)).spawn(3)
    return [(np.random.default_rng(c), n) for c, n in zip(children, (n_train, n_val, n_test), strict=True)]


# ----------------------------------------------------------------------------- adding problem


def _adding(rng: np.random.Generator, n: int, length: int) -> SequenceData:
    values = rng.random((n, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return SequenceData(x, y, None)


def adding_problem(length: int = 100, n_train: int = 10000, n_val: int = 1000, n_test: int = 1000,
                   seed: int = 0) -> DataSplits:
    """Adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015 variant).

    ``x`` (N, T, 2): channel 0 values ~ U[0, 1], channel 1 markers, exactly one marker in
    ``[0, T//2)`` and one in ``[T//2, T)``. ``y`` (N, 1): the sum of the two marked values.
    Always predicting 1.0 gives MSE = Var(U1 + U2) = 1/6 ~= 0.167 (``meta['baseline']``).
    """
    length = _check_int("length", length, 2)
    parts = [_adding(rng, n, length) for rng, n in _streams(seed, n_train, n_val, n_test)]
    test = parts[2]
    meta = {
        "name": "adding",
        "kind": "regression",
        "target": "sequence",
        "input_type": "features",
        "n_classes": None,
        "class_names": None,
        "n_features": 2,
        "n_outputs": 1,
        "feature_names": ["value", "marker"],
        "seq_len": length,
        "vocab": None,
        "scaler": None,
        "baseline": {"mse": 1.0 / 6.0, "predict": 1.0,
                     "test_mse": float(np.mean((test.y - 1.0) ** 2)) if len(test) else None,
                     "note": "memoryless: always predict E[sum] = 1.0"},
        "source": f"adding problem, T={length}, seed={seed} (Hochreiter & Schmidhuber 1997; Le et al. 2015)",
    }
    return DataSplits(parts[0], parts[1], parts[2], meta)


# ----------------------------------------------------------------------------- copy memory


def _copy(rng: np.random.Generator, n: int, delay: int, memory: int, categories: int,
          one_hot: bool) -> SequenceData:
    total = delay + 2 * memory
    delimiter = categories + 1
    symbols = rng.integers(1, categories + 1, size=(n, memory))
    ids = np.zeros((n, total), dtype=np.int64)
    ids[:, :memory] = symbols
    ids[:, memory + delay - 1] = delimiter
    y = np.zeros((n, total), dtype=np.int64)
    y[:, -memory:] = symbols
    if one_hot:
        x = np.eye(categories + 2, dtype=np.float32)[ids]
    else:
        x = ids
    return SequenceData(x, y, None)


def copy_memory(length: int = 100, memory_length: int = 10, n_categories: int = 8, n_train: int = 10000,
                n_val: int = 1000, n_test: int = 1000, one_hot: bool = True, seed: int = 0) -> DataSplits:
    """Copy memory task (Arjovsky, Shah & Bengio 2016).

    Sequence of ``T + 20`` steps (``T = length``): 10 symbols from categories 1..8, ``T - 1``
    blanks (0), the delimiter (9), 10 blanks. The target is blank everywhere except the last
    10 steps, which repeat the 10 symbols. ``y`` (N, T+20) int64, 10 classes per step;
    ``x`` is one-hot (N, T+20, 10) float32, or ids (N, T+20) with ``one_hot=False``.
    Memoryless baseline cross-entropy per step: ``10 * log(8) / (T + 20)``.
    """
    length = _check_int("length", length, 1)
    memory = _check_int("memory_length", memory_length, 1)
    categories = _check_int("n_categories", n_categories, 2)
    parts = [_copy(rng, n, length, memory, categories, bool(one_hot))
             for rng, n in _streams(seed, n_train, n_val, n_test)]
    total = length + 2 * memory
    ce = memory * math.log(categories) / total
    meta = {
        "name": "copy",
        "kind": "classification",
        "target": "per_step",
        "input_type": "features" if one_hot else "tokens",
        "n_classes": categories + 2,
        "class_names": ["blank"] + [str(i) for i in range(1, categories + 1)] + ["delimiter"],
        "n_features": categories + 2 if one_hot else None,
        "n_outputs": categories + 2,
        "vocab": None,
        "seq_len": total,
        "scaler": None,
        "baseline": {"cross_entropy": ce,
                     "formula": f"{memory}*log({categories})/(T+{2 * memory})",
                     "note": "memoryless: predict blank, then a uniform guess over the "
                             f"{categories} symbols in the last {memory} steps"},
        "source": f"copy memory, T={length}, seed={seed} (Arjovsky, Shah & Bengio 2016)",
    }
    return DataSplits(parts[0], parts[1], parts[2], meta)


# ----------------------------------------------------------------------------- temporal order

TEMPORAL_SYMBOLS = ["a", "b", "c", "d", "X", "Y", "B", "E"]
# Relevant-symbol windows of the original (sequence length 100), as fractions of T.
_WINDOWS = {4: [(0.10, 0.20), (0.50, 0.60)], 8: [(0.10, 0.20), (0.33, 0.43), (0.66, 0.76)]}


def _temporal(rng: np.random.Generator, n: int, length: int, classes: int, jitter: int) -> SequenceData:
    k = len(_WINDOWS[classes])
    lengths = length + rng.integers(0, jitter + 1, size=n)
    total = int(lengths.max()) if n else length
    ids = rng.integers(0, 4, size=(n, total))  # distractors a..d
    rows = np.arange(n)
    bits = rng.integers(0, 2, size=(n, k))
    for j, (lo, hi) in enumerate(_WINDOWS[classes]):
        pos = rng.integers(round(lo * length), round(hi * length) + 1, size=n)
        ids[rows, pos] = 4 + bits[:, j]  # X = 4, Y = 5
    ids[:, 0] = 7  # E: start
    ids[rows, lengths - 1] = 6  # B: end
    x = np.eye(len(TEMPORAL_SYMBOLS), dtype=np.float32)[ids]
    x[np.arange(total)[None, :] >= lengths[:, None]] = 0.0
    y = (bits * (2 ** np.arange(k - 1, -1, -1))).sum(axis=1).astype(np.int64)
    return SequenceData(x, y, lengths.astype(np.int64) if jitter else None)


def temporal_order(length: int = 100, classes: int = 4, length_jitter: int = 0, n_train: int = 10000,
                   n_val: int = 1000, n_test: int = 1000, seed: int = 0) -> DataSplits:
    """Temporal order (Hochreiter & Schmidhuber 1997, experiment 6a/6b).

    One-hot inputs over ``a b c d X Y B E``: ``E`` starts, ``B`` ends, distractors ``a..d``
    elsewhere, and relevant symbols ``X``/``Y`` at random positions in fixed windows
    (6a, ``classes=4``: ~[0.1T, 0.2T] and [0.5T, 0.6T]; 6b, ``classes=8``: a third window
    at ~[0.33T, 0.43T]). The class is the order of the relevant symbols (``XX, XY, YX, YY`` or
    ``XXX .. YYY``). ``length_jitter > 0`` draws each length from ``[T, T + jitter]``
    (the original uses 100..110) and returns padded ``x`` with ``lengths``.
    """
    length = _check_int("length", length, 20)
    classes = _check_int("classes", classes, 1)
    if classes not in _WINDOWS:
        raise DataError(f"option 'classes': expected 4 (task 6a) or 8 (task 6b), got {classes!r}")
    jitter = _check_int("length_jitter", length_jitter, 0)
    parts = [_temporal(rng, n, length, classes, jitter) for rng, n in _streams(seed, n_train, n_val, n_test)]
    k = len(_WINDOWS[classes])
    names = ["".join("XY"[(c >> (k - 1 - j)) & 1] for j in range(k)) for c in range(classes)]
    meta = {
        "name": "temporal_order",
        "kind": "classification",
        "target": "sequence",
        "input_type": "features",
        "n_classes": classes,
        "class_names": names,
        "n_features": len(TEMPORAL_SYMBOLS),
        "n_outputs": classes,
        "feature_names": list(TEMPORAL_SYMBOLS),
        "seq_len": length + jitter,
        "vocab": None,
        "scaler": None,
        "baseline": {"accuracy": 1.0 / classes, "cross_entropy": math.log(classes),
                     "note": "chance level"},
        "source": f"temporal order {'6a' if classes == 4 else '6b'}, T={length}, seed={seed} "
                  "(Hochreiter & Schmidhuber 1997)",
    }
    return DataSplits(parts[0], parts[1], parts[2], meta)
