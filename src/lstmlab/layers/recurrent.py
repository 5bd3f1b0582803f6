"""Recurrent layers: LSTM, GRU and SimpleRNN (one direction each; see ``Bidirectional``).

Each layer reads its cell (gates, states, allowed activations, chrono / layer-norm support)
from the cell table :mod:`lstmlab.cells`.  Recurrent weights use torch.nn.LSTM's layout, so they
move to and from PyTorch without translation; the time loop itself runs on an engine
(:mod:`lstmlab.engine`), never here.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import cells, initializers, regularizers
from .. import engine as engines
from ..engine.taps import StepTaps
from ..validation import InputError, check_features, check_lengths, lengths_from_mask, tracing
from . import modes
from .base import Layer, LazyBuffer, LazyParameter, check_choice, check_positive_int, check_rate

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
# arguments that only some cells take -> the cell-table feature that allows them
CELL_OPTIONS = {"unit_forget_bias": "chrono", "layer_norm": "layer_norm", "chrono_max_len": "chrono"}


def _layers_with(feature: str) -> str:
    return " and ".join(cells.supporting(feature))


class RNNLayer(Layer):
    """Shared machinery of LSTM, GRU and SimpleRNN (one direction; see Bidirectional).

    A subclass names its cell: ``cell_spec`` (a :class:`lstmlab.cells.Cell`); ``cell`` is that
    cell's name (``"lstm"``, ``"gru"``, ``"rnn"``), the key configs, engines and reports use.
    """

    cell_spec: cells.Cell = cells.RNN
    cell: str = cells.RNN.name
    input_key = ("weight_ih", 1)
    _transient = {"last_taps": dict}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.cell = cls.cell_spec.name

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
        self.units = check_positive_int("units", units)
        spec = self.cell_spec
        check_choice("activation", activation, spec.activations)
        check_choice("recurrent_activation", recurrent_activation, ("sigmoid",))
        check_choice("kernel_initializer", kernel_initializer, initializers.INITIALIZERS)
        check_choice("recurrent_initializer", recurrent_initializer, initializers.INITIALIZERS)
        check_choice("bias_initializer", bias_initializer, ("zeros", "ones", "chrono"))
        check_choice("engine", engine, engines.ENGINES)
        self._check_features(bias_initializer, chrono_max_len, layer_norm)
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
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
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
        self._declare_weights()
        if input_size is not None:
            self.build((1, 1, check_positive_int("input_size", input_size)))

    @classmethod
    def _check_features(cls, bias_initializer: str, chrono_max_len, layer_norm: bool) -> None:
        """Refuse the chrono initialisation and layer norm for cells the table says lack them."""
        spec = cls.cell_spec
        if bias_initializer == "chrono":
            if not spec.chrono:
                raise ValueError(f"bias_initializer='chrono' applies to {_layers_with('chrono')} only")
            check_positive_int("chrono_max_len", chrono_max_len)
        if layer_norm and not spec.layer_norm:
            raise ValueError(f"layer_norm=True is available for {_layers_with('layer_norm')} only")

    # --- weights ----------------------------------------------------------------------------
    def _declare_weights(self) -> None:
        """Lazy weights (shapes known on the first call); layer-norm modules, sized by ``units``, at once."""
        self.weight_ih = LazyParameter()
        self.weight_hh = LazyParameter()
        if self.use_bias:
            self.bias_ih = LazyParameter()
            self.bias_hh = LazyParameter()
        else:  # zeros the engines read; kept in the state dict as before
            self.register_buffer("bias_ih", LazyBuffer())
            self.register_buffer("bias_hh", LazyBuffer())
        if self.layer_norm:
            size = self.cell_spec.n_gates * self.units
            self.ln_ih = nn.LayerNorm(size)
            self.ln_hh = nn.LayerNorm(size)
            self.ln_c = nn.LayerNorm(self.units)

    def parameter_shapes(self, n_in: int) -> dict[str, tuple[int, ...]]:
        gh = self.cell_spec.n_gates * self.units
        return {"weight_ih": (gh, n_in), "weight_hh": (gh, self.units), "bias_ih": (gh,), "bias_hh": (gh,)}

    def _on_materialised(self, n_in: int) -> None:
        super()._on_materialised(n_in)
        if self.layer_norm:  # follow the weights' dtype/device when they came from the first input
            for ln in (self.ln_ih, self.ln_hh, self.ln_c):
                ln.to(dtype=self.weight_ih.dtype, device=self.weight_ih.device)

    def initial_values(self) -> dict[str, torch.Tensor]:
        """Keras initialisers on the CPU, in the order (and so with the RNG draws) of earlier versions:
        kernel, recurrent kernel, then the chrono forget-gate bias."""
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        dtype = self.weight_ih.dtype
        w_ih = initializers.init_(torch.empty(self.weight_ih.shape, dtype=dtype), self.kernel_initializer, gen)
        w_hh = torch.empty(self.weight_hh.shape, dtype=dtype)
        per_gate = {"gates": self.cell_spec.n_gates} if self.recurrent_initializer in ("orthogonal", "identity") \
            else {}
        initializers.init_(w_hh, self.recurrent_initializer, gen, **per_gate)
        return {"weight_ih": w_ih, "weight_hh": w_hh, **self._initial_biases(gen, dtype)}

    def _initial_biases(self, gen: torch.Generator | None, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        n = self.cell_spec.n_gates * self.units
        b_ih, b_hh = torch.zeros(n, dtype=dtype), torch.zeros(n, dtype=dtype)
        if self.use_bias:
            b_ih.fill_(1.0 if self.bias_initializer == "ones" else 0.0)
            block = self.gate_blocks()
            if self.cell_spec.chrono and self.bias_initializer == "chrono":  # b_i = -b_f (Tallec & Ollivier)
                bf = initializers.chrono_bias(self.units, self.chrono_max_len, gen).to(dtype)
                b_ih[block["f"]] = bf
                b_ih[block["i"]] = -bf
            elif self.cell_spec.chrono and self.unit_forget_bias:
                b_ih[block["f"]] = 1.0
        return {"bias_ih": b_ih, "bias_hh": b_hh}

    def reset_parameters(self) -> None:
        """Re-draw every weight with the layer's initialisers (a built layer)."""
        values = self.initial_values()
        with torch.no_grad():
            for name, v in values.items():
                getattr(self, name).copy_(v)

    def check_build_input(self, x: torch.Tensor) -> None:
        check_features(f"{self.name} input", x, ndim=(3,), finite=False)

    def gate_blocks(self) -> dict[str, slice]:
        """Row slices of weight_ih / weight_hh per gate (the seed's W_i, W_f, W_c, W_o)."""
        h = self.units
        return {g: slice(k * h, (k + 1) * h) for k, g in enumerate(self.cell_spec.gates)}

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
        n = len(self.cell_spec.states)
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
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.name} input: expected a (batch, time, features) tensor, got {type(x).__name__}"
                             "; for a PackedSequence pass the padded tensor and lengths= instead")
        self.maybe_build(x)
        check_features(f"{self.name} input", x, ndim=(3,), last=self.input_size, finite=check_input)
        self._check_dtype(x)
        batch, steps = x.shape[0], x.shape[1]
        lengths = self._lengths(mask, lengths, batch, steps)
        h0, c0 = self._initial(x, initial_state)
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            x = x * torch.bernoulli(x.new_full((batch, 1, x.shape[2]), keep)) / keep
        rmask = None
        if self.training and self.recurrent_dropout > 0:
            keep = 1.0 - self.recurrent_dropout
            rmask = torch.bernoulli(x.new_full((batch, self.units), keep)) / keep
        taps = StepTaps() if self.record_taps else None
        out, h_n, c_n = self._run_engine(x, h0, c0, lengths, rmask, taps)
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

    def _check_dtype(self, x: torch.Tensor) -> None:
        """Input and weights in one dtype (as torch's layers require), except where autocast casts."""
        if x.dtype != self.weight_ih.dtype and not modes.autocast_on(x):
            raise InputError(f"{self.name} input: expected dtype {self.weight_ih.dtype} (the layer's weights), "
                             f"got {x.dtype}; convert the input (x.to({self.weight_ih.dtype})) or the model")

    @staticmethod
    def _lengths(mask, lengths, batch: int, steps: int) -> torch.Tensor | None:
        """Checked lengths from ``lengths`` or a right-padded ``mask``; None when every row is full."""
        if lengths is None and mask is not None:
            lengths = lengths_from_mask("mask", mask)
        if lengths is not None:
            lengths = check_lengths("lengths", lengths, batch, steps)
            if not tracing() and int(lengths.min()) == steps:
                lengths = None
        return lengths

    def _run_engine(self, x, h0, c0, lengths, rmask, taps):
        """One direction through the engine :func:`modes.plan` picks (autocast / tracing aware)."""
        ln = (self.ln_ih, self.ln_hh, self.ln_c) if self.layer_norm else None
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        how = modes.plan(self.engine, self.cell_spec, self.activation, x, taps=taps is not None,
                         rmask=rmask is not None, layer_norm=ln is not None)
        scope = contextlib.nullcontext()
        if how.float32:
            dtype = self.weight_ih.dtype
            x, h0 = x.to(dtype), h0.to(dtype)
            c0 = None if c0 is None else c0.to(dtype)
            rmask = None if rmask is None else rmask.to(dtype)
            scope = torch.autocast(x.device.type, enabled=False)
        with scope:
            return engines.run(self.cell_spec, x, h0, c0, weights, lengths=lengths, reverse=self.go_backwards,
                               rmask=rmask, activation=self.activation, engine=how.engine, taps=taps, layer_norm=ln)

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
        for k in self.unsupported_arguments():
            cfg.pop(k)
        return {**super().get_config(), **cfg}

    # --- PyTorch interop ---------------------------------------------------------------------
    def to_torch(self) -> nn.Module:
        """An equivalent single-layer ``torch.nn.LSTM/GRU/RNN`` (batch_first=True)."""
        return torch_module([[self]])

    @classmethod
    def unsupported_arguments(cls) -> tuple[str, ...]:
        """The arguments of :data:`CELL_OPTIONS` this layer's cell does not take."""
        return tuple(k for k, feature in CELL_OPTIONS.items() if not getattr(cls.cell_spec, feature))

    @classmethod
    def _cell_options(cls, kwargs: dict) -> dict:
        """``kwargs`` without the arguments the cell does not take (refused when set), for GRU / SimpleRNN."""
        for k in cls.unsupported_arguments():
            if kwargs.get(k):
                raise ValueError(f"{k}: not an argument of {cls.cell_spec.layer}")
            kwargs.pop(k, None)
        return {**kwargs, "unit_forget_bias": False}

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

    cell_spec = cells.LSTM


