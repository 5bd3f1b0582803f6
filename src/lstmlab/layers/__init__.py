"""Keras-style layers on PyTorch: LSTM, GRU, SimpleRNN, Dense, Embedding, Dropout, Masking,
Bidirectional, Attention, Patch, Unpatch, GlobalAveragePooling1D and SeriesNorm.

Every layer is a ``torch.nn.Module`` that builds its weights on the first call (or at once when
``input_size=`` is given), takes Keras argument names and defaults, and round-trips through
``get_config()`` / ``from_config()``.  Modules: ``base`` (Layer, argument checks), ``recurrent``
(the cells of :mod:`lstmlab.cells` as layers), ``core`` (feed-forward), ``wrappers``
(Bidirectional), ``attention`` (attention pooling, ``explain``), ``timeaxis`` (Patch, Unpatch,
mean pooling, per-series standardisation: layers that reshape the time axis), ``registry`` (by-name lookup for
configs and model files).
"""

from .attention import Attention, attention_layers, explain
from .base import (
    ACTIVATIONS,
    Layer,
    LazyParameter,
    apply_activation,
    check_choice,
    check_positive_int,
    check_rate,
    run_eval,
)
from .core import Dense, Dropout, Embedding, Masking
from .recurrent import GRU, LSTM, RNNLayer, SimpleRNN, recurrent_layers, torch_module
from .registry import LAYERS, deserialize, register_layer, serialize
from .timeaxis import GlobalAveragePooling1D, Patch, SeriesNorm, Unpatch
from .wrappers import Bidirectional

for _cls in (LSTM, GRU, SimpleRNN, Bidirectional, Dense, Embedding, Dropout, Masking, Attention, Patch, Unpatch,
             GlobalAveragePooling1D, SeriesNorm):
    register_layer(_cls)
del _cls

__all__ = [
    "Layer", "RNNLayer", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "Dense", "Embedding", "Dropout",
    "Masking", "Attention", "LAYERS", "register_layer", "serialize", "deserialize", "recurrent_layers",
    "attention_layers", "explain", "apply_activation", "ACTIVATIONS", "check_choice", "check_positive_int",
    "check_rate", "run_eval", "torch_module", "LazyParameter", "Patch", "Unpatch", "GlobalAveragePooling1D",
    "SeriesNorm",
]
