"""``imdb-folder``: ``ROOT/{train,test}/{pos,neg}/*.txt`` or ``ROOT/{pos,neg}/*.txt`` text folders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import DataError, DataSplits, check_fractions, stratified_split
from .text import LabelledText, text_classification_splits

__all__ = ["load_imdb_folder"]


def _class_dirs(root: Path, classes: Sequence[str] | None) -> list[Path]:
    if classes is not None:
        dirs = [root / c for c in ([classes] if isinstance(classes, str) else classes)]
        if not dirs:
            raise DataError("option 'classes': expected at least one class folder name, got an empty list",
                            path=root)
        for d in dirs:
            if not d.is_dir():
                raise DataError(f"class folder {d.name!r} not found (option 'classes')", path=root)
        return dirs
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    names = {d.name for d in subdirs}
    if {"pos", "neg"} <= names:
        return [root / "neg", root / "pos"]
    dirs = [d for d in subdirs if d.name != "unsup"]
    if not dirs:
        raise DataError("no class folders found; expected ROOT/pos and ROOT/neg (or ROOT/train/pos, ...)",
                        path=root)
    return dirs


def _read_folder(root: Path, classes: Sequence[str] | None, max_per_class: int | None, seed: int,
                 encoding: str) -> list[LabelledText]:
    rng = np.random.default_rng(seed)
    out = []
    for d in _class_dirs(root, classes):
        files = sorted(p for p in d.glob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"class folder {d.name!r} has no .txt files", path=d)
        if max_per_class is not None and len(files) > max_per_class:
            files = [files[i] for i in np.sort(rng.choice(len(files), int(max_per_class), replace=False))]
        for f in files:
            try:
                text = f.read_text(encoding=encoding)
            except UnicodeDecodeError as e:
                raise DataError(f"cannot decode as {encoding} at byte {e.start}; pass encoding=...",
                                path=f) from None
            out.append(LabelledText(text, d.name, str(f)))
    return out


def _folder(path: str | Path, option: str) -> Path:
    root = Path(str(path)).expanduser()
    if not root.exists():
        raise DataError(f"folder not found (option {option!r})", path=path)
    if not root.is_dir():
        raise DataError(f"expected a folder (ROOT/pos, ROOT/neg or ROOT/train/pos, ...), got a file "
                        f"(option {option!r})", path=path)
    return root


def load_imdb_folder(
    path: str,
    classes: Sequence[str] | None = None,
    val_path: str | None = None,
    test_path: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_per_class: int | None = None,
    seed: int = 0,
    max_tokens: int | None = 20000,
    min_freq: int = 1,
    max_len: int | None = 200,
    lowercase: bool = True,
    truncate: str = "post",
    unseen_labels: str = "error",
    encoding: str = "utf-8",
) -> DataSplits:
    """Sentiment (or any) classification from one text file per example, one folder per class.

    With ``ROOT/train`` and ``ROOT/test``, test comes from ``test/`` (``test_fraction`` is
    ignored) and val from a stratified part of ``train/``. Otherwise ``ROOT/<class>/*.txt`` is
    split by the fractions. ``val_path`` / ``test_path`` name folders of the same layout
    (``<class>/*.txt``) that are those splits. Class folders default to ``neg``/``pos`` when
    present, else every sub-folder but ``unsup``. Same tokenization and outputs as ``csv-text``.
    """
    root = _folder(path, "path")
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    train_root = root / "train" if (root / "train").is_dir() else root
    pool = _read_folder(train_root, classes, max_per_class, seed, encoding)
    given = {}
    if train_root != root and (root / "test").is_dir():
        given["test"] = (root / "test", "path")
    for key, p in (("val", val_path), ("test", test_path)):
        if p is not None:
            given[key] = (_folder(p, f"{key}_path"), f"{key}_path")
    read = {k: _read_folder(d, classes, max_per_class, seed + 1 + i, encoding)
            for i, (k, (d, _)) in enumerate(sorted(given.items()))}
    labels = np.array([ex.label for ex in pool])
    tr, va, te = stratified_split(labels, 0.0 if "val" in read else val_fraction,
                                  0.0 if "test" in read else test_fraction, seed)
    return text_classification_splits(
        [pool[i] for i in tr], read.get("val", [pool[i] for i in va]), read.get("test", [pool[i] for i in te]),
        max_tokens=max_tokens, min_freq=min_freq, max_len=max_len, lowercase=lowercase, truncate=truncate,
        unseen_labels=unseen_labels, name=root.name, source=f"text folders {path}",
        extra_meta={"path": str(path), "splits_from": {k: str(given[k][0]) if k in given else "fraction"
                                                       for k in ("val", "test")}})
