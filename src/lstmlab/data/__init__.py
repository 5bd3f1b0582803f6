"""Data for lstmlab: long-lag tasks, packaged real data sets, and users' own files.

>>> from lstmlab.data import load
>>> splits = load("adding", length=50, n_train=64, n_val=8, n_test=8)
>>> splits.train.x.shape, splits.meta["kind"]
((64, 50, 2), 'regression')

A long-format pandas DataFrame gives the same splits as ``csv-sequences`` through
:func:`from_dataframe`; forecasts are scored in original units, next to the persistence and
seasonal-naive baselines, by :func:`forecast_metrics`.

Every source returns :class:`DataSplits` (``train``, ``val``, ``test`` :class:`SequenceData`
plus ``meta``). ``SOURCES`` lists the sources and their options; errors are
:class:`DataError` (a ``ValueError``) naming file, row and column.
"""

from .base import DataError, DataSplits, Scaler, SequenceData, Vocab, pad_sequences
from .csv_sequences import from_dataframe
from .datasets import airline, co2, digits, fortunes, japanese_vowels, sunspots, wordnet
from .forecast import baselines, forecast_metrics, mase
from .registry import REQUIRED, SOURCES, Source, check_options, describe, load, resolve_source
from .tasks import adding_problem, copy_memory, temporal_order
from .text import decode, encode, tokenize
from .transforms import Transform

__all__ = [
    "DataError", "DataSplits", "SequenceData", "Scaler", "Vocab", "pad_sequences",
    "load", "SOURCES", "Source", "REQUIRED", "check_options", "describe", "resolve_source",
    "adding_problem", "copy_memory", "temporal_order",
    "airline", "sunspots", "co2", "japanese_vowels", "digits", "fortunes", "wordnet",
    "tokenize", "encode", "decode", "from_dataframe", "forecast_metrics", "baselines", "mase", "Transform",
]
