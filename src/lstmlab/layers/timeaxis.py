"""Layers that reshape or summarise the time axis: they shorten or bypass the gradient path.

* :class:`Patch` (``{type = "Patch", size = 4}``): ``k`` consecutive steps become one step of
  ``k * F`` features, so a recurrent layer after it runs ``ceil(T / k)`` steps and its gradient
  crosses ``k`` times fewer steps.  Sequences are right-padded with zeros to a multiple of ``k``;
  with ``lengths`` (or a mask) the steps after each sequence's end are zeroed first and the new
  lengths are ``ceil(len / k)``.
* :class:`Unpatch` (``{type = "Unpatch", size = 4, steps = T}``): the inverse for per-step targets:
  ``(B, S, k * H)`` -> ``(B, S * k, H)`` cut to ``steps``.  With ``causal = true`` (the default)
  the outputs of patch ``j`` come from the recurrent state *before* patch ``j`` (the one after
  patch ``j - 1``; zeros for the first), so no output sees an input step that comes after it.
* :class:`GlobalAveragePooling1D` (Keras's name): the mean over the valid steps; every step gets
  a direct path to the loss (a readout that does not rely on the last state alone).
* :class:`SeriesNorm` (``{type = "SeriesNorm"}``): per-series, per-channel standardisation over
  the valid steps (the UCR convention: each series has mean 0 and standard deviation 1); with
  ``difference = true`` the standardised first difference follows as F more channels.

:func:`crop_stretch` and :func:`crop_views` (window slicing, Le Guennec et al. 2016) cut a window of
a series and stretch it back to the full length; :class:`lstmlab.Ensemble` uses them to augment
training series and to average predictions over several views of a test series.

A layer that changes the time axis declares ``output_lengths(lengths)``; ``Sequential`` calls it
to carry the sequence lengths on.
"""

from __future__ import annotations

import math

import torch

from ..validation import InputError, check_lengths
from .base import Layer, check_positive_int

__all__ = ["Patch", "Unpatch", "GlobalAveragePooling1D", "SeriesNorm", "valid_mask", "crop_stretch", "crop_views"]


