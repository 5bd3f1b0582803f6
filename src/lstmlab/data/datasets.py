"""Packaged real data, fully offline.

Shipped in ``lstmlab/data/files`` (provenance and licences in ``DATA_NOTES.md``): airline
passengers, sunspots, Mauna Loa CO2, JapaneseVowels. From scikit-learn: digits. From Debian
packages a user installs: ``fortunes`` (character LM) and ``wordnet-base`` (gloss -> class).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import DataError, DataSplits, SequenceData, check_fractions, make_scaler, stratified_split, suggest
from .csv_io import read_table
from .csv_series import series_from_table
from .text import LabelledText, char_lm_splits, text_classification_splits

__all__ = ["FILES", "airline", "sunspots", "co2", "japanese_vowels", "digits", "fortunes", "wordnet",
           "FORTUNES_PATH", "WORDNET_PATH", "WORDNET_LEXNAMES"]

FILES = Path(__file__).resolve().parent / "files"
FORTUNES_PATH = "/usr/share/games/fortunes"
WORDNET_PATH = "/usr/share/wordnet"


def _shipped(name: str) -> Path:
    p = FILES / name
    if not p.is_file():
        raise DataError("packaged data file is missing; reinstall lstmlab", path=p)
    return p


# ----------------------------------------------------------------------------- forecasting


def _series(file: str, time_column: str, target: str, **options) -> DataSplits:
    table = read_table(_shipped(file), text_columns=[time_column])
    return series_from_table(table, target=target, time_column=time_column, **options)


def airline(window: int = 12, horizon: int = 1, transform: str = "auto", period: int | None = None,
            test_size: int | None = None, val_fraction: float = 0.15, test_fraction: float = 0.15,
            scale: str | None = "standard") -> DataSplits:
    """Monthly international airline passengers (thousands), 1949-01..1960-12, 144 values.

    Options as for ``csv-series``; the season (period 12) comes from the month column."""
    return _series("airline.csv", "month", "passengers", window=window, horizon=horizon, transform=transform,
                   period=period, test_size=test_size, val_fraction=val_fraction, test_fraction=test_fraction,
                   scale=scale, name="airline",
                   source="Box & Jenkins (1976) series G: monthly airline passengers 1949-1960")


def sunspots(window: int = 22, horizon: int = 1, transform: str = "auto", period: int | None = None,
             test_size: int | None = None, val_fraction: float = 0.15, test_fraction: float = 0.15,
             scale: str | None = "standard") -> DataSplits:
    """Yearly mean sunspot numbers 1700..2008 (309 values); the cycle is about 11 years."""
    return _series("sunspots.csv", "year", "sunactivity", window=window, horizon=horizon, transform=transform,
                   period=period, test_size=test_size, val_fraction=val_fraction, test_fraction=test_fraction,
                   scale=scale, name="sunspots", source="yearly sunspot numbers 1700-2008 (NOAA NGDC, public domain)")


def co2(window: int = 52, horizon: int = 1, transform: str = "auto", period: int | None = None,
        test_size: int | None = None, val_fraction: float = 0.15, test_fraction: float = 0.15,
        scale: str | None = "standard", missing: str = "interpolate") -> DataSplits:
    """Weekly Mauna Loa CO2 (ppm), 1958-03-29..2001-12-29, 2284 weeks of which 59 are missing.

    Missing weeks are filled by linear interpolation in time by default (``meta['missing']``
    says how many); ``missing='drop'`` removes them instead. The season is 52 weeks.
    """
    return _series("co2.csv", "week", "co2", window=window, horizon=horizon, transform=transform, period=period,
                   test_size=test_size, val_fraction=val_fraction, test_fraction=test_fraction, scale=scale,
                   missing=missing, name="co2",
                   source="weekly atmospheric CO2 at Mauna Loa 1958-2001 (Keeling & Whorf, Scripps/CDIAC, "
                          "public domain)")


# ----------------------------------------------------------------------------- classification


def _vowel_split(data: np.lib.npyio.NpzFile, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    planes = data[f"{split}_planes"]
    lengths = data[f"{split}_lengths"]
    values = np.ascontiguousarray(planes.T).view("<i4").reshape(12, -1).T.astype(np.float64) / 1e6
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    seqs = [values[bounds[i]:bounds[i + 1]] for i in range(len(lengths))]
    return seqs, data[f"{split}_labels"].astype(np.int64) - 1


def japanese_vowels(val_fraction: float = 0.0, seed: int = 0, scale: str | None = None) -> DataSplits:
    """JapaneseVowels: 9 speakers, 12 LPC cepstrum coefficients per frame, lengths 7..29.

    The original split: 270 training and 370 test utterances. ``val_fraction`` > 0 moves a
    stratified part of the training set to ``val``. ``x`` is post-padded to 29 steps with
    ``lengths``; ``y`` holds speaker ids 0..8. ``scale`` (``standard``/``minmax``) is fitted on
    the training frames.
    """
    val_fraction, _ = check_fractions(val_fraction, 0.0)
    with np.load(_shipped("japanese_vowels.npz")) as data:
        train_seqs, train_y = _vowel_split(data, "train")
        test_seqs, test_y = _vowel_split(data, "test")
    tr, va, _ = stratified_split(train_y, val_fraction, 0.0, seed)
    cols = [f"lpc{i + 1}" for i in range(12)]
    scaler = make_scaler(scale, cols).fit(np.concatenate([train_seqs[i] for i in tr]))
    t_len = max(len(s) for s in train_seqs + test_seqs)

    def pack(seqs: Sequence[np.ndarray], y: np.ndarray) -> SequenceData:
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        x = np.zeros((len(seqs), t_len, 12), dtype=np.float32)
        for i, s in enumerate(seqs):
            x[i, : len(s)] = scaler.transform(s)
        return SequenceData(x, y.astype(np.int64), lengths)

    meta = {
        "name": "japanese_vowels",
        "kind": "classification",
        "target": "sequence",
        "input_type": "features",
        "n_classes": 9,
        "class_names": [f"speaker {i}" for i in range(1, 10)],
        "n_features": 12,
        "n_outputs": 9,
        "feature_names": cols,
        "max_len": t_len,
        "vocab": None,
        "scaler": None,
        "feature_scaler": scaler,
        "baseline": {"test_accuracy_majority": float(np.mean(test_y == np.bincount(train_y).argmax())),
                     "chance_accuracy": 1 / 9},
        "source": "JapaneseVowels (Kudo, Toyama & Shimbo 1999), UCI Machine Learning Repository, CC BY 4.0",
    }
    return DataSplits(pack([train_seqs[i] for i in tr], train_y[tr]),
                      pack([train_seqs[i] for i in va], train_y[va]), pack(test_seqs, test_y), meta)


def digits(val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
           normalize: bool = True) -> DataSplits:
    """scikit-learn's 8x8 handwritten digits (1797) read row by row: 8 steps x 8 features.

    ``normalize`` divides the 0..16 pixel values by 16. Stratified seeded split.
    """
    from sklearn.datasets import load_digits

    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    d = load_digits()
    x = d.images.astype(np.float32)
    if normalize:
        x = x / 16.0
    y = d.target.astype(np.int64)
    tr, va, te = stratified_split(y, val_fraction, test_fraction, seed)
    meta = {
        "name": "digits",
        "kind": "classification",
        "target": "sequence",
        "input_type": "features",
        "n_classes": 10,
        "class_names": [str(i) for i in range(10)],
        "n_features": 8,
        "n_outputs": 10,
        "seq_len": 8,
        "vocab": None,
        "scaler": None,
        "baseline": {"chance_accuracy": 0.1},
        "source": "scikit-learn load_digits (UCI optical recognition of handwritten digits), "
                  "rows as time steps",
    }
    return DataSplits(SequenceData(x[tr], y[tr]), SequenceData(x[va], y[va]),
                      SequenceData(x[te], y[te]), meta)


# ----------------------------------------------------------------------------- Debian text


def _fortune_files(root: Path, files: Sequence[str] | None) -> list[Path]:
    if root.is_file():
        return [root]
    available = sorted(p for p in root.iterdir()
                       if p.is_file() and not p.is_symlink() and p.suffix not in (".dat", ".u8"))
    if files is None:
        return available
    names = {p.name: p for p in available}
    out = []
    for f in [files] if isinstance(files, str) else files:
        if f not in names:
            raise DataError(f"no fortune file {f!r} (option 'files'){suggest(f, names)}", path=root)
        out.append(names[f])
    return out


def fortunes(path: str = FORTUNES_PATH, files: Sequence[str] | None = None, seq_len: int = 100,
             stride: int | None = None, val_fraction: float = 0.1, test_fraction: float = 0.1,
             shuffle: bool = True, seed: int = 0, lowercase: bool = False, max_chars: int | None = None,
             min_freq: int = 1) -> DataSplits:
    """Character-level LM on Debian's fortune cookies (``apt-get install fortunes``).

    ``path`` is the fortunes folder (or one fortune file); entries are separated by ``%``
    lines. With ``shuffle`` the entries are shuffled (seeded) before the contiguous
    train/val/test cut, so all splits mix topics.
    """
    root = Path(str(path)).expanduser()
    if not root.exists():
        raise DataError("fortune files not found; install the Debian package 'fortunes' "
                        "(apt-get install fortunes) or pass path=... to a folder of fortune files", path=path)
    entries: list[str] = []
    for f in _fortune_files(root, files):
        text = f.read_bytes().decode("utf-8", errors="replace")
        entries += [e.strip("\n") for e in re.split(r"(?m)^%\s*$", text) if e.strip()]
    if not entries:
        raise DataError("no fortune entries found", path=path)
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(entries))
        entries = [entries[i] for i in order]
    return char_lm_splits("\n\n".join(entries) + "\n", seq_len=seq_len, stride=stride,
                          val_fraction=val_fraction, test_fraction=test_fraction, lowercase=lowercase,
                          max_chars=max_chars, min_freq=min_freq, name="fortunes",
                          source=f"Debian fortunes ({path}), {len(entries)} entries",
                          extra_meta={"path": str(path), "entries": len(entries)})


WORDNET_LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
]
WORDNET_PARTS = ("noun", "verb", "adj", "adv")


def _wordnet_examples(root: Path, parts: Sequence[str], strip_examples: bool) -> list[LabelledText]:
    out = []
    for part in parts:
        if part not in WORDNET_PARTS:
            raise DataError(f"option 'parts': unknown part {part!r}; use some of {', '.join(WORDNET_PARTS)}"
                            + suggest(part, WORDNET_PARTS))
        f = root / f"data.{part}"
        if not f.is_file():
            raise DataError(f"WordNet file data.{part} not found; install the Debian package 'wordnet-base' "
                            "(apt-get install wordnet-base) or pass path=... to a WordNet dict folder",
                            path=f)
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line_no, line in enumerate(fh, start=1):
                if line.startswith("  ") or "|" not in line:
                    continue  # licence header
                head, gloss = line.split("|", 1)
                fields = head.split()
                try:
                    lex = int(fields[1])
                    label = WORDNET_LEXNAMES[lex]
                except (IndexError, ValueError):
                    raise DataError("", path=f, row=line_no, column="lex_filenum",
                                    expected="a lexicographer file number 00..44",
                                    got=fields[1] if len(fields) > 1 else line.strip()) from None
                gloss = gloss.strip()
                if strip_examples:
                    gloss = gloss.split('; "')[0].strip().strip('"').strip()
                out.append(LabelledText(gloss, label, f"{f}, row {line_no}"))
    return out


def wordnet(path: str = WORDNET_PATH, parts: Sequence[str] = WORDNET_PARTS, top_classes: int | None = None,
            max_examples: int | None = None, strip_examples: bool = True, val_fraction: float = 0.1,
            test_fraction: float = 0.1, seed: int = 0, max_tokens: int | None = 20000, min_freq: int = 1,
            max_len: int | None = 40, lowercase: bool = True) -> DataSplits:
    """WordNet glosses labelled with their lexicographer class (45 classes, e.g. ``noun.animal``).

    Reads ``data.{noun,verb,adj,adv}`` from ``path`` (``apt-get install wordnet-base``).
    ``top_classes`` keeps the N most frequent classes; ``max_examples`` caps the total by a
    seeded random subsample; ``strip_examples`` drops the quoted usage examples from glosses.
    """
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        raise DataError("WordNet folder not found; install the Debian package 'wordnet-base' "
                        "(apt-get install wordnet-base) or pass path=... to a folder with data.noun etc.",
                        path=path)
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    examples = _wordnet_examples(root, [parts] if isinstance(parts, str) else list(parts), strip_examples)
    labels = np.array([ex.label for ex in examples])
    if top_classes is not None:
        names, counts = np.unique(labels, return_counts=True)
        keep = set(names[np.argsort(-counts, kind="stable")[: int(top_classes)]])
        examples = [ex for ex in examples if ex.label in keep]
        labels = np.array([ex.label for ex in examples])
    rng = np.random.default_rng(seed)
    if max_examples is not None and len(examples) > int(max_examples):
        idx = np.sort(rng.choice(len(examples), int(max_examples), replace=False))
        examples = [examples[i] for i in idx]
        labels = labels[idx]
    tr, va, te = stratified_split(labels, val_fraction, test_fraction, seed)
    return text_classification_splits(
        [examples[i] for i in tr], [examples[i] for i in va], [examples[i] for i in te],
        max_tokens=max_tokens, min_freq=min_freq, max_len=max_len, lowercase=lowercase, unseen_labels="drop",
        name="wordnet",
        source=f"WordNet 3.0 glosses ({path}) -> lexicographer class (Princeton, WordNet licence)",
        extra_meta={"path": str(path), "parts": list(parts)})
