"""``Ensemble``: several independently initialised copies of a stack of layers in one model.

The variance remedy for small training sets (``benchmarks/doctor_research/FINDINGS2.md``: tens of
series, where one model's test accuracy swings with its initialisation):

* **members**: ``members`` copies of ``layers`` (the last one is the output layer), each with its
  own initial weights;
* **training**: each member sees its own window slices (Le Guennec et al. 2016): every series is,
  with probability ``augment``, replaced by a random window of ``crop`` of its steps stretched back
  to full length; the model's loss is the *mean of the members' losses*, so each member learns as
  if it were trained alone (averaging the members' outputs first would let them lean on one another);
* **prediction**: the members' outputs (probabilities for a softmax/sigmoid head) averaged over the
  series itself and ``views`` windows of ``crop`` of its steps at evenly spaced starts.

Inside :class:`~lstmlab.Sequential` an Ensemble is the last layer, or the only one::

    ll.Sequential([ll.Ensemble([ll.SeriesNorm(difference=True), ll.Patch(6), ll.LSTM(64),
                                ll.Dense(3, activation="softmax")], members=4)])

In TOML: ``[model] ensemble = {members = 4}`` wraps ``model.layers``.  Crops apply to sequences
of one length (no ``lengths``) and per-sequence outputs: with per-step targets or padded batches
set ``augment = 0`` and ``views = 0`` (then the members differ by their initial weights only).
The GradientMonitor and ``ll.diagnose`` see every member's recurrent layers; ``explain`` shows
the attention weights of the last member on the last view; ``to_torch`` refuses an Ensemble.
"""

from __future__ import annotations

import math

import torch

from .layers import Layer, check_positive_int, deserialize, register_layer, serialize
from .layers.timeaxis import crop_stretch, crop_views, crop_width
from .model import Sequential

__all__ = ["Ensemble", "MAX_MEMBERS"]

MAX_MEMBERS = 64