class GRU(RNNLayer):
    """Gated recurrent unit, torch.nn.GRU's equations (Keras ``reset_after=True``), gates r, z, n."""

    cell_spec = cells.GRU

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(units, **self._cell_options(kwargs))


class SimpleRNN(RNNLayer):
    """Elman RNN ``h_t = act(W·[h_{t-1}, x_t] + b)``; ``activation="relu"`` with
    ``recurrent_initializer="identity"`` is the IRNN of Le et al. (2015)."""

    cell_spec = cells.RNN

    def __init__(self, units: int, **kwargs) -> None:
        super().__init__(units, **self._cell_options(kwargs))


def recurrent_layers(module: nn.Module) -> list[RNNLayer]:
    """All recurrent layers inside ``module`` (Bidirectional children included), in order."""
    return [m for m in module.modules() if isinstance(m, RNNLayer)]


def torch_module(stack: list[list[RNNLayer]], dropout: float = 0.0) -> nn.Module:
    """A ``torch.nn.LSTM/GRU/RNN`` (batch_first=True) holding the weights of ``stack``: one entry per
    torch layer, ``[forward]`` or ``[forward, backward]`` (bidirectional); all the same cell and size."""
    first = stack[0][0]
    unbuilt = [layer.name for directions in stack for layer in directions if not layer.built]
    if unbuilt:
        raise RuntimeError(f"to_torch: layer(s) {unbuilt} have no weights yet; call the model on a batch first")
    spec = first.cell_spec
    kw = {"nonlinearity": first.activation} if spec.uses_activation else {}
    mod = getattr(nn, spec.torch_name)(first.input_size, first.units, num_layers=len(stack), bias=first.use_bias,
                                       batch_first=True, dropout=dropout if len(stack) > 1 else 0.0,
                                       bidirectional=len(stack[0]) == 2, **kw)
    mod.to(dtype=first.weight_ih.dtype, device=first.weight_ih.device)
    names = WEIGHTS if first.use_bias else WEIGHTS[:2]
    for k, directions in enumerate(stack):
        for layer, sfx in zip(directions, ("", "_reverse")):
            if type(layer) is not type(first) or layer.units != first.units:
                raise ValueError("to_torch: all recurrent layers must be the same kind and size")
            with torch.no_grad():
                for name in names:
                    getattr(mod, f"{name}_l{k}{sfx}").copy_(getattr(layer, name))
    return mod
