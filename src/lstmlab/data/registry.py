"""``load(source, **options)`` and the ``SOURCES`` registry of every data source and its options."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import csv_sequences, csv_series, csv_text, datasets, imdb, tasks, text, ts_file
from .base import DataError, DataSplits, suggest

__all__ = ["Source", "SOURCES", "REQUIRED", "load", "resolve_source", "check_options", "describe"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Source:
    """A data source: its ``load`` name, loader function, one-line summary, external needs."""

    name: str
    loader: Callable[..., DataSplits]
    summary: str
    group: str
    requires: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        """Option name -> default (``REQUIRED`` when it has none), in signature order."""
        out = {}
        for p in inspect.signature(self.loader).parameters.values():
            out[p.name] = REQUIRED if p.default is inspect.Parameter.empty else p.default
        return out

    @property
    def required(self) -> list[str]:
        """Options that must be given."""
        return [k for k, v in self.options.items() if v is REQUIRED]

    @property
    def doc(self) -> str:
        """The loader's docstring."""
        return inspect.getdoc(self.loader) or ""


_LIST = [
    Source("adding", tasks.adding_problem, "adding problem: sum of two marked values (regression)", "task"),
    Source("copy", tasks.copy_memory, "copy memory: recall 10 symbols after T steps (per-step classes)",
           "task"),
    Source("temporal-order", tasks.temporal_order, "temporal order of X/Y symbols (4 or 8 classes)", "task"),
    Source("airline", datasets.airline, "monthly airline passengers 1949-1960 (forecasting)", "dataset"),
    Source("sunspots", datasets.sunspots, "yearly sunspot numbers 1700-2008 (forecasting)", "dataset"),
    Source("co2", datasets.co2, "weekly Mauna Loa CO2 1958-2001, gaps interpolated (forecasting)", "dataset"),
    Source("japanese-vowels", datasets.japanese_vowels,
           "JapaneseVowels speakers, 12 features, lengths 7-29 (classification)", "dataset"),
    Source("digits", datasets.digits, "scikit-learn 8x8 digits as 8 steps x 8 features (classification)",
           "dataset"),
    Source("fortunes", datasets.fortunes, "Debian fortune cookies, character language model", "dataset",
           requires="Debian package 'fortunes' (or any folder of fortune files via path=)"),
    Source("wordnet", datasets.wordnet, "WordNet glosses -> 45 lexicographer classes (text classification)",
           "dataset", requires="Debian package 'wordnet-base' (or a WordNet dict folder via path=)"),
    Source("csv-series", csv_series.load_csv_series, "your CSV time series -> windowed forecasting", "file"),
    Source("csv-sequences", csv_sequences.load_csv_sequences,
           "your long-format CSV (id, step features, label) -> sequence classification", "file"),
    Source("ts-file", ts_file.load_ts_file,
           "UCR/UEA .ts or .arff files (train + official test) -> sequence classification", "file"),
    Source("csv-text", csv_text.load_csv_text, "your CSV of text + label -> text classification", "file"),
    Source("text-file", text.load_text_file, "your text file -> character language model", "file"),
    Source("imdb-folder", imdb.load_imdb_folder,
           "your ROOT/{train,test}/{pos,neg}/*.txt folders -> text classification", "file"),
]

SOURCES: dict[str, Source] = {s.name: s for s in _LIST}

_ALIASES = {
    "adding-problem": "adding",
    "copy-memory": "copy",
    "copying": "copy",
    "temporal": "temporal-order",
    "japanesevowels": "japanese-vowels",
    "vowels": "japanese-vowels",
    "mauna-loa": "co2",
    "imdb": "imdb-folder",
    "text": "text-file",
    "fortune": "fortunes",
    "ts": "ts-file",
    "arff-file": "ts-file",
    "arff": "ts-file",
    "ucr": "ts-file",
    "uea": "ts-file",
}


def resolve_source(name: str) -> Source:
    """The Source for ``name`` (case, ``_``/``-`` and a few aliases tolerated)."""
    key = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key in SOURCES:
        return SOURCES[key]
    raise DataError(f"unknown data source {name!r}" + suggest(key, list(SOURCES) + list(_ALIASES))
                    + f" (sources: {', '.join(SOURCES)})")


def check_options(source: str, options: dict[str, Any]) -> Source:
    """Validate option names for ``source``; unknown or missing ones raise DataError."""
    src = resolve_source(source)
    known = src.options
    for key in options:
        if key not in known:
            raise DataError(f"unknown option {key!r} for data source {src.name!r}" + suggest(key, known)
                            + f" (options: {', '.join(known)})")
    for key in src.required:
        if key not in options:
            raise DataError(f"data source {src.name!r} needs option {key!r}")
    return src


def load(source: str, **options: Any) -> DataSplits:
    """Load any data source by name, e.g. ``load("adding", length=200, seed=1)``.

    See ``SOURCES`` for names and options (``describe()`` prints them). ``meta['loader']`` and
    ``meta['options']`` record what was asked for.
    """
    src = check_options(source, options)
    splits = src.loader(**options)
    splits.meta.setdefault("loader", src.name)
    splits.meta["loader"] = src.name
    splits.meta["options"] = dict(options)
    return splits


def describe(name: str | None = None) -> str:
    """Human-readable list of sources (or one source) with options and defaults."""
    items = [resolve_source(name)] if name else list(SOURCES.values())
    lines = []
    for s in items:
        lines.append(f"{s.name}: {s.summary}" + (f" [needs {s.requires}]" if s.requires else ""))
        lines.append("    " + ", ".join(f"{k}={v!r}" for k, v in s.options.items()))
    return "\n".join(lines)
