"""Feed-forward layers: Dense, Embedding, Dropout and Masking (Keras names and defaults)."""

from __future__ import annotations

import torch
from torch import nn

from .. import initializers, regularizers
from ..validation import InputError, tracing
from .base import ACTIVATIONS, Layer, LazyParameter, apply_activation, check_choice, check_positive_int, check_rate


class Dense(Layer):
    """Fully connected layer on the last axis (applied per step on 3-D input, like Keras).

    ``weight`` (units, in) and ``bias`` (units,) as ``torch.nn.Linear``; lazy until the first call."""

    input_key = ("weight", 1)

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", kernel_regularizer=None,
                 bias_regularizer=None, input_size: int | None = None, seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.units = check_positive_int("units", units)
        check_choice("activation", activation, (None,) + ACTIVATIONS)
        check_choice("kernel_initializer", kernel_initializer, initializers.INITIALIZERS)
        self.activation = activation
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.input_size = input_size
        self.seed = seed
        self.weight = LazyParameter()
        self.register_parameter("bias", LazyParameter() if self.use_bias else None)
        if input_size is not None:
            self.build((1, check_positive_int("input_size", input_size)))

    def parameter_shapes(self, n_in: int) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.units, n_in), **({"bias": (self.units,)} if self.use_bias else {})}

    def initial_values(self) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        dtype = self.weight.dtype
        w = initializers.init_(torch.empty(self.weight.shape, dtype=dtype), self.kernel_initializer, gen)
        return {"weight": w, "bias": torch.zeros(self.units, dtype=dtype)}

    def check_build_input(self, x: torch.Tensor) -> None:
        if not x.is_floating_point():
            raise InputError(f"{self.name} input: expected floating-point data, got dtype {x.dtype}")
        if x.dim() < 1:
            raise InputError(f"{self.name} input: expected at least 1 axis (features last), got a scalar")

    def forward(self, x, mask=None, logits: bool = False):
        self.check_build_input(x)
        self.maybe_build(x)
        if x.shape[-1] != self.input_size:
            raise InputError(f"{self.name} input: expected {self.input_size} features in the last axis, "
                             f"got shape {tuple(x.shape)}")
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
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = embeddings_initializer
        self.seed = seed
        check_choice("embeddings_initializer", embeddings_initializer, initializers.INITIALIZERS)
        self._create()

    def _create(self) -> None:
        """The (input_dim, output_dim) table, initialised at once: its shape never depends on the data."""
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        self.weight = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        with torch.no_grad():
            if self.embeddings_initializer == "uniform":
                self.weight.uniform_(-0.05, 0.05, generator=gen)
            else:
                self.weight.copy_(initializers.init_(torch.empty(self.output_dim, self.input_dim),
                                                     self.embeddings_initializer, gen).t())
        self._lazy_done()

    def forward(self, x, mask=None):
        if x.is_floating_point():
            if not tracing(x) and not torch.equal(x, x.round()):
                raise InputError(f"{self.name} input: expected integer token ids, got float values")
            x = x.long()
        if x.dim() != 2:
            raise InputError(f"{self.name} input: expected a 2-D (batch, time) array of token ids, "
                             f"got shape {tuple(x.shape)}")
        if not tracing(x) and x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.input_dim):
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
        self.rate = check_rate("rate", rate)
        self._lazy_done()

    def forward(self, x, mask=None):
        return nn.functional.dropout(x, self.rate, self.training)

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}


class Masking(Layer):
    """Mark time steps whose features all equal ``mask_value`` as padding (Keras ``Masking``)."""

    def __init__(self, mask_value: float = 0.0, name: str | None = None) -> None:
        super().__init__(name)
        self.mask_value = float(mask_value)
        self._lazy_done()

    def forward(self, x, mask=None):
        return x

    def compute_mask(self, x, mask):
        return (x != self.mask_value).any(-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "mask_value": self.mask_value}
