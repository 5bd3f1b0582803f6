"""Attention pooling over time: ``(B, T, H)`` recurrent outputs -> one ``(B, H)`` vector.

``Attention`` scores every time step, takes a softmax over the *valid* steps (padding gets
weight exactly 0) and returns the weighted sum of the steps.  Put it after a recurrent layer
with ``return_sequences=True``::

    model = ll.Sequential([ll.LSTM(32, return_sequences=True), ll.Attention(),
                           ll.Dense(2, activation="softmax")])
    weights = explain(model, x)        # (B, T): where the model looked

Scores (``h_t`` the recurrent output at step t):

* ``kind="additive"`` (Bahdanau et al. 2015; the context-vector form of Yang et al. 2016):
  ``e_t = v . tanh(W h_t + b)`` with ``W`` (units, H), ``b`` (units), ``v`` (units); ``units``
  defaults to H.
* ``kind="dot"``: ``e_t = q . h_t / sqrt(H)`` with one learned query vector ``q`` (H,).

Padding is taken from ``lengths`` (B,) or ``mask`` (B, T) when given.  Without them the layer
falls back to the recurrent engines' convention that padded output rows are exactly zero and
treats a trailing run of all-zero rows as padding (``infer_padding=True``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..validation import InputError, check_lengths, lengths_from_mask, tracing
from .base import Layer, LazyParameter, check_choice, check_positive_int, run_eval

__all__ = ["Attention", "explain", "attention_layers"]


def _trailing_zero_lengths(x: torch.Tensor) -> torch.Tensor | None:
    """Lengths implied by trailing all-zero rows of ``x`` (B, T, H); None when no row has any."""
    nonzero = (x != 0).any(-1)  # (B, T)
    steps = x.shape[1]
    idx = torch.arange(1, steps + 1, device=x.device).expand_as(nonzero)
    lengths = torch.where(nonzero, idx, torch.zeros_like(idx)).amax(1).clamp(min=1)
    if tracing(x):  # no data-dependent branch in a traced graph (nor values on meta); full lengths mask nothing
        return lengths
    if bool((lengths == steps).all()):
        return None
    return lengths.cpu()


class Attention(Layer):
    """Softmax attention pooling over time with padding masked out.

    Args:
        kind: ``"additive"`` (``v . tanh(W h_t + b)``) or ``"dot"`` (``q . h_t / sqrt(H)``).
        units: size of the additive score's hidden layer (default: H); not used by ``"dot"``.
        return_attention: return ``[pooled (B, H), weights (B, T)]`` instead of the pooled
            tensor (call the layer directly then; ``Sequential`` needs a single tensor).
        infer_padding: without ``lengths``/``mask``, treat trailing all-zero rows as padding.
        seed: seed for the weight initialisation.

    After each call ``last_attention`` holds the weights (B, T), detached.
    """

    uses_lengths = True  # Sequential passes ``lengths=`` to layers that declare this

    def __init__(self, kind: str = "additive", units: int | None = None, return_attention: bool = False,
                 infer_padding: bool = True, input_size: int | None = None, seed: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        check_choice("kind", kind, ("additive", "dot"))
        if units is not None:
            check_positive_int("units", units)
            if kind == "dot":
                raise ValueError("units: not used by kind='dot'; leave it None")
        self.kind = kind
        self.units = units
        self.return_attention = bool(return_attention)
        self.infer_padding = bool(infer_padding)
        self.input_size = input_size
        self.seed = seed
        self.last_attention: torch.Tensor | None = None
        if kind == "additive":
            self.weight = LazyParameter()
            self.bias = LazyParameter()
            self.score_vector = LazyParameter()
        else:
            self.query = LazyParameter()
        if input_size is not None:
            self.build((1, 1, check_positive_int("input_size", input_size)))

    @property
    def input_key(self) -> tuple[str, int]:
        return ("weight", 1) if self.kind == "additive" else ("query", 0)

    def parameter_shapes(self, n_in: int) -> dict[str, tuple[int, ...]]:
        """Score weights for ``H = n_in`` features."""
        if self.kind == "dot":
            return {"query": (n_in,)}
        u = self.units or n_in
        return {"weight": (u, n_in), "bias": (u,), "score_vector": (u,)}

    def initial_values(self) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        h = self.input_size
        kw = {"dtype": (self.weight if self.kind == "additive" else self.query).dtype}
        if self.kind == "dot":
            return {"query": (torch.rand(h, generator=gen, **kw) * 2 - 1) * math.sqrt(6.0 / (h + 1))}
        u = self.units or h
        w = (torch.rand(u, h, generator=gen, **kw) * 2 - 1) * math.sqrt(6.0 / (h + u))
        v = (torch.rand(u, generator=gen, **kw) * 2 - 1) * math.sqrt(6.0 / (u + 1))
        return {"weight": w, "bias": torch.zeros(u, **kw), "score_vector": v}

    def check_build_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or not x.is_floating_point():
            raise InputError(f"{self.name} input: expected a 3-D float (batch, time, features) tensor, e.g. "
                             f"a recurrent layer with return_sequences=True, got {tuple(x.shape)}")

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores ``e_t`` (B, T)."""
        if self.kind == "additive":
            return torch.tanh(nn.functional.linear(x, self.weight, self.bias)) @ self.score_vector
        return (x @ self.query) / math.sqrt(x.shape[-1])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths=None):
        """Pool ``x`` (B, T, H) over time; ``lengths`` (B,) or ``mask`` (B, T) mark right padding."""
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.name} input: expected a 3-D float (batch, time, features) tensor, got "
                             f"{type(x).__name__}")
        self.check_build_input(x)
        self.maybe_build(x)
        if x.shape[-1] != self.input_size:
            raise InputError(f"{self.name} input: expected {self.input_size} features in the last axis, "
                             f"got shape {tuple(x.shape)}")
        batch, steps = x.shape[0], x.shape[1]
        if lengths is None and mask is not None:
            lengths = lengths_from_mask("mask", torch.as_tensor(mask))
        if lengths is not None:
            lengths = check_lengths("lengths", lengths, batch, steps)
        elif self.infer_padding:
            lengths = _trailing_zero_lengths(x.detach())
        e = self.scores(x)
        if lengths is not None:
            valid = torch.arange(steps, device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)
            e = e.masked_fill(~valid, float("-inf"))
        a = torch.softmax(e, dim=1)
        if not torch.compiler.is_exporting():  # an exported program keeps no Python-side records
            self.last_attention = a.detach()
        pooled = torch.einsum("bt,bth->bh", a, x)
        if self.return_attention:
            return [pooled, a]
        return pooled

    def compute_mask(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        return None  # the time axis is gone

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "units": self.units,
                "return_attention": self.return_attention, "infer_padding": self.infer_padding,
                "input_size": self.input_size, "seed": self.seed}

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, units={self.units}"


def attention_layers(model: nn.Module) -> list[Attention]:
    """All Attention layers inside ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, Attention)]


def explain(model: nn.Module, x, lengths=None) -> np.ndarray:
    """Attention weights ``(B, T)`` of ``model`` on ``x``: how much each example's output drew on
    each time step (rows sum to 1 over the valid steps, 0 on padding).

    Runs the model once in eval mode without gradients; with several Attention layers the last
    one is reported.  Raises ``ValueError`` when the model has no Attention layer.
    """
    layers = attention_layers(model)
    if not layers:
        raise ValueError("model: has no Attention layer; add ll.Attention() after a recurrent layer with "
                         "return_sequences=True to get attention weights")
    run_eval(model, x, lengths)
    weights = layers[-1].last_attention
    if weights is None:
        raise ValueError("model: its Attention layer was not reached by the forward pass")
    return weights.cpu().numpy()
