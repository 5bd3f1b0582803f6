"""lstmlab: LSTM sequence models that make vanishing and exploding gradients visible and fixable.

The public API: layers, ``Sequential``, diagnostics, interop, optimizers and the subpackages
``cells``, ``data``, ``diagnostics``, ``doctor``, ``engine``, ``reference``, ``report`` and ``tune`` (the
hyper-parameter search: ``ll.tune.tune(config, run_dir, ...)``); ``ll.doctor(config, run_dir, ...)``
calls the doctor (the package is callable).
"""

from . import (
    cells,
    data,
    diagnostics,
    engine,
    initializers,
    losses,
    metrics,
    optim,
    reference,
    regularizers,
    report,
    tune,
)
from .callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from .diagnostics import GradientMonitor, GradientReport, diagnose, plot_history
from .ensemble import Ensemble  # noqa: I001 - a layer made of Sequential members: after the model
from .interop import from_keras, from_torch, to_torch
from .layers import (
    GRU,
    LSTM,
    Attention,
    Bidirectional,
    Dense,
    Dropout,
    Embedding,
    GlobalAveragePooling1D,
    Layer,
    Masking,
    Patch,
    SeriesNorm,
    SimpleRNN,
    Unpatch,
    explain,
)
from .model import Sequential, load_model
from .optim import SGD, Adam, AdamW, RMSprop
from .saving import ModelFileError
from .tracing import trace
from .validation import InputError

__version__ = "0.1.0"

from . import doctor  # noqa: E402 - a callable package, ll.doctor(config, run_dir, ...); needs __version__

__all__ = [
    "LSTM", "GRU", "SimpleRNN", "Dense", "Embedding", "Dropout", "Masking", "Bidirectional", "Layer",
    "Attention", "explain", "Ensemble", "Patch", "Unpatch", "GlobalAveragePooling1D", "SeriesNorm",
    "trace", "diagnose", "GradientReport", "GradientMonitor", "plot_history",
    "Sequential", "load_model", "from_torch", "to_torch", "from_keras",
    "Callback", "EarlyStopping", "History", "ModelCheckpoint",
    "doctor", "SGD", "Adam", "AdamW", "RMSprop", "InputError", "ModelFileError",
    "cells", "data", "diagnostics", "engine", "initializers", "losses", "metrics", "optim", "reference",
    "regularizers", "report", "tune",
]
