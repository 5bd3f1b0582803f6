"""Keras-style layers on PyTorch: LSTM, GRU, SimpleRNN, Dense, Embedding, Dropout, Masking,
Bidirectional.

Every layer is a ``torch.nn.Module`` that builds its weights on the first call (or at once when
``input_size=`` is given), takes Keras argument names and defaults, and round-trips through
``get_config()`` / ``from_config()``.  Recurrent weights use torch.nn.LSTM's layout so they move
to and from PyTorch without translation; the time loop itself runs on an engine
(``lstmlab.engine``), never here.
"""

from __future__ import annotations

import torch
from torch import nn

from . import engine as engines
from . import initializers, regularizers
from .engine.taps import StepTaps
from .validation import InputError, check_features, check_lengths, lengths_from_mask

ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax", "elu", "gelu")


def apply_activation(name: str | None, x: torch.Tensor) -> torch.Tensor:
    if name in (None, "linear"):
        return x
    if name == "softmax":
        return torch.softmax(x, -1)
    return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "elu": nn.functional.elu, "gelu": nn.functional.gelu}[name](x)


def _check_choice(arg: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{arg}: expected one of {tuple(choices)}, got {value!r}")


def _check_positive_int(arg: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg}: expected a positive integer, got {value!r}")
    return value


def _check_rate(arg: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{arg}: expected a float in [0, 1), got {value!r}")
    return float(value)


class Layer(nn.Module):
    """Base class: lazy build, mask propagation and Keras-style config."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name or type(self).__name__.lower()
        self.built = False

    # subclasses override -------------------------------------------------
    def build(self, input_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> None:
        self.built = True

    def compute_mask(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        return mask

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def regularization_loss(self) -> torch.Tensor | None:
        return None

    def maybe_build(self, x: torch.Tensor) -> None:
        if not self.built:
            dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
            self.build(tuple(x.shape), dtype, x.device)
            self.built = True


# ---------------------------------------------------------------------------------------------
# Recurrent layers
# ---------------------------------------------------------------------------------------------
class RNNLayer(Layer):
    """Shared machinery of LSTM, GRU and SimpleRNN (one direction; see Bidirectional)."""

    cell = "rnn"
    gates = 1
    gate_names: tuple[str, ...] = ("h",)

    def __init__(self, units: int, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 use_bias: bool = True, kernel_initializer: str = "glorot_uniform",
                 recurrent_initializer: str = "orthogonal", bias_initializer: str = "zeros",
                 unit_forget_bias: bool = True, chrono_max_len: int | None = None,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, return_sequences: bool = False,
                 return_state: bool = False, go_backwards: bool = False, stateful: bool = False,
                 layer_norm: bool = False, engine: str = "auto", input_size: int | None = None,
                 seed: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.units = _check_positive_int("units", units)
        _check_choice("activation", activation, ("tanh", "relu") if self.cell == "rnn" else ("tanh",))
        _check_choice("recurrent_activation", recurrent_activation, ("sigmoid",))
        _check_choice("kernel_initializer", kernel_initializer, initializers.INITIALIZERS)
        _check_choice("recurrent_initializer", recurrent_initializer, initializers.INITIALIZERS)
        _check_choice("bias_initializer", bias_initializer, ("zeros", "ones", "chrono"))
        _check_choice("engine", engine, engines.ENGINES)
        if bias_initializer == "chrono":
            if self.cell != "lstm":
                raise ValueError("bias_initializer='chrono' applies to LSTM only")
            _check_positive_int("chrono_max_len", chrono_max_len)
        if layer_norm and self.cell != "lstm":
            raise ValueError("layer_norm=True is available for LSTM only")
        self.activation = activation
        self.recurrent_activation = recurrent_activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        self.unit_forget_bias = bool(unit_forget_bias)
        self.chrono_max_len = chrono_max_len
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.layer_norm = bool(layer_norm)
        self.engine = engine
        self.input_size = input_size
        self.seed = seed
        self.record_taps = False
        self.last_taps: dict[str, StepTaps] = {}
        self._states: tuple[torch.Tensor, ...] | None = None
        if input_size is not None:
            self.build((1, 1, _check_positive_int("input_size", input_size)),
                       torch.get_default_dtype(), torch.device("cpu"))
            self.built = True

    # --- weights ----------------------------------------------------------------------------
    def build(self, input_shape, dtype, device) -> None:
        n_in = input_shape[-1]
        self.input_size = n_in
        g, h = self.gates, self.units
        kw = {"dtype": dtype, "device": device}
        self.weight_ih = nn.Parameter(torch.empty(g * h, n_in, **kw))
        self.weight_hh = nn.Parameter(torch.empty(g * h, h, **kw))
        if self.use_bias:
            self.bias_ih = nn.Parameter(torch.zeros(g * h, **kw))
            self.bias_hh = nn.Parameter(torch.zeros(g * h, **kw))
        else:
            self.register_buffer("bias_ih", torch.zeros(g * h, **kw))
            self.register_buffer("bias_hh", torch.zeros(g * h, **kw))
        if self.layer_norm:
            self.ln_ih = nn.LayerNorm(g * h, **kw)
            self.ln_hh = nn.LayerNorm(g * h, **kw)
            self.ln_c = nn.LayerNorm(h, **kw)
        self.reset_parameters()
        self.built = True

    def reset_parameters(self) -> None:
        gen = None
        if self.seed is not None:
            gen = torch.Generator().manual_seed(self.seed)
        cpu = {"dtype": self.weight_ih.dtype}
        w_ih = initializers.init_(torch.empty(self.weight_ih.shape, **cpu), self.kernel_initializer, gen)
        w_hh = torch.empty(self.weight_hh.shape, **cpu)
        if self.recurrent_initializer in ("orthogonal", "identity"):
            initializers.init_(w_hh, self.recurrent_initializer, gen, gates=self.gates)
        else:
            initializers.init_(w_hh, self.recurrent_initializer, gen)
        with torch.no_grad():
            self.weight_ih.copy_(w_ih)
            self.weight_hh.copy_(w_hh)
            if self.use_bias:
                self.bias_ih.fill_(1.0 if self.bias_initializer == "ones" else 0.0)
                self.bias_hh.zero_()
                h = self.units
                if self.cell == "lstm" and self.bias_initializer == "chrono":
                    bf = initializers.chrono_bias(h, self.chrono_max_len, gen).to(self.bias_ih.dtype)
                    self.bias_ih[h:2 * h] = bf
                    self.bias_ih[0:h] = -bf
                elif self.cell == "lstm" and self.unit_forget_bias:
                    self.bias_ih[h:2 * h] = 1.0

    def gate_blocks(self) -> dict[str, slice]:
        """Row slices of weight_ih / weight_hh per gate (the seed's W_i, W_f, W_c, W_o)."""
        h = self.units
        return {g: slice(k * h, (k + 1) * h) for k, g in enumerate(self.gate_names)}

    def regularization_loss(self) -> torch.Tensor | None:
        if not self.built:
            return None
        terms = []
        if self.kernel_regularizer is not None:
            terms.append(self.kernel_regularizer(self.weight_ih))
        if self.recurrent_regularizer is not None:
            terms.append(self.recurrent_regularizer(self.weight_hh))
        if self.bias_regularizer is not None and self.use_bias:
            terms.append(self.bias_regularizer(self.bias_ih) + self.bias_regularizer(self.bias_hh))
        return sum(terms) if terms else None

    # --- forward ----------------------------------------------------------------------------
    def _zero_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.units)

    def _initial(self, x: torch.Tensor, initial_state) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = 2 if self.cell == "lstm" else 1
        if initial_state is None:
            if self.stateful and self._states is not None and self._states[0].shape[0] == x.shape[0]:
                states = self._states
            else:
                states = tuple(self._zero_state(x) for _ in range(n))
        else:
            states = tuple(initial_state) if isinstance(initial_state, (list, tuple)) else (initial_state,)
            if len(states) != n:
                raise InputError(f"initial_state: expected {n} tensor(s) for {type(self).__name__}, "
                                 f"got {len(states)}")
            for k, s in enumerate(states):
                if tuple(s.shape) != (x.shape[0], self.units):
                    raise InputError(f"initial_state[{k}]: expected shape {(x.shape[0], self.units)}, "
                                     f"got {tuple(s.shape)}")
            states = tuple(s.to(x.dtype) for s in states)
        return states[0], states[1] if n == 2 else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths=None,
                initial_state=None, check_input: bool = True):
        """Run over ``x`` (B, T, F).  ``mask`` (B, T) or ``lengths`` (B,) mark right padding.

        ``check_input=False`` skips the NaN/Inf scan (used for activations coming from a previous
        layer, where a non-finite value is a training problem for the monitor, not bad input).
        """
        check_features(f"{self.name} input", x, ndim=(3,), last=self.input_size if self.built else None,
                       finite=check_input)
        self.maybe_build(x)
        batch, steps = x.shape[0], x.shape[1]
        if lengths is None and mask is not None:
            lengths = lengths_from_mask("mask", mask)
        if lengths is not None:
            lengths = check_lengths("lengths", lengths, batch, steps)
            if int(lengths.min()) == steps:
                lengths = None
        h0, c0 = self._initial(x, initial_state)
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            x = x * torch.bernoulli(x.new_full((batch, 1, x.shape[2]), keep)) / keep
        rmask = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            rmask = torch.bernoulli(x.new_full((batch, self.units), keep)) / keep
        taps = StepTaps() if self.record_taps else None
        ln = (self.ln_ih, self.ln_hh, self.ln_c) if self.layer_norm else None
        out, h_n, c_n = engines.run(
            self.cell, x, h0, c0, (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh),
            lengths=lengths, reverse=self.go_backwards, rmask=rmask, activation=self.activation,
            engine=self.engine, taps=taps, layer_norm=ln)
        self.last_taps = {"forward": taps} if taps is not None else {}
        self._last_lengths = lengths
        if self.stateful:
            self._states = tuple(s.detach() for s in (h_n, c_n) if s is not None)
        if self.return_sequences:
            output = out
            if self.go_backwards:  # Keras: a backwards layer returns the reversed sequence
                idx = engines.reverse_index(lengths, batch, steps, x.device)
                output = out.gather(1, idx.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
        else:
            output = h_n
        if self.return_state:
            return [output, h_n] + ([c_n] if c_n is not None else [])
        return output

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    def reset_states(self) -> None:
        self._states = None

    def get_config(self) -> dict:
        def reg(r):
            return None if r is None else r.get_config()

        cfg = {"units": self.units, "activation": self.activation,
               "recurrent_activation": self.recurrent_activation, "use_bias": self.use_bias,
               "kernel_initializer": self.kernel_initializer,
               "recurrent_initializer": self.recurrent_initializer,
               "bias_initializer": self.bias_initializer, "unit_forget_bias": self.unit_forget_bias,
               "chrono_max_len": self.chrono_max_len,
               "kernel_regularizer": reg(self.kernel_regularizer),
               "recurrent_regularizer": reg(self.recurrent_regularizer),
               "bias_regularizer": reg(self.bias_regularizer), "dropout": self.dropout,
               "recurrent_dropout": self.recurrent_dropout, "return_sequences": self.return_sequences,
               "return_state": self.return_state, "go_backwards": self.go_backwards,
               "stateful": self.stateful, "layer_norm": self.layer_norm, "engine": self.engine,
               "input_size": self.input_size, "seed": self.seed}
        if self.cell != "lstm":
            for k in ("unit_forget_bias", "chrono_max_len", "layer_norm"):
                cfg.pop(k)
        return {**super().get_config(), **cfg}

    # --- PyTorch interop ---------------------------------------------------------------------
    def to_torch(self) -> nn.Module:
        """An equivalent single-layer ``torch.nn.LSTM/GRU/RNN`` (batch_first=True)."""
        from .interop import layer_to_torch

        return layer_to_torch(self)

    def extra_repr(self) -> str:
        return f"units={self.units}, return_sequences={self.return_sequences}, engine={self.engine!r}"


class LSTM(RNNLayer):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), the seed's equations::

        f_t = σ(W_f·[h_{t-1}, x_t] + b_f)      i_t = σ(W_i·[h_{t-1}, x_t] + b_i)
        C̃_t = tanh(W_c·[h_{t-1}, x_t] + b_c)   C_t = f_t*C_{t-1} + i_t*C̃_t
        o_t = σ(W_o·[h_{t-1}, x_t] + b_o)      h_t = o_t*tanh(C_t)

    Stored as ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), gate order i, f, g(=C̃), o.
    ``unit_forget_bias=True`` starts b_f at 1; ``bias_initializer="chrono"`` with
    ``chrono_max_len`` uses the chrono initialisation for long lags; ``layer_norm=True`` is the
    layer-normalised LSTM (runs on the loop engine).
    """

    cell = "lstm"
    gates = 4
    gate_names = ("i", "f", "g", "o")


class GRU(RNNLayer):
    """Gated recurrent unit, torch.nn.GRU's equations (Keras ``reset_after=True``), gates r, z, n."""

    cell = "gru"
    gates = 3
    gate_names = ("r", "z", "n")

    def __init__(self, units: int, **kwargs) -> None:
        for k in ("unit_forget_bias", "layer_norm", "chrono_max_len"):
            if kwargs.get(k):
                raise ValueError(f"{k}: not an argument of GRU")
            kwargs.pop(k, None)
        super().__init__(units, unit_forget_bias=False, **kwargs)


