"""``Sequential``: the seed's Keras-style model — compile, fit, evaluate, predict, save, load."""

from __future__ import annotations

import copy
import itertools
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from . import loading, optim, saving
from . import losses as L
from . import metrics as M
from .callbacks import Callback, History, ProgbarLogger
from .data.base import SequenceData
from .layers import (
    Bidirectional,
    Dense,
    Embedding,
    Layer,
    RNNLayer,
    deserialize,
    explain,
    recurrent_layers,
    serialize,
)
from .model_inputs import FROM_DATAFRAME, as_input, is_dataframe, unpack
from .training.loop import Loop, Position, Strategy, epoch_logs, fresh_sums
from .validation import InputError, check_features, check_lengths, lengths_from_mask


class LossTerms(NamedTuple):
    """:meth:`Sequential.loss_terms`: the loss (scalar, masked mean), the output the metrics read
    (probabilities for softmax/sigmoid heads), the checked target, the (B, T) mask of valid steps
    of a per-step output (or None), and the per-sample (per-step) loss values before the mean."""

    loss: torch.Tensor
    output: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor | None
    values: torch.Tensor


class Sequential(nn.Module):
    """A stack of layers, called like any ``nn.Module`` and trained Keras-style.

    ``model(x, lengths=None, mask=None)`` returns the last layer's output; ``lengths`` (B,) or a
    right-padded ``mask`` (B, T) tell recurrent layers where each sequence ends.
    """

    def __init__(self, layers: list[Layer] | None = None, name: str = "sequential") -> None:
        super().__init__()
        self.name = name
        self.layers = nn.ModuleList()
        for layer in layers or []:
            self.add(layer)
        self.loss_name: str | None = None
        self.metric_names: list[str] = []
        self.optimizer: torch.optim.Optimizer | None = None
        self.optimizer_spec: optim.Optimizer | None = None
        self.clipnorm = self.clipvalue = self.global_clipnorm = None
        self.stop_training = False
        self.skip_step = False
        self.global_step = 0
        self.history: History | None = None
        self._output_shapes: list[tuple] = []

    # --- structure ---------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, nn.Module):
            raise ValueError(f"layers: expected lstmlab layers or torch modules, got {type(layer).__name__}")
        names = {getattr(m, "name", None) for m in self.layers}
        if isinstance(layer, Layer) and layer.name in names:  # Keras-style unique names: lstm, lstm_1
            base, k = layer.name, 1
            while f"{base}_{k}" in names:
                k += 1
            layer.name = f"{base}_{k}"
        self.layers.append(layer)

    def forward(self, x, lengths=None, mask=None, logits: bool = False):
        x = x if isinstance(x, torch.Tensor) else as_input("x", x)
        if lengths is None and mask is not None:
            lengths = lengths_from_mask("mask", torch.as_tensor(mask))
        if lengths is not None:
            lengths = check_lengths("lengths", lengths, x.shape[0], x.shape[1])
        self._output_shapes = []
        n = len(self.layers)
        for k, layer in enumerate(self.layers):
            if getattr(layer, "takes_logits", False):  # Ensemble: lengths, and logits (it is the head)
                if k != n - 1:
                    raise ValueError(f"layer {k} ({layer.name}): an Ensemble must be the last layer (its members end "
                                     f"with the output layer); got {n - 1 - k} layer(s) after it")
                out = layer(x, lengths=lengths, logits=logits)
            elif isinstance(layer, (RNNLayer, Bidirectional)) or getattr(layer, "uses_lengths", False):
                if getattr(layer, "return_state", False):
                    raise ValueError(f"layer {k} ({layer.name}): return_state=True cannot be used inside "
                                     "Sequential; call the layer directly")
                out = layer(x, lengths=lengths, check_input=k == 0) \
                    if isinstance(layer, (RNNLayer, Bidirectional)) else layer(x, lengths=lengths)
            elif isinstance(layer, Dense):
                out = layer(x, logits=logits and k == n - 1)
            elif isinstance(layer, Layer):
                out = layer(x)
            else:
                out = layer(x)
            if isinstance(out, (list, tuple)):  # Bidirectional(merge_mode=None), Attention(return_attention=True)
                raise ValueError(f"layer {k} ({getattr(layer, 'name', type(layer).__name__)}): returns {len(out)} "
                                 "tensors; Sequential needs one; call the layer directly")
            if isinstance(layer, Layer) and hasattr(layer, "output_lengths"):
                lengths = layer.output_lengths(lengths)  # a layer that reshapes the time axis (Patch, pooling)
            elif isinstance(layer, Layer):
                m = layer.compute_mask(x, None if lengths is None else self._mask(lengths, x))
                if type(layer).__name__ in ("Embedding", "Masking") and m is not None:
                    lengths = lengths_from_mask(f"{layer.name} mask", m)
                elif m is None:
                    lengths = None if out.dim() < 3 else lengths
            x = out
            self._output_shapes.append(tuple(out.shape))
        self._last_lengths = lengths if x.dim() == 3 else None
        return x

    @staticmethod
    def _mask(lengths: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)

    def explain(self, x, lengths=None):
        """Attention weights (B, T) of the model's Attention layer for each example and step."""
        return explain(self, x, lengths)

    def recurrent_layers(self) -> list[RNNLayer]:
        return recurrent_layers(self)

    def set_taps(self, on: bool = True) -> None:
        """Record per-step gradient taps in every recurrent layer (read after backward)."""
        for layer in self.recurrent_layers():
            layer.record_taps = on

    def regularization_loss(self) -> torch.Tensor | None:
        terms = [t for layer in self.layers if isinstance(layer, Layer)
                 for t in [layer.regularization_loss()] if t is not None]
        return sum(terms) if terms else None

    @property
    def built(self) -> bool:
        """Whether every weight has its shape (lazy parameters are materialised on the first call)."""
        return not any(is_lazy(t) for t in itertools.chain(self.parameters(), self.buffers()))

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.get_default_dtype()

    def build(self, x, lengths=None) -> None:
        """Create all weights by running one small batch."""
        if self.built:
            return
        x = x if isinstance(x, torch.Tensor) else as_input("x", x)
        pinned = next((d for m in self.modules() if isinstance(m, Layer) for d in [m.pinned_dtype()] if d), None)
        if pinned is not None and x.is_floating_point():  # model.to(dtype) before: data follows the model
            x = x.to(pinned)
        was = self.training
        self.eval()
        with torch.no_grad():
            self(x[:2].to(self._device()), lengths=None if lengths is None else lengths[:2])
        self.train(was)

    # --- compile / fit ------------------------------------------------------------------------
    def compile(self, loss: str = "mse", optimizer="adam", metrics=None, clipnorm: float | None = None,
                clipvalue: float | None = None, global_clipnorm: float | None = None,
                learning_rate: float | None = None, weight_decay: float | None = None) -> None:
        """Choose loss, optimizer and metrics.  Gradient-clipping remedies for exploding gradients:
        ``clipnorm`` (each parameter's gradient norm), ``clipvalue`` (each element) and
        ``global_clipnorm`` (the norm over all gradients).  ``weight_decay`` is the optimizer's
        L2 weight decay (added to the gradient for sgd/adam/rmsprop, decoupled for adamw)."""
        self.loss_name = L.canonical(loss)
        self.metric_names = M.check(metrics)
        for arg, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise ValueError(f"{arg}: expected a positive number or None, got {v!r}")
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        if isinstance(optimizer, torch.optim.Optimizer):
            self.optimizer, self.optimizer_spec = optimizer, None
        else:
            extra = {} if weight_decay is None else {"weight_decay": weight_decay}
            self.optimizer_spec = optim.get(optimizer, learning_rate, **extra)
            if learning_rate is not None:
                self.optimizer_spec.learning_rate = learning_rate
            if weight_decay is not None:
                self.optimizer_spec.options["weight_decay"] = weight_decay
            self.optimizer = None
            if self.built and any(True for _ in self.parameters()):
                self.optimizer = self.optimizer_spec.build(self.parameters())

    def compile_config(self) -> dict:
        return {"loss": self.loss_name, "metrics": self.metric_names, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm,
                "optimizer": None if self.optimizer_spec is None else self.optimizer_spec.get_config()}

    def _ensure_optimizer(self) -> None:
        if self.loss_name is None:
            raise RuntimeError("model: call compile(loss=..., optimizer=...) before fit/evaluate")
        if self.optimizer is None:
            self.optimizer = self.optimizer_spec.build(self.parameters())

    def _head(self):  # the output layer: the last one, or the one inside a last Ensemble
        last = self.layers[-1] if len(self.layers) else None
        return last.head if getattr(last, "takes_logits", False) else last

    def _logit_mode(self, loss: str | None = None) -> bool:
        """Whether the last layer hands its logits to the loss (see :meth:`loss_terms`)."""
        last = self._head()
        want = L.LOGIT_ACTIVATION.get(self.loss_name if loss is None else loss)
        return isinstance(last, Dense) and want is not None and last.activation == want

    def check_inputs(self, x, y=None, lengths=None, prefix: str = ""):
        """``(x, y, lengths)`` as tensors, checked: non-empty, finite, the rank and feature size the
        first layer takes, as many rows of ``y`` and valid ``lengths``; errors name the argument."""
        frame = is_dataframe(x)
        x = as_input(prefix + "x", x)
        if x.is_floating_point() and not torch.isfinite(x).all():
            bad = tuple((~torch.isfinite(x)).nonzero()[0].tolist())
            raise InputError(f"{prefix}x: expected finite values, got NaN/Inf at index {bad}")
        if x.dim() < 2:
            raise InputError(f"{prefix}x: expected a 3-D (batch, time, features) array or 2-D token ids, "
                             f"got shape {tuple(x.shape)}")
        try:
            self._check_first_layer(x, prefix + "x")
        except InputError as exc:
            if not frame:
                raise
            raise InputError(f"{exc} from a DataFrame; a long-format table (one row per id and time step) "
                             f"becomes sequences with {FROM_DATAFRAME}") from None
        yt = None
        if y is not None:
            yt = as_input(prefix + "y", y)
            if yt.shape[0] != x.shape[0]:
                raise InputError(f"{prefix}y: expected {x.shape[0]} rows to match {prefix}x, got {yt.shape[0]}")
        if lengths is not None:
            lengths = check_lengths(prefix + "lengths", lengths, x.shape[0], x.shape[1])
        return x, yt, lengths

    def _check_first_layer(self, x: torch.Tensor, name: str) -> None:
        """Check rank and feature size against the first layer, on the whole array (not a batch)."""
        first = self.layers[0] if len(self.layers) else None
        if isinstance(first, Bidirectional):
            first = first.forward_layer
        if isinstance(first, RNNLayer):
            check_features(name, x, ndim=(3,), float_only=True,
                           last=first.input_size if first.built else None)
        elif isinstance(first, Embedding) and x.dim() != 2:
            raise InputError(f"{name}: expected a 2-D (batch, time) array of token ids for the Embedding "
                             f"layer, got shape {tuple(x.shape)}")

    def _step_mask(self, out: torch.Tensor) -> torch.Tensor | None:
        lens = getattr(self, "_last_lengths", None)
        if out.dim() == 3 and lens is not None:
            return (torch.arange(out.shape[1]).unsqueeze(0) < lens.unsqueeze(1)).to(out.device)
        return None

    def loss_terms(self, x, y, lengths=None, *, loss: str | None = None, prepared: bool = False) -> LossTerms:
        """One forward pass and the loss, with what the training loop and the metrics need.

        The rule for softmax/sigmoid heads lives here: with a cross-entropy loss whose activation
        is the last Dense layer's, that layer hands its logits to the loss (stable, as Keras
        does) and :attr:`LossTerms.output` holds the probabilities.  ``loss``: a loss name other
        than the compiled one; ``prepared``: ``y`` is already checked and shaped for the loss."""
        name = self.loss_name if loss is None else L.canonical(loss)
        if name is None:
            raise RuntimeError("model: call compile(loss=...) or pass loss= before computing a loss")
        logit_mode = self._logit_mode(name)
        out = self(x, lengths=lengths, logits=logit_mode)
        if getattr(self.layers[-1], "stacked", False):  # an Ensemble in training: one output per member
            return self._member_terms(name, out, y, prepared, logit_mode)
        if not prepared:
            y = L.prepare_target(name, y, tuple(out.shape))
        mask = self._step_mask(out)
        values = L.elementwise(name, out, y, logit_mode)
        probs = self._probs(out) if logit_mode else None
        return LossTerms(L.reduce(values, mask), probs if probs is not None else out, y, mask, values)

    def _probs(self, out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out, -1) if self._head().activation == "softmax" else torch.sigmoid(out)

    def _member_terms(self, name: str, outs: torch.Tensor, y, prepared: bool, logit_mode: bool) -> LossTerms:
        """An Ensemble's training step: the mean of the members' losses (each learns as if alone); the
        metrics see the members' mean output."""
        if not prepared:
            y = L.prepare_target(name, y, tuple(outs.shape[1:]))
        mask = self._step_mask(outs[0])
        values = torch.stack([L.elementwise(name, o, y, logit_mode) for o in outs]).mean(0)
        mean = torch.stack([self._probs(o) if logit_mode else o for o in outs]).mean(0)
        return LossTerms(L.reduce(values, mask), mean, y, mask, values)

    def compute_loss(self, x, y, lengths=None, *, loss: str | None = None) -> torch.Tensor:
        """The loss the training loop optimises on ``(x, y)`` (a scalar tensor with its graph): the
        compiled loss (or ``loss``), the logit rule of :meth:`loss_terms`, the mean over the
        valid steps of a per-step output.  Inputs are checked as ``fit`` checks them.  Weight
        regularization is not included (:meth:`regularization_loss`)."""
        x, y, lengths = self.check_inputs(x, y, lengths)
        self.build(x, lengths)
        x, y = self._in_dtype(x).to(self._device()), y.to(self._device())
        return self.loss_terms(x, y, lengths, loss=loss).loss

    def _in_dtype(self, x: torch.Tensor) -> torch.Tensor:
        """Float inputs in the dtype of the weights."""
        return x.to(self._dtype()) if x.is_floating_point() and x.dtype != self._dtype() else x

    def clip_gradients(self) -> float:
        """Apply the compiled clipping; returns the global gradient norm before clipping."""
        params = [p for p in self.parameters() if p.grad is not None]
        if not params:
            return 0.0
        total = float(torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params])))
        if self.clipvalue is not None:
            torch.nn.utils.clip_grad_value_(params, self.clipvalue)
        if self.clipnorm is not None:
            for p in params:
                torch.nn.utils.clip_grad_norm_([p], self.clipnorm)
        if self.global_clipnorm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.global_clipnorm)
        return total

    def fit(self, x, y=None, epochs: int = 1, batch_size: int = 32, validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True, callbacks: list[Callback] | None = None,
            verbose: int = 1, lengths=None, tbptt: int | None = None, initial_epoch: int = 0,
            seed: int | None = None) -> History:
        """Train for ``epochs``.  ``tbptt=k`` truncates backpropagation through time to chunks
        of ``k`` steps (states carried across chunks, gradients not) — a remedy for exploding
        gradients and for sequences too long to unroll.  ``x`` may be a
        :class:`~lstmlab.data.SequenceData` split (``ll.data.from_dataframe(df, ...).train`` for a
        long-format DataFrame) with ``y`` and ``lengths`` left out; so may ``validation_data``."""
        for arg, v in (("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{arg}: expected a positive integer, got {v!r}")
        if not 0.0 <= validation_split < 1.0:
            raise InputError(f"validation_split: expected a float in [0, 1), got {validation_split!r}")
        if tbptt is not None and (isinstance(tbptt, bool) or not isinstance(tbptt, int) or tbptt < 1):
            raise InputError(f"tbptt: expected a positive integer number of steps, got {tbptt!r}")
        x, y, lengths = self.check_inputs(*unpack(x, y, lengths))
        if validation_data is None and validation_split > 0:
            n_val = int(round(x.shape[0] * validation_split))
            if n_val < 1 or n_val >= x.shape[0]:
                raise InputError(f"validation_split: {validation_split} of {x.shape[0]} samples leaves "
                                 "no training or no validation data")
            cut = x.shape[0] - n_val
            validation_data = (x[cut:], y[cut:]) + ((lengths[cut:],) if lengths is not None else ())
            x, y = x[:cut], y[:cut]
            lengths = None if lengths is None else lengths[:cut]
        val = None
        if validation_data is not None:
            if isinstance(validation_data, SequenceData):
                validation_data = unpack(validation_data, None, None)
            vx, vy, *vl = validation_data
            val = self.check_inputs(vx, vy, vl[0] if vl else None, prefix="validation_data ")
        self.build(x, lengths)
        x, y = self.prepare_training(x, y, lengths)
        steps = math.ceil(x.shape[0] / batch_size)
        cbs = list(callbacks or []) + ([ProgbarLogger(epochs, steps, verbose)] if verbose else [])
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        loop = Loop(self, cbs, Strategy(shuffle, gen), tbptt=tbptt)
        return loop.run(x, y, lengths, val, epochs=epochs, batch_size=batch_size, start=Position(initial_epoch))

    def prepare_training(self, x: torch.Tensor, y: torch.Tensor, lengths) -> tuple[torch.Tensor, torch.Tensor]:
        """What the training loop needs of a built model and checked inputs: ``x`` in the model's
        dtype, the optimizer, ``y`` checked and shaped against the output of a probe batch (so a
        wrong target fails with a clear error before any step)."""
        x = self._in_dtype(x)
        self._ensure_optimizer()
        with torch.no_grad():
            self.eval()
            probe = self(x[:2].to(self._device()), lengths=None if lengths is None else lengths[:2],
                         logits=self._logit_mode())
            self.train()
            y = L.prepare_target(self.loss_name, y, (x.shape[0],) + tuple(probe.shape[1:]))
        return x, y

    # --- evaluate / predict -------------------------------------------------------------------
    def evaluate(self, x, y=None, batch_size: int = 32, lengths=None, verbose: int = 0, return_dict: bool = False):
        """Loss and metrics on ``(x, y)`` (or a SequenceData split ``x``) without updating anything."""
        x, y, lengths = self.check_inputs(*unpack(x, y, lengths))
        if self.loss_name is None:
            raise RuntimeError("model: call compile(loss=..., optimizer=...) before evaluate")
        self.build(x, lengths)
        device = self._device()
        x = self._in_dtype(x)
        was = self.training
        self.eval()
        sums = fresh_sums(self.metric_names)
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
                lb = None if lengths is None else lengths[i:i + batch_size]
                terms = self.loss_terms(xb, yb, lb)
                n = float(xb.shape[0])
                sums["loss"][0] += float(terms.loss) * n
                sums["loss"][1] += n
                for m in self.metric_names:
                    s, c = M.batch_sums(m, self.loss_name, terms.output, terms.target, terms.mask)
                    sums[m][0] += s
                    sums[m][1] += c
        self.train(was)
        res = epoch_logs(sums)
        if verbose:
            print(" - ".join(f"{k}: {v:.4g}" for k, v in res.items()))
        if return_dict:
            return res
        return res["loss"] if not self.metric_names else [res["loss"]] + [res[m] for m in self.metric_names]

    def predict(self, x, batch_size: int = 32, lengths=None) -> np.ndarray:
        """Model outputs (probabilities for softmax/sigmoid heads) as a NumPy array; ``x`` may be a
        SequenceData split (its targets unused)."""
        x, _, lengths = unpack(x, None, lengths, need_y=False)
        x, _, lengths = self.check_inputs(x, None, lengths)
        self.build(x, lengths)
        device = self._device()
        x = self._in_dtype(x)
        was = self.training
        self.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                lb = None if lengths is None else lengths[i:i + batch_size]
                outs.append(self(x[i:i + batch_size].to(device), lengths=lb).cpu())
        self.train(was)
        return torch.cat(outs).numpy()

    # --- inspection / persistence -------------------------------------------------------------
    def count_params(self) -> int:
        """Number of weights that exist so far (unbuilt lazy parameters have no size yet)."""
        return sum(p.numel() for p in self.parameters() if not is_lazy(p))

    def summary(self, print_fn=print) -> str:
        """A table of layers, output shapes and parameter counts (as Keras prints it)."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for k, layer in enumerate(self.layers):
            shape = self._output_shapes[k] if k < len(self._output_shapes) else "?"
            if isinstance(shape, tuple):
                shape = str((None,) + shape[1:])
            built = not any(is_lazy(p) for p in layer.parameters())
            n = sum(p.numel() for p in layer.parameters()) if built else "? (unbuilt)"
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape), str(n)))
        w = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "=" * sum(w)
        out = [f'Model: "{self.name}"', line] + [
            "".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows[:1]] + [line] + [
            "".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows[1:]] + [line]
        if self.built:
            trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
            out += [f"Total params: {self.count_params():,}", f"Trainable params: {trainable:,}"]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict:
        return {"name": self.name, "layers": [serialize(layer) for layer in self.layers],
                "dtype": str(self._dtype()).replace("torch.", "")}

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        model = cls([deserialize(spec) for spec in config["layers"]], name=config.get("name", "sequential"))
        dtype = getattr(torch, config.get("dtype", "float32"))
        model.to(dtype)
        return model

    def save(self, path, include_optimizer: bool = True) -> None:
        """Write architecture, weights and optimizer state to one safetensors file (atomic)."""
        if not self.built:
            raise RuntimeError("model.save: the model has no weights yet; call it on data (or fit) first")
        saving.save(self, path, include_optimizer)

    def get_state(self) -> dict:
        """In-memory snapshot of weights and optimizer state (used to roll back a bad step)."""
        return {"model": copy.deepcopy(self.state_dict()),
                "optimizer": None if self.optimizer is None else copy.deepcopy(self.optimizer.state_dict())}

    def set_state(self, state: dict) -> None:
        self.load_state_dict(state["model"])
        if state.get("optimizer") is not None and self.optimizer is not None:
            # torch keeps matching tensors by reference: copy so later steps can't alter the snapshot
            self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))


def load_model(path, compile: bool = True) -> Sequential:
    """Rebuild a model saved with ``model.save`` (architecture, weights, optimizer state).

    The file may come from anyone: what it declares is checked against what it stores before
    anything is built, and errors are :class:`~lstmlab.saving.ModelFileError` naming the file and key
    (see :mod:`lstmlab.loading`)."""
    return loading.load_model(path, Sequential, compile)
