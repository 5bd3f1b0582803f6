"""lstmlab: LSTM sequence models that make vanishing and exploding gradients visible and fixable."""

from . import initializers, losses, metrics, optim, regularizers
from .callbacks import Callback, EarlyStopping, History, ModelCheckpoint
from .interop import from_keras, from_torch, to_torch
from .layers import GRU, LSTM, Bidirectional, Dense, Dropout, Embedding, Layer, Masking, SimpleRNN
from .model import Sequential, load_model
from .optim import SGD, Adam, AdamW, RMSprop
from .saving import ModelFileError
from .validation import InputError

__version__ = "0.1.0"

__all__ = [
    "LSTM", "GRU", "SimpleRNN", "Dense", "Embedding", "Dropout", "Masking", "Bidirectional", "Layer",
    "Sequential", "load_model", "from_torch", "to_torch", "from_keras",
    "Callback", "EarlyStopping", "History", "ModelCheckpoint",
    "SGD", "Adam", "AdamW", "RMSprop", "InputError", "ModelFileError",
    "initializers", "losses", "metrics", "optim", "regularizers",
]
