"""The ``Layer`` base class and the argument checks every layer shares.

A layer is a ``torch.nn.Module`` whose input-sized weights are lazy parameters (torch's
``LazyModuleMixin``, as ``nn.LazyLinear``): they exist from construction and are materialised on
the first call (or at once when ``input_size=`` is given).  Layers take Keras argument names and
defaults and round-trip through ``get_config()`` / ``from_config()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

import numpy as np
import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter, is_lazy

from ..validation import InputError, tracing

ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax", "elu", "gelu")
_FUNCTIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
              "elu": nn.functional.elu, "gelu": nn.functional.gelu}


def apply_activation(name: str | None, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the named activation (``None`` / ``"linear"``: unchanged; softmax over the last axis)."""
    if name in (None, "linear"):
        return x
    if name == "softmax":
        return torch.softmax(x, -1)
    return _FUNCTIONS[name](x)


def check_choice(arg: str, value, choices: Collection) -> None:
    """Raise ValueError naming ``arg`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{arg}: expected one of {tuple(choices)}, got {value!r}")


def check_positive_int(arg: str, value) -> int:
    """``value`` when it is an int >= 1 (not a bool); ValueError naming ``arg`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{arg}: expected a positive integer, got {value!r}")
    return value


def check_rate(arg: str, value) -> float:
    """``value`` as a float in [0, 1); ValueError naming ``arg`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{arg}: expected a float in [0, 1), got {value!r}")
    return float(value)


class LazyParameter(UninitializedParameter):
    """A ``torch.nn.UninitializedParameter`` that can also be frozen (``requires_grad_``) or converted with
    ``.bfloat16()`` before it has a shape (torch allows ``.half()`` / ``.double()`` but not these), so
    ``model.requires_grad_(False)`` and ``model.bfloat16()`` work on a model that was never called."""

    _allowed_methods = UninitializedParameter._allowed_methods + [torch.Tensor.requires_grad_,
                                                                  torch.Tensor.bfloat16]


class LazyBuffer(UninitializedBuffer):
    """A ``torch.nn.UninitializedBuffer`` that also accepts ``.bfloat16()`` before it has a shape."""

    _allowed_methods = UninitializedBuffer._allowed_methods + [torch.Tensor.bfloat16]


