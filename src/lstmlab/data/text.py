"""Text: a regex word tokenizer, word-level classification splits, character language models.

``text_classification_splits`` is shared by ``csv-text``, ``imdb-folder`` and ``wordnet``;
``char_lm_splits`` by ``text-file`` and ``fortunes``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, DataSplits, SequenceData, Vocab, check_fractions, pad_sequences, suggest
from .csv_io import read_text

__all__ = ["tokenize", "encode", "decode", "LabelledText", "text_classification_splits",
           "char_lm_splits", "load_text_file"]

_TAG = re.compile(r"<[^>\n]{0,40}>")
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words (letters/digits, inner apostrophes kept) and single punctuation marks.

    Short HTML tags such as ``<br />`` are treated as spaces.
    """
    text = _TAG.sub(" ", text)
    if lowercase:
        text = text.lower()
    return _TOKEN.findall(text)


def encode(text: str | Sequence[str], vocab: Vocab) -> np.ndarray:
    """Ids for ``text``: characters for a char-level vocab, else :func:`tokenize` words."""
    if isinstance(text, str) and not getattr(vocab, "char_level", False):
        text = tokenize(text)
    return vocab.encode(text)


def decode(ids: Iterable[int], vocab: Vocab) -> str:
    """Text for ``ids`` (padding skipped)."""
    return vocab.decode(ids)


@dataclass
class LabelledText:
    """One example with ``origin`` (e.g. ``"data.csv, row 5"``) for error messages."""

    text: str
    label: str
    origin: str = ""


def _label_order(labels: Iterable[str]) -> list[str]:
    uniq = sorted(set(labels))
    try:
        return sorted(uniq, key=lambda s: float(s))
    except ValueError:
        return uniq


