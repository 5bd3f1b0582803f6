"""lstmlab: LSTM sequence models that make vanishing and exploding gradients visible and fixable."""

from . import initializers, losses, metrics, optim, regularizers
from .attention import Attention, explain
from .callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from .diagnostics import GradientMonitor, GradientReport, diagnose, plot_history
from .interop import from_keras, from_torch, to_torch
from .layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, Layer, Masking, SimpleRNN
from .model import Sequential, load_model
from .optim import SGD, Adam, AdamW, RMSprop
from .saving import ModelFileError
from .trace import trace
from .tune import tune  # the function; the subpackage stays importable as lstmlab.tune.*
from .validation import InputError

__version__ = "0.1.0"

__all__ = [
    "LSTM", "GRU", "SimpleRNN", "Dense", "Embedding", "Dropout", "Masking", "Bidirectional", "Layer",
    "Attention", "explain", "trace", "diagnose", "GradientReport", "GradientMonitor", "plot_history",
    "Sequential", "load_model", "from_torch", "to_torch", "from_keras",
    "Callback", "EarlyStopping", "History", "ModelCheckpoint",
    "tune", "SGD", "Adam", "AdamW", "RMSprop", "InputError", "ModelFileError",
    "initializers", "losses", "metrics", "optim", "regularizers",
]