class Layer(LazyModuleMixin, nn.Module):
    """Base class: lazy parameters the torch way, mask propagation and Keras-style config.

    Weights whose shape depends on the input are :class:`torch.nn.UninitializedParameter` from
    construction (as in ``nn.LazyLinear``): an optimizer built before the first call holds them,
    the first call (or ``load_state_dict``, or :meth:`build`) materialises them *in place* and the
    Keras initialisers fill them.  ``.to(dtype/device)`` before the first call fixes the dtype /
    device they get; otherwise they take those of the first floating-point input.

    A subclass declares the lazy tensors with :meth:`parameter_shapes` (name -> shape for an
    input of ``n_in`` features), says where a checkpoint reveals ``n_in`` (``input_key``) and
    returns their starting values from :meth:`initial_values`.
    """

    input_key: tuple[str, int] | None = None  # (tensor name, axis) holding the input size

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name or type(self).__name__.lower()
        self._lazy_origin = (torch.get_default_dtype(), torch.device("cpu"))

    # subclasses override -------------------------------------------------
    def parameter_shapes(self, n_in: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the lazy tensors for inputs with ``n_in`` features (none by default)."""
        return {}

    def initial_values(self) -> dict[str, torch.Tensor]:
        """Starting values of the lazy tensors (Keras initialisers; called once they have shapes)."""
        return {}

    def check_build_input(self, x: torch.Tensor) -> None:
        """Raise InputError when ``x`` cannot size the weights (before anything is materialised)."""

    def compute_mask(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        return mask

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> Layer:
        return cls(**config)

    def regularization_loss(self) -> torch.Tensor | None:
        return None

    # lazy parameters ------------------------------------------------------
    @property
    def built(self) -> bool:
        """Whether every parameter and buffer (children included) has its shape."""
        return not any(is_lazy(t) for t in itertools.chain(self.parameters(), self.buffers()))

    def build(self, input_shape: tuple[int, ...], dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> None:
        """Materialise the lazy tensors for inputs of ``input_shape`` and initialise them.

        ``dtype`` / ``device`` default to those of the (uninitialised) parameters.  Tensors that
        already have a shape (loaded from a checkpoint) keep their values."""
        shapes = self.parameter_shapes(int(input_shape[-1]))
        fresh = [n for n in shapes if is_lazy(self._tensor(n))]
        with torch.inference_mode(False):  # a first call under inference_mode still gives trainable weights
            for n in fresh:
                self._tensor(n).materialize(shapes[n], device=device, dtype=dtype)
            self._on_materialised(int(input_shape[-1]))
            if fresh:
                values = self.initial_values()
                with torch.no_grad():
                    for n in fresh:
                        self._tensor(n).copy_(values[n])
        self._lazy_done()

    def maybe_build(self, x: torch.Tensor) -> None:
        """Build for ``x`` when not built yet (what the first call does; a traced module is built already)."""
        if not tracing() and self.has_uninitialized_params():
            self.initialize_parameters(x)

    def initialize_parameters(self, x=None, *args, **kwargs) -> None:
        """LazyModuleMixin's first-call hook: size the weights from ``x`` and initialise them."""
        if not self.has_uninitialized_params():
            return
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.name} input: expected a torch.Tensor to size the weights, got "
                             f"{type(x).__name__}; for a PackedSequence pass the padded tensor and lengths=")
        self.check_build_input(x)
        self.build(tuple(x.shape), *self._build_target(x))

    def _infer_parameters(self, module, args, kwargs=None) -> None:
        """The forward pre-hook (also what ``torch.compile`` runs before tracing a lazy module)."""
        module.initialize_parameters(*args, **(kwargs or {}))
        module._lazy_done()

    def _apply(self, fn, recurse=True):
        """``Module._apply`` (``.to``, ``.double``, ...), keeping unbuilt tensors lazy where torch would
        swap in a plain empty tensor (a move it cannot do in place, e.g. to the ``meta`` device)."""
        lazy = {n: t.requires_grad for n, t in itertools.chain(self._parameters.items(), self._buffers.items())
                if is_lazy(t)}
        out = super()._apply(fn, recurse)
        for name, grad in lazy.items():
            t = self._tensor(name)
            if not is_lazy(t):
                if name in self._parameters:
                    self._parameters[name] = LazyParameter(grad, device=t.device, dtype=t.dtype)
                else:
                    self._buffers[name] = LazyBuffer(device=t.device, dtype=t.dtype)
        return out

    def _lazy_tensor(self) -> torch.Tensor | None:
        return next((t for t in itertools.chain(self._parameters.values(), self._buffers.values()) if is_lazy(t)),
                    None)

    def pinned_dtype(self) -> torch.dtype | None:
        """The dtype set with ``.to()`` / ``.double()`` ... before the first call (None: not set, or built)."""
        lazy = self._lazy_tensor()
        return lazy.dtype if lazy is not None and lazy.dtype != self._lazy_origin[0] else None

    def _build_target(self, x: torch.Tensor) -> tuple[torch.dtype, torch.device]:
        """dtype/device of new weights: those set with ``.to()`` before the first call, else the input's."""
        lazy = self._lazy_tensor()
        dtype = self.pinned_dtype() or (x.dtype if x.is_floating_point() else lazy.dtype)
        device = lazy.device if lazy.device != self._lazy_origin[1] else x.device
        return dtype, device

    def _tensor(self, name: str) -> torch.Tensor:
        return self._parameters[name] if name in self._parameters else self._buffers[name]

    def _on_materialised(self, n_in: int) -> None:
        """Called once the lazy tensors have their shapes (record the input size; subclasses extend)."""
        if hasattr(self, "input_size"):
            self.input_size = n_in

    def _lazy_done(self) -> None:
        """Remove the first-call and load hooks once nothing is lazy (as LazyModuleMixin does)."""
        if self.has_uninitialized_params():
            return
        for attr in ("_initialize_hook", "_load_hook"):
            handle = self.__dict__.pop(attr, None)
            if handle is not None:
                handle.remove()

    def _lazy_load_hook(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                        error_msgs) -> None:
        """Materialise lazy tensors from a checkpoint, refusing shapes this layer cannot have."""
        n_in = self._input_size_in(state_dict, prefix)
        if n_in is None:
            return
        expected = self.parameter_shapes(n_in)
        for name, shape in expected.items():
            key = prefix + name
            if key in state_dict and is_lazy(self._tensor(name)) and not is_lazy(state_dict[key]):
                got = tuple(state_dict[key].shape)
                if got != tuple(shape):
                    error_msgs.append(f"size mismatch for {key}: expected {tuple(shape)} for "
                                      f"{type(self).__name__}({self.extra_repr()}) with {n_in} input "
                                      f"features, got {got}")
                    continue
                with torch.no_grad():
                    self._tensor(name).materialize(shape)

    def _input_size_in(self, state_dict, prefix: str) -> int | None:
        if self.input_key is None:
            return None
        name, axis = self.input_key
        t = state_dict.get(prefix + name)
        if t is None or is_lazy(t) or t.dim() <= axis:
            return None
        return int(t.shape[axis])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.input_key is not None and not self.has_uninitialized_params():
            name, axis = self.input_key
            self._on_materialised(int(self._tensor(name).shape[axis]))
            self._lazy_done()

    def _replicate_for_data_parallel(self):
        if self.has_uninitialized_params():
            raise RuntimeError(f"{self.name}: lstmlab layers with unbuilt weights can't be used with DataParallel; "
                               "call the model once on a batch (or pass input_size=) first")
        return nn.Module._replicate_for_data_parallel(self)

    def __prepare_scriptable__(self):
        raise RuntimeError(
            f"torch.jit.script: lstmlab layers ({type(self).__name__}) are not TorchScript-able (their "
            "engines are Python / custom operators); use torch.compile, torch.export.export, or "
            "ll.to_torch(model) for a scriptable torch.nn.LSTM/GRU/RNN")

    def __getstate__(self) -> dict:
        """Pickle / deepcopy without per-call records that hold closures (taps)."""
        state = super().__getstate__()
        for k in self._transient:
            if k in state:
                state[k] = self._transient[k]()
        return state

    _transient: dict = {}


def run_eval(model: nn.Module, x, lengths=None) -> torch.Tensor:
    """One forward pass of ``model`` on ``x`` in eval mode without gradients (training mode restored).

    ``x`` may be an array; float input is moved to the dtype and device of the model's parameters.
    Used by ``explain`` and ``trace``, which read what the layers recorded on the way.
    """
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    params = list(model.parameters())
    if params and x.is_floating_point():
        x = x.to(dtype=params[0].dtype, device=params[0].device)
    if lengths is not None and not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(np.asarray(lengths))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x) if lengths is None else model(x, lengths=lengths)
    finally:
        model.train(was)