def _check_text_options(unseen_labels: str, truncate: str, max_len: Any, max_tokens: Any) -> None:
    """DataError naming the option for a bad unseen_labels, truncate, max_len or max_tokens."""
    if unseen_labels not in ("error", "drop"):
        raise DataError(f"option 'unseen_labels': expected 'error' or 'drop', got {unseen_labels!r}"
                        + suggest(str(unseen_labels), ["error", "drop"]))
    if truncate not in ("post", "pre"):
        raise DataError(f"option 'truncate': expected 'post' (keep the start) or 'pre' (keep the end), "
                        f"got {truncate!r}")
    if max_len is not None and (int(max_len) != max_len or max_len < 1):
        raise DataError(f"option 'max_len': expected a positive integer or None, got {max_len!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or int(max_tokens) != max_tokens or max_tokens < 3):
        raise DataError(f"option 'max_tokens': expected an integer >= 3 (it counts <pad> and <unk>) or None, "
                        f"got {max_tokens!r}")


def _known_labels(train: Sequence[LabelledText], val: Sequence[LabelledText], test: Sequence[LabelledText],
                  class_names: list[str], unseen_labels: str) -> tuple[dict[str, list[LabelledText]], dict]:
    """Val/test examples whose label training has; the others raise or are dropped (and counted)."""
    label_id = set(class_names)
    dropped = {"val": 0, "test": 0}
    kept: dict[str, list[LabelledText]] = {"train": list(train)}
    for part, items in (("val", val), ("test", test)):
        keep = []
        for ex in items:
            if ex.label in label_id:
                keep.append(ex)
            elif unseen_labels == "drop":
                dropped[part] += 1
            else:
                where = f"{ex.origin}: " if ex.origin else ""
                shown = ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")
                raise DataError(f"{where}label {ex.label!r} ({part} split) never occurs in the training "
                                f"data (training labels: {shown}); add training examples or set "
                                f"unseen_labels='drop'")
        kept[part] = keep
    return kept, dropped


def _encode_parts(toks: dict[str, list[list[str]]], kept: dict[str, Sequence[LabelledText]], vocab: Vocab,
                  label_id: dict[str, int], t_len: int, truncate: str) -> tuple[dict[str, SequenceData], int]:
    """Token lists -> padded id arrays per split; an empty text becomes one unknown token."""
    empty = 0
    out = {}
    for k, lists in toks.items():
        seqs = []
        for t in lists:
            ids = vocab.encode(t)
            if len(ids) == 0:  # keep every sequence at least one step long
                ids = np.array([1], dtype=np.int64)
                empty += 1
            seqs.append(ids)
        if seqs:
            x, lengths = pad_sequences(seqs, t_len, dtype=np.int64, truncate=truncate)
        else:
            x, lengths = np.zeros((0, t_len), np.int64), np.zeros(0, np.int64)
        y = np.array([label_id[ex.label] for ex in kept[k]], dtype=np.int64)
        out[k] = SequenceData(x, y, lengths)
    return out, empty


def text_classification_splits(
    train: Sequence[LabelledText],
    val: Sequence[LabelledText],
    test: Sequence[LabelledText],
    *,
    max_tokens: int | None = 20000,
    min_freq: int = 1,
    max_len: int | None = 200,
    lowercase: bool = True,
    truncate: str = "post",
    unseen_labels: str = "error",
    name: str = "text",
    source: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> DataSplits:
    """Tokenize, build the vocabulary on ``train`` only, map labels, pad to ``max_len``.

    ``x`` is int64 ``(N, max_len)`` token ids (0 = padding, 1 = unknown) with ``lengths``;
    ``y`` int64 class ids in the order of ``meta['class_names']``. Labels in val/test that
    training never saw raise DataError (``unseen_labels='error'``) or are dropped (``'drop'``).
    """
    _check_text_options(unseen_labels, truncate, max_len, max_tokens)
    if not train:
        raise DataError(f"{name}: no training examples")
    class_names = _label_order(ex.label for ex in train)
    label_id = {c: i for i, c in enumerate(class_names)}
    kept, dropped = _known_labels(train, val, test, class_names, unseen_labels)
    toks = {k: [tokenize(ex.text, lowercase) for ex in v] for k, v in kept.items()}
    vocab = Vocab.build(toks["train"], max_tokens=max_tokens, min_freq=min_freq)
    train_lengths = [len(t) for t in toks["train"]]
    t_len = int(max_len) if max_len is not None else max(1, max(train_lengths, default=1))
    out, empty = _encode_parts(toks, kept, vocab, label_id, t_len, truncate)
    counts = np.bincount(out["train"].y, minlength=len(class_names))
    majority = int(counts.argmax())
    baseline = {"majority_class": class_names[majority]}
    if len(out["test"]):
        baseline["test_accuracy"] = float(np.mean(out["test"].y == majority))
    n_unk = sum(int((s.x == 1).sum()) for s in out.values())
    meta: dict[str, Any] = {
        "name": name,
        "kind": "classification",
        "target": "sequence",
        "input_type": "tokens",
        "n_classes": len(class_names),
        "class_names": class_names,
        "n_features": None,
        "n_outputs": len(class_names),
        "vocab": vocab,
        "vocab_size": len(vocab),
        "max_len": t_len,
        "tokenizer": {"pattern": _TOKEN.pattern, "lowercase": lowercase, "html_tags": "removed"},
        "truncate": truncate,
        "truncated": {k: int(sum(len(t) > t_len for t in v)) for k, v in toks.items()},
        "unknown_tokens": n_unk,
        "empty_texts": empty,
        "dropped_unseen_labels": dropped,
        "scaler": None,
        "baseline": baseline,
        "source": source,
    }
    if extra_meta:
        meta.update(extra_meta)
    return DataSplits(out["train"], out["val"], out["test"], meta)


# ----------------------------------------------------------------------------- char LM


def _windows(ids: np.ndarray, seq_len: int, stride: int) -> SequenceData:
    starts = np.arange(0, max(0, len(ids) - seq_len), stride)
    if len(starts) == 0:
        return SequenceData(np.zeros((0, seq_len), np.int64), np.zeros((0, seq_len), np.int64), None)
    idx = starts[:, None] + np.arange(seq_len)[None, :]
    return SequenceData(ids[idx], ids[idx + 1], None)


def _lm_pieces(text: str, given: dict[str, str], val_fraction: float, test_fraction: float, lowercase: bool,
               max_chars: int | None) -> dict[str, str]:
    """Train / val / test texts: the pieces not ``given`` are cut from the end of ``text``."""
    given = {k: v[: int(max_chars)] if max_chars is not None else v for k, v in given.items()}
    if lowercase:
        text, given = text.lower(), {k: v.lower() for k, v in given.items()}
    if max_chars is not None:
        text = text[: int(max_chars)]
    n = len(text)
    n_test = 0 if "test" in given else int(n * test_fraction)
    n_val = 0 if "val" in given else int(n * val_fraction)
    n_train = n - n_val - n_test
    pieces = {"train": text[:n_train], "val": text[n_train:n_train + n_val], "test": text[n_train + n_val:]}
    pieces.update(given)
    return pieces


def char_lm_splits(
    text: str,
    *,
    seq_len: int = 100,
    stride: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    lowercase: bool = False,
    max_chars: int | None = None,
    min_freq: int = 1,
    name: str = "text",
    source: str = "",
    extra_meta: dict[str, Any] | None = None,
    given: dict[str, str] | None = None,
) -> DataSplits:
    """Character language model: ``x`` = ``seq_len`` chars, ``y`` = the next char at each step.

    The text is cut into train / val / test in that order (contiguous pieces), except for the
    pieces ``given`` as their own texts (``{"val": ..., "test": ...}``); the character
    vocabulary is built on the training piece (other characters map to ``<unk>`` = 1).
    """
    if int(seq_len) != seq_len or seq_len < 1:
        raise DataError(f"option 'seq_len': expected a positive integer, got {seq_len!r}")
    seq_len = int(seq_len)
    stride = seq_len if stride is None else stride
    if int(stride) != stride or stride < 1:
        raise DataError(f"option 'stride': expected a positive integer, got {stride!r}")
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    pieces = _lm_pieces(text, given or {}, val_fraction, test_fraction, lowercase, max_chars)
    if len(pieces["train"]) <= seq_len:
        raise DataError(f"{name}: the training text has {len(pieces['train'])} characters, not more than "
                        f"seq_len={seq_len}; use a longer text or a smaller seq_len")
    vocab = Vocab.build([pieces["train"]], min_freq=min_freq, char_level=True)
    ids = {k: vocab.encode(v) for k, v in pieces.items()}
    parts = {k: _windows(v, seq_len, int(stride)) for k, v in ids.items()}
    # Memoryless baseline: a unigram model fitted on the training characters.
    counts = np.bincount(ids["train"], minlength=len(vocab)).astype(np.float64) + 1e-3
    logp = np.log(counts / counts.sum())
    baseline: dict[str, Any] = {"note": "unigram character model fitted on train (nats per char)"}
    if len(parts["test"]):
        baseline["unigram_test_cross_entropy"] = float(-logp[parts["test"].y].mean())
    baseline["uniform_cross_entropy"] = math.log(max(2, len(vocab) - 1))
    meta: dict[str, Any] = {
        "name": name,
        "kind": "language_model",
        "target": "per_step",
        "input_type": "tokens",
        "n_classes": len(vocab),
        "class_names": None,
        "n_features": None,
        "n_outputs": len(vocab),
        "vocab": vocab,
        "vocab_size": len(vocab),
        "seq_len": seq_len,
        "stride": int(stride),
        "chars": {k: len(v) for k, v in pieces.items()},
        "unknown_chars": {k: int((v == 1).sum()) for k, v in ids.items()},
        "char_counts": dict(Counter(pieces["train"]).most_common(10)),
        "scaler": None,
        "baseline": baseline,
        "source": source,
    }
    if extra_meta:
        meta.update(extra_meta)
    return DataSplits(parts["train"], parts["val"], parts["test"], meta)


def load_text_file(path: str, seq_len: int = 100, stride: int | None = None, val_path: str | None = None,
                   test_path: str | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
                   lowercase: bool = False, max_chars: int | None = None, min_freq: int = 1,
                   encoding: str = "utf-8") -> DataSplits:
    """``text-file``: a plain text file as a character-level language-modelling problem.

    ``val_path`` / ``test_path`` are texts of their own for those splits; otherwise the end of
    ``path`` is cut off by the fractions. ``max_chars`` reads only the start of each file (a
    file over 1 GiB is refused without it; devices such as ``/dev/zero`` always are).
    """
    if max_chars is not None and (isinstance(max_chars, bool) or int(max_chars) != max_chars or max_chars < 1):
        raise DataError(f"option 'max_chars': expected a positive integer or None, got {max_chars!r}")
    text = read_text(path, encoding, what="text file", max_chars=max_chars)
    if not text.strip():
        raise DataError("the file is empty; expected some text", path=path)
    given = {}
    for key, p in (("val", val_path), ("test", test_path)):
        if p is not None:
            given[key] = read_text(p, encoding, what="text file", max_chars=max_chars)
    return char_lm_splits(text, seq_len=seq_len, stride=stride, val_fraction=val_fraction,
                          test_fraction=test_fraction, lowercase=lowercase, max_chars=max_chars,
                          min_freq=min_freq, name=Path(str(path)).name, given=given,
                          source=f"text file {path}", extra_meta={"path": str(path), "splits_from": {
                              k: str(v) if v is not None else "fraction" for k, v in
                              (("val", val_path), ("test", test_path))}})