class SimpleRNN(RNNLayer):
    """Elman RNN ``h_t = act(W·[h_{t-1}, x_t] + b)``; ``activation="relu"`` with
    ``recurrent_initializer="identity"`` is the IRNN of Le et al. (2015)."""

    cell = "rnn"
    gates = 1
    gate_names = ("h",)

    def __init__(self, units: int, **kwargs) -> None:
        for k in ("unit_forget_bias", "layer_norm", "chrono_max_len"):
            if kwargs.get(k):
                raise ValueError(f"{k}: not an argument of SimpleRNN")
            kwargs.pop(k, None)
        super().__init__(units, unit_forget_bias=False, **kwargs)


class Bidirectional(Layer):
    """Run a recurrent layer forwards and a copy backwards; merge their outputs (Keras)."""

    def __init__(self, layer: RNNLayer, merge_mode: str | None = "concat",
                 backward_layer: RNNLayer | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(layer, RNNLayer):
            raise ValueError(f"layer: expected an LSTM, GRU or SimpleRNN, got {type(layer).__name__}")
        _check_choice("merge_mode", merge_mode, ("concat", "sum", "mul", "ave", None))
        self.merge_mode = merge_mode
        cfg = layer.get_config()
        self.forward_layer = layer
        if backward_layer is None:
            cfg.update(go_backwards=not layer.go_backwards, name=f"{layer.name}_backward")
            if cfg.get("seed") is not None:
                cfg["seed"] = cfg["seed"] + 1
            backward_layer = type(layer).from_config(cfg)
        self.backward_layer = backward_layer
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.built = layer.built and backward_layer.built

    def maybe_build(self, x):
        self.built = True

    def forward(self, x, mask=None, lengths=None, initial_state=None, check_input: bool = True):
        fw_state = bw_state = None
        if initial_state is not None:
            half = len(initial_state) // 2
            fw_state, bw_state = initial_state[:half], initial_state[half:]
        fw = self.forward_layer(x, mask=mask, lengths=lengths, initial_state=fw_state, check_input=check_input)
        bw = self.backward_layer(x, mask=mask, lengths=lengths, initial_state=bw_state,
                                 check_input=check_input)
        self.built = True
        fw_states, bw_states = [], []
        if self.return_state:
            fw, *fw_states = fw
            bw, *bw_states = bw
        if self.return_sequences:  # un-reverse the backward layer's output (Keras does the same)
            lens = self.backward_layer._last_lengths
            idx = engines.reverse_index(lens, x.shape[0], x.shape[1], x.device)
            bw = bw.gather(1, idx.unsqueeze(-1).expand(-1, -1, bw.shape[-1]))
        if self.merge_mode == "concat":
            out = torch.cat([fw, bw], -1)
        elif self.merge_mode == "sum":
            out = fw + bw
        elif self.merge_mode == "mul":
            out = fw * bw
        elif self.merge_mode == "ave":
            out = (fw + bw) / 2
        else:
            out = [fw, bw]
        if self.return_state:
            return ([out] if not isinstance(out, list) else out) + fw_states + bw_states
        return out

    def compute_mask(self, x, mask):
        return mask if self.return_sequences else None

    def regularization_loss(self):
        terms = [t for t in (self.forward_layer.regularization_loss(),
                             self.backward_layer.regularization_loss()) if t is not None]
        return sum(terms) if terms else None

    def get_config(self) -> dict:
        return {**super().get_config(), "merge_mode": self.merge_mode,
                "layer": {"class_name": type(self.forward_layer).__name__,
                          "config": self.forward_layer.get_config()},
                "backward_layer": {"class_name": type(self.backward_layer).__name__,
                                   "config": self.backward_layer.get_config()}}

    @classmethod
    def from_config(cls, config: dict) -> Bidirectional:
        config = dict(config)
        layer = deserialize(config.pop("layer"))
        backward = deserialize(config.pop("backward_layer"))
        return cls(layer, backward_layer=backward, **config)


# ---------------------------------------------------------------------------------------------
# Feed-forward layers
# ---------------------------------------------------------------------------------------------
class Dense(Layer):
    """Fully connected layer on the last axis (applied per step on 3-D input, like Keras)."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", kernel_regularizer=None,
                 bias_regularizer=None, input_size: int | None = None, seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.units = _check_positive_int("units", units)
        _check_choice("activation", activation, (None,) + ACTIVATIONS)
        _check_choice("kernel_initializer", kernel_initializer, initializers.INITIALIZERS)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.input_size = input_size
        self.seed = seed
        if input_size is not None:
            self.build((1, _check_positive_int("input_size", input_size)), torch.get_default_dtype(),
                       torch.device("cpu"))
            self.built = True

    def build(self, input_shape, dtype, device) -> None:
        self.input_size = input_shape[-1]
        self.weight = nn.Parameter(torch.empty(self.units, self.input_size, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(self.units, dtype=dtype, device=device)) if self.use_bias \
            else None
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        w = initializers.init_(torch.empty(self.weight.shape, dtype=dtype), self.kernel_initializer, gen)
        with torch.no_grad():
            self.weight.copy_(w)
        self.built = True

    def forward(self, x, mask=None, logits: bool = False):
        if not x.is_floating_point():
            raise InputError(f"{self.name} input: expected floating-point data, got dtype {x.dtype}")
        if self.built and x.shape[-1] != self.input_size:
            raise InputError(f"{self.name} input: expected {self.input_size} features in the last axis, "
                             f"got shape {tuple(x.shape)}")
        self.maybe_build(x)
        z = nn.functional.linear(x, self.weight, self.bias)
        return z if logits else apply_activation(self.activation, z)

    def regularization_loss(self):
        terms = []
        if self.built and self.kernel_regularizer is not None:
            terms.append(self.kernel_regularizer(self.weight))
        if self.built and self.bias_regularizer is not None and self.bias is not None:
            terms.append(self.bias_regularizer(self.bias))
        return sum(terms) if terms else None

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "kernel_regularizer": None if self.kernel_regularizer is None
                else self.kernel_regularizer.get_config(),
                "bias_regularizer": None if self.bias_regularizer is None
                else self.bias_regularizer.get_config(),
                "input_size": self.input_size, "seed": self.seed}


class Embedding(Layer):
    """Token ids (B, T) -> vectors (B, T, D).  ``mask_zero=True`` treats id 0 as padding and
    passes a mask to the next recurrent layer (padding must be at the end of each row)."""

    def __init__(self, input_dim: int, output_dim: int, mask_zero: bool = False,
                 embeddings_initializer: str = "uniform", seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.output_dim = _check_positive_int("output_dim", output_dim)
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = embeddings_initializer
        self.seed = seed
        _check_choice("embeddings_initializer", embeddings_initializer, initializers.INITIALIZERS)
        self.build((), torch.get_default_dtype(), torch.device("cpu"))

    def build(self, input_shape, dtype, device) -> None:
        self.weight = nn.Parameter(torch.empty(self.input_dim, self.output_dim, dtype=dtype, device=device))
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        with torch.no_grad():
            if self.embeddings_initializer == "uniform":
                self.weight.uniform_(-0.05, 0.05, generator=gen)
            else:
                self.weight.copy_(initializers.init_(torch.empty(self.output_dim, self.input_dim),
                                                     self.embeddings_initializer, gen).t())
        self.built = True

    def forward(self, x, mask=None):
        if x.is_floating_point():
            if not torch.equal(x, x.round()):
                raise InputError(f"{self.name} input: expected integer token ids, got float values")
            x = x.long()
        if x.dim() != 2:
            raise InputError(f"{self.name} input: expected a 2-D (batch, time) array of token ids, "
                             f"got shape {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.input_dim):
            raise InputError(f"{self.name} input: expected token ids in [0, {self.input_dim - 1}], "
                             f"got min {int(x.min())}, max {int(x.max())}")
        return nn.functional.embedding(x, self.weight)

    def compute_mask(self, x, mask):
        return (x != 0) if self.mask_zero else mask

    def get_config(self) -> dict:
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "mask_zero": self.mask_zero, "embeddings_initializer": self.embeddings_initializer,
                "seed": self.seed}


class Dropout(Layer):
    """Randomly zero a fraction ``rate`` of inputs while training (inverted dropout)."""

    def __init__(self, rate: float, name: str | None = None) -> None:
        super().__init__(name)
        self.rate = _check_rate("rate", rate)
        self.built = True

    def forward(self, x, mask=None):
        return nn.functional.dropout(x, self.rate, self.training)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


class Masking(Layer):
    """Mark time steps whose features all equal ``mask_value`` as padding (Keras ``Masking``)."""

    def __init__(self, mask_value: float = 0.0, name: str | None = None) -> None:
        super().__init__(name)
        self.mask_value = float(mask_value)
        self.built = True

    def forward(self, x, mask=None):
        return x

    def compute_mask(self, x, mask):
        return (x != self.mask_value).any(-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "mask_value": self.mask_value}


LAYERS: dict[str, type[Layer]] = {c.__name__: c for c in (LSTM, GRU, SimpleRNN, Bidirectional, Dense,
                                                          Embedding, Dropout, Masking)}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Make a Layer subclass known to ``deserialize`` (and so to ``load_model``)."""
    LAYERS[cls.__name__] = cls
    return cls


def serialize(layer: Layer) -> dict:
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec: dict) -> Layer:
    name = spec.get("class_name")
    if name not in LAYERS:
        raise ValueError(f"layer class_name: expected one of {sorted(LAYERS)}, got {name!r}")
    return LAYERS[name].from_config(dict(spec.get("config", {})))


def recurrent_layers(module: nn.Module):
    """All recurrent layers inside ``module`` (Bidirectional children included), in order."""
    return [m for m in module.modules() if isinstance(m, RNNLayer)]