def _fraction(arg: str, value, low_open: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and (0 < value <= 1 if low_open else 0 <= value <= 1)
    if not ok:
        raise ValueError(f"{arg}: expected a number in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return float(value)


class Ensemble(Layer):
    """``members`` copies of ``layers`` trained side by side, their outputs averaged (see the module doc)."""

    uses_lengths = True
    takes_logits = True   # Sequential asks the last layer for logits under a cross-entropy loss

    def __init__(self, layers: list, members: int = 4, augment: float = 0.9, crop: float = 0.9, views: int = 5,
                 name: str | None = None) -> None:
        super().__init__(name)
        if not isinstance(layers, (list, tuple)) or not layers:
            raise ValueError(f"layers: expected a non-empty list of layers, got {layers!r:.80}")
        specs = [layer if isinstance(layer, dict) else serialize(layer) for layer in layers]
        self.n_members = check_positive_int("members", members)
        if self.n_members > MAX_MEMBERS:
            raise ValueError(f"members: expected at most {MAX_MEMBERS}, got {members}")
        self.augment = _fraction("augment", augment, low_open=False)
        self.crop = _fraction("crop", crop, low_open=True)
        if isinstance(views, bool) or not isinstance(views, int) or views < 0:
            raise ValueError(f"views: expected a whole number >= 0, got {views!r}")
        self.views = views
        self.members = torch.nn.ModuleList(
            [Sequential([layers[i] if k == 0 and not isinstance(layers[i], dict) else deserialize(_reseed(s, k))
                         for i, s in enumerate(specs)], name=f"member_{k}") for k in range(self.n_members)])
        self._lazy_done()  # no weights of its own: the members' layers are lazy themselves
        self._per_step = False

    @property
    def head(self):
        """The output layer (of the first member): its activation decides how outputs are averaged."""
        return self.members[0].layers[-1]

    # --- forward --------------------------------------------------------------------------------
    def _cropping(self, x: torch.Tensor, lengths) -> bool:
        return x.dim() == 3 and x.is_floating_point() and x.shape[1] > 2 and (
            lengths is None or bool((torch.as_tensor(lengths) == x.shape[1]).all()))

    def _slices(self, x: torch.Tensor) -> torch.Tensor:
        """Each series, with probability ``augment``, as a random window stretched back (training)."""
        b, steps = x.shape[0], x.shape[1]
        w = crop_width(steps, self.crop)
        pick = torch.rand(b) < self.augment
        if w >= steps or not bool(pick.any()):
            return x
        starts = torch.randint(0, steps - w + 1, (b,))
        return torch.where(pick.to(x.device).view(b, 1, 1), crop_stretch(x, starts, w), x)

    def _member_outputs(self, x: torch.Tensor, lengths, logits: bool) -> torch.Tensor:
        crop = self.augment > 0 and self._cropping(x, lengths)
        outs = [m(self._slices(x) if crop else x, lengths=lengths, logits=logits) for m in self.members]
        return torch.stack(outs)

    def _average(self, x: torch.Tensor, lengths, logits: bool) -> torch.Tensor:
        """Mean over members and views; probabilities for a softmax/sigmoid head (log-probabilities
        or log-odds when ``logits``), the plain mean otherwise."""
        act = getattr(self.head, "activation", None)
        views = crop_views(x, self.views, self.crop) if self.views and self._cropping(x, lengths) else [x]
        squash = act in ("softmax", "sigmoid")
        total = None
        for v in views:
            for m in self.members:
                out = m(v, lengths=lengths, logits=squash)
                if squash:
                    out = torch.softmax(out, -1) if act == "softmax" else torch.sigmoid(out)
                total = out if total is None else total + out
        mean = total / (len(views) * len(self.members))
        if not (logits and squash):
            return mean
        tiny = torch.finfo(mean.dtype).tiny
        return mean.clamp_min(tiny).log() if act == "softmax" else torch.logit(mean, eps=1e-7)

    def forward(self, x: torch.Tensor, mask=None, lengths=None, logits: bool = False) -> torch.Tensor:
        """Training: the members' outputs stacked, ``(members, B, ...)`` (the model's loss averages
        their losses); otherwise the averaged output ``(B, ...)``."""
        if self.training and torch.is_grad_enabled():
            out = self._member_outputs(x, lengths, logits)
            self._per_step = out.dim() == 4
        else:
            out = self._average(x, lengths, logits)
            self._per_step = out.dim() == 3
        if self._per_step and (self.augment > 0 or self.views > 0) and self._cropping(x, lengths):
            raise ValueError(f"{self.name}: window crops move per-step targets; set augment = 0 and views = 0 "
                             "for a model with one output per step")
        return out

    @property
    def stacked(self) -> bool:
        """Whether the last call returned the members' outputs stacked (a training step)."""
        return self.training and torch.is_grad_enabled()

    def output_lengths(self, lengths):
        return lengths if self._per_step else None

    def compute_mask(self, x, mask):
        return mask if self._per_step else None

    def regularization_loss(self):
        terms = [t for t in (m.regularization_loss() for m in self.members) if t is not None]
        return sum(terms) / len(self.members) if terms else None

    # --- config ---------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {**super().get_config(), "layers": [serialize(layer) for layer in self.members[0].layers],
                "members": self.n_members, "augment": self.augment, "crop": self.crop, "views": self.views}

    @classmethod
    def from_config(cls, config: dict) -> Ensemble:
        return cls(**dict(config))


def _reseed(spec: dict, k: int) -> dict:
    """Member ``k``'s copy of a layer spec: a layer with a fixed ``seed`` gets ``seed + k`` (the members
    must not start from the same weights)."""
    cfg = dict(spec.get("config", {}))
    if k and isinstance(cfg.get("seed"), int) and not isinstance(cfg.get("seed"), bool):
        cfg["seed"] = cfg["seed"] + k
    return {"class_name": spec["class_name"], "config": cfg}


register_layer(Ensemble)