def _check_3d(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{name} input: expected a 3-D float (batch, time, features) tensor, got {shape}")


def valid_mask(lengths: torch.Tensor | None, batch: int, steps: int, device) -> torch.Tensor | None:
    """(B, T) bool mask of the valid steps of right-padded sequences (None: all valid)."""
    if lengths is None:
        return None
    return torch.arange(steps, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


def _lengths(x: torch.Tensor, lengths) -> torch.Tensor | None:
    if lengths is None:
        return None
    return check_lengths("lengths", lengths, x.shape[0], x.shape[1])


class Patch(Layer):
    """``k`` consecutive steps as one step: ``(B, T, F)`` -> ``(B, ceil(T/k), k*F)`` (see the module doc).

    Helps when a long sequence makes the gradient vanish on its way back: the recurrent layer
    after it sees ``k`` times fewer steps (for chrono initialisation, use ``T / k`` as its
    ``chrono_max_len``)."""

    uses_lengths = True

    def __init__(self, size: int, name: str | None = None) -> None:
        super().__init__(name)
        self.size = check_positive_int("size", size)

    def forward(self, x: torch.Tensor, mask=None, lengths=None) -> torch.Tensor:
        _check_3d(self.name, x)
        b, t, f = x.shape
        lengths = _lengths(x, lengths)
        valid = valid_mask(lengths, b, t, x.device)
        if valid is not None:
            x = x * valid.unsqueeze(-1).to(x.dtype)
        pad = (-t) % self.size
        if pad:
            x = torch.cat([x, x.new_zeros(b, pad, f)], dim=1)
        return x.reshape(b, (t + pad) // self.size, self.size * f)

    def output_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """``ceil(len / k)`` per sequence."""
        return None if lengths is None else torch.div(lengths + self.size - 1, self.size, rounding_mode="floor")

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size}


class Unpatch(Layer):
    """``(B, S, k*H)`` -> ``(B, S*k, H)`` cut to ``steps``: per-step outputs after a :class:`Patch`.

    ``causal=True`` shifts the patches by one, so the outputs of a patch never depend on its own
    (later) input steps; put a ``Dense(k * H)`` before it to give each of the ``k`` steps its own
    features."""

    uses_lengths = True

    def __init__(self, size: int, steps: int | None = None, causal: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.size = check_positive_int("size", size)
        self.steps = None if steps is None else check_positive_int("steps", steps)
        self.causal = bool(causal)

    def forward(self, x: torch.Tensor, mask=None, lengths=None) -> torch.Tensor:
        _check_3d(self.name, x)
        b, s, kh = x.shape
        if kh % self.size:
            raise InputError(f"{self.name} input: expected a feature size divisible by size={self.size}, "
                             f"got {kh} (put a Dense layer with a multiple of {self.size} units before it)")
        if self.causal:
            x = torch.cat([x.new_zeros(b, 1, kh), x[:, :-1]], dim=1)
        out = x.reshape(b, s * self.size, kh // self.size)
        return out if self.steps is None else out[:, :self.steps]

    def output_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        """``len * k`` (at most ``steps``)."""
        if lengths is None:
            return None
        out = lengths * self.size
        return out if self.steps is None else out.clamp(max=self.steps)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "steps": self.steps, "causal": self.causal}


class GlobalAveragePooling1D(Layer):
    """The mean over the valid time steps: ``(B, T, H)`` -> ``(B, H)`` (Keras's name, mask-aware).

    A readout over all steps: each step's output has a direct path to the loss, which helps when
    the information sits early in a long sequence."""

    uses_lengths = True
    pools_time = True

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)

    def forward(self, x: torch.Tensor, mask=None, lengths=None) -> torch.Tensor:
        _check_3d(self.name, x)
        lengths = _lengths(x, lengths)
        valid = valid_mask(lengths, x.shape[0], x.shape[1], x.device)
        if valid is None:
            return x.mean(dim=1)
        w = valid.to(x.dtype).unsqueeze(-1)
        return (x * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)

    def compute_mask(self, x, mask):
        return None

    def output_lengths(self, lengths: torch.Tensor | None) -> None:
        return None  # the time axis is gone


class SeriesNorm(Layer):
    """Per-series z-normalisation: each sequence and channel gets mean 0 and standard deviation 1
    over its valid steps (padding stays 0).  ``epsilon`` keeps a constant channel finite.
    ``difference=True`` appends the first difference of the standardised series (0 at the first
    step), itself standardised per series: ``F`` -> ``2F`` channels.

    The UCR convention for time-series classification: the shape of a series matters, not its
    offset or scale; the difference channel shows where the series rises and falls (it helped on
    small UCR sets, ``benchmarks/doctor_research/FINDINGS2.md``).  Not for tasks whose target
    depends on absolute values (e.g. the adding problem)."""

    uses_lengths = True

    def __init__(self, epsilon: float = 1e-8, difference: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0 \
                or not math.isfinite(epsilon):
            raise ValueError(f"epsilon: expected a positive number, got {epsilon!r}")
        if not isinstance(difference, bool):
            raise ValueError(f"difference: expected true or false, got {difference!r}")
        self.epsilon, self.difference = float(epsilon), difference

    def _standardise(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        n = w.sum(dim=1, keepdim=True).clamp_min(1.0)
        mean = (x * w).sum(dim=1, keepdim=True) / n
        var = (((x - mean) * w) ** 2).sum(dim=1, keepdim=True) / n
        return (x - mean) / torch.sqrt(var + self.epsilon) * w

    def forward(self, x: torch.Tensor, mask=None, lengths=None) -> torch.Tensor:
        _check_3d(self.name, x)
        lengths = _lengths(x, lengths)
        valid = valid_mask(lengths, x.shape[0], x.shape[1], x.device)
        w = torch.ones_like(x[..., :1]) if valid is None else valid.to(x.dtype).unsqueeze(-1)
        z = self._standardise(x, w)
        if not self.difference:
            return z
        d = torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:] - z[:, :-1]], dim=1) * w
        return torch.cat([z, self._standardise(d, w)], dim=-1)

    def output_lengths(self, lengths: torch.Tensor | None) -> torch.Tensor | None:
        return lengths

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon, "difference": self.difference}


def crop_stretch(x: torch.Tensor, starts: torch.Tensor, width: int) -> torch.Tensor:
    """Series ``i``'s window ``[starts[i], starts[i] + width)`` stretched back to ``T`` steps by linear
    interpolation: ``(B, T, F)`` -> ``(B, T, F)``."""
    _check_3d("crop_stretch", x)
    steps = x.shape[1]
    pos = starts.to(x.device, x.dtype).unsqueeze(1) + torch.linspace(0, width - 1, steps, dtype=x.dtype,
                                                                       device=x.device).unsqueeze(0)
    lo = pos.floor().long().clamp(0, steps - 1)
    hi = (lo + 1).clamp(max=steps - 1)
    frac = (pos - lo.to(x.dtype)).unsqueeze(-1)
    idx = lambda i: i.unsqueeze(-1).expand(-1, -1, x.shape[2])  # noqa: E731
    return (1 - frac) * x.gather(1, idx(lo)) + frac * x.gather(1, idx(hi))


def crop_width(steps: int, crop: float) -> int:
    """The window of a ``crop`` fraction of ``steps`` (at least 2 steps)."""
    return max(2, min(steps, int(round(crop * steps))))


def crop_views(x: torch.Tensor, views: int, crop: float) -> list[torch.Tensor]:
    """The series itself and ``views`` windows of ``crop`` of its steps at evenly spaced starts, each
    stretched back to ``T`` (for averaging predictions over views)."""
    if views <= 0:
        return [x]
    steps = x.shape[1]
    w = crop_width(steps, crop)
    starts = torch.linspace(0, steps - w, views).round().long()
    return [x] + [crop_stretch(x, torch.full((x.shape[0],), int(s)), w) for s in starts]
