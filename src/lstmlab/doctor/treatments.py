"""Treatments: changes to a config that shorten or protect the gradient path, each one a small pure
function on the config dict (so every treatment is also a TOML setting a user can write by hand).

A :class:`Treatment` is a kind plus its parameters (``patch(size=8)``); :func:`apply` applies a
list of them in a fixed order (the cell first, the patch before the chrono horizon that depends on
it, the readout last).  :data:`WHEN` says in one line when each one helps (quoted by doctor.md and
docs/doctor.md).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .facts import DataFacts

__all__ = ["Treatment", "apply", "WHEN", "ORDER", "recurrent_indices", "effective_steps"]

RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")

WHEN = {
    "cell": "a SimpleRNN (or GRU) whose gradient vanishes: gated cells keep it over longer lags; "
            "IRNN (relu + identity recurrence) is the ungated alternative",
    "series_norm": "continuous series whose shape, not level or scale, carries the class (UCR-style data)",
    "difference": "continuous series to classify: the standardised first difference as more input channels "
                  "(where the series rises and falls)",
    "patch": "long sequences: k steps fed as one step of k*F features, so the gradient crosses k times "
             "fewer recurrent steps",
    "width": "the plain model learns but underfits: more units per layer",
    "depth": "the plain model learns but underfits: a second recurrent layer",
    "bidirectional": "sequence classification where evidence sits near the start: the backward layer "
                     "reaches it in few steps",
    "layer_norm": "saturated gates or exploding activations (costs several times the step time)",
    "chrono": "long lags: forget/input-gate biases drawn for memories of up to T steps (Tallec & Ollivier "
              "2018), T = the number of steps the recurrent layer sees",
    "readout": "sequence targets: a mean-pool or attention readout gives every step a direct path to the loss",
    "ensemble": "small training sets (tens to a few hundred series): members that each see their own window "
                "slices, predictions averaged over members and crops of the series (the variance of one model "
                "trained on few series, not its gradient path)",
    "clip": "exploding gradients: cap each parameter's gradient norm",
    "learning_rate": "exploding gradients or a loss that does not move: scale the learning rate",
    "tbptt": "very long per-step streams: truncated back-propagation in chunks (bounded memory and steps)",
}
ORDER = ("cell", "series_norm", "difference", "patch", "width", "depth", "bidirectional", "layer_norm", "chrono",
         "readout", "ensemble", "clip", "learning_rate", "tbptt")


@dataclass(frozen=True)
class Treatment:
    """One change: ``kind`` (a key of :data:`WHEN`) and its parameters."""

    kind: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in WHEN:
            raise ValueError(f"treatment: expected one of {', '.join(WHEN)}, got {self.kind!r}")

    def label(self) -> str:
        """``patch(8)``, ``chrono(50)``, ``readout(mean)``."""
        args = ",".join(_short(v) for v in self.params.values() if v is not None)
        return f"{self.kind}({args})" if args else self.kind

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------
# helpers on layer specs
# ---------------------------------------------------------------------------------------------
def recurrent_indices(layers: list[dict]) -> list[int]:
    """Positions of the recurrent layers (Bidirectional included)."""
    return [i for i, s in enumerate(layers) if s.get("type") in RECURRENT]


def _inner(spec: dict) -> dict:
    """The recurrent spec itself (the wrapped layer of a Bidirectional)."""
    return spec["layer"] if spec.get("type") == "Bidirectional" else spec


def _width(spec: dict) -> int:
    inner = _inner(spec)
    units = int(inner["units"])
    concat = spec.get("type") == "Bidirectional" and spec.get("merge_mode", "concat") == "concat"
    return 2 * units if concat else units


def effective_steps(layers: list[dict], index: int, steps: int) -> int:
    """The number of steps the layer at ``index`` runs: ``T`` divided (rounded up) by every Patch before it."""
    n = steps
    for s in layers[:index]:
        if s.get("type") == "Patch":
            n = math.ceil(n / int(s["size"]))
    return max(1, n)


def _need_recurrent(layers: list[dict]) -> list[int]:
    idx = recurrent_indices(layers)
    if not idx:
        raise ValueError("model.layers: the doctor needs a recurrent layer (LSTM, GRU, SimpleRNN or Bidirectional)")
    return idx


# ---------------------------------------------------------------------------------------------
# the treatments (each mutates the config it is given)
# ---------------------------------------------------------------------------------------------
_CELL_KEEP = ("units", "return_sequences", "dropout", "recurrent_dropout", "go_backwards", "seed", "name",
              "kernel_initializer", "input_size")


def _cell(cfg: dict, facts: DataFacts, to: str) -> None:
    """Replace SimpleRNN/GRU layers by ``to``: "LSTM", "GRU" or "IRNN" (relu SimpleRNN, identity init)."""
    layers = cfg["model"]["layers"]
    for i in _need_recurrent(layers):
        inner = _inner(layers[i])
        if inner["type"] == "LSTM" or (inner["type"] == to):
            continue
        new = {k: v for k, v in inner.items() if k in _CELL_KEEP}
        if to == "IRNN":
            new.update(type="SimpleRNN", activation="relu", recurrent_initializer="identity")
        else:
            new["type"] = to
        new = {"type": new.pop("type"), **new}
        if layers[i].get("type") == "Bidirectional":
            layers[i]["layer"] = new
        else:
            layers[i] = new


def _series_norm(cfg: dict, facts: DataFacts) -> None:
    layers = cfg["model"]["layers"]
    if not any(s.get("type") == "SeriesNorm" for s in layers):
        layers.insert(0, {"type": "SeriesNorm"})


def _difference(cfg: dict, facts: DataFacts) -> None:
    """``SeriesNorm(difference = true)`` first (the standardised series and its first difference)."""
    layers = cfg["model"]["layers"]
    norm = next((s for s in layers if s.get("type") == "SeriesNorm"), None)
    if norm is None:
        layers.insert(0, {"type": "SeriesNorm", "difference": True})
    else:
        norm["difference"] = True


def _ensemble(cfg: dict, facts: DataFacts, members: int = 4) -> None:
    """``[model] ensemble``: the layers become ``members`` members (window slices while training, views
    averaged when predicting; no crops for per-step targets or padded sequences)."""
    crops = not facts.per_step and not facts.variable_length
    cfg["model"]["ensemble"] = {"members": int(members), **({} if crops else {"augment": 0.0, "views": 0})}


def _patch(cfg: dict, facts: DataFacts, size: int) -> None:
    """``Patch(size)`` before the first recurrent layer; per-step targets get ``Dense(size*H)`` +
    ``Unpatch(size, steps=T)`` after the last one (causal: no output sees a later input)."""
    layers = cfg["model"]["layers"]
    idx = _need_recurrent(layers)
    if size <= 1:
        return
    if facts.per_step:
        last = idx[-1]
        layers[last + 1:last + 1] = [{"type": "Dense", "units": size * _width(layers[last]), "activation": "tanh"},
                                     {"type": "Unpatch", "size": size, "steps": facts.steps}]
    layers.insert(idx[0], {"type": "Patch", "size": int(size)})


def _scale_units(cfg: dict, facts: DataFacts, factor: float) -> None:
    layers = cfg["model"]["layers"]
    for i in _need_recurrent(layers):
        inner = _inner(layers[i])
        inner["units"] = max(1, int(round(int(inner["units"]) * factor)))


def _depth(cfg: dict, facts: DataFacts, layers_n: int = 2) -> None:
    """Stack copies of the last recurrent layer until there are ``layers_n`` recurrent layers."""
    layers = cfg["model"]["layers"]
    idx = _need_recurrent(layers)
    last = idx[-1]
    while len(recurrent_indices(layers)) < layers_n:
        below = copy.deepcopy(layers[last])
        _inner(below)["return_sequences"] = True
        _inner(below).pop("seed", None)
        layers.insert(last, below)
        last += 1


def _bidirectional(cfg: dict, facts: DataFacts) -> None:
    layers = cfg["model"]["layers"]
    for i in _need_recurrent(layers):
        if layers[i].get("type") != "Bidirectional":
            layers[i] = {"type": "Bidirectional", "layer": layers[i]}


def _layer_norm(cfg: dict, facts: DataFacts) -> None:
    layers = cfg["model"]["layers"]
    for i in _need_recurrent(layers):
        inner = _inner(layers[i])
        if inner["type"] == "LSTM":
            inner["layer_norm"] = True


def _chrono(cfg: dict, facts: DataFacts, max_len: int | None = None) -> None:
    """Chrono biases on every LSTM, horizon ``max_len`` or the steps that layer runs (after any Patch)."""
    layers = cfg["model"]["layers"]
    for i in _need_recurrent(layers):
        inner = _inner(layers[i])
        if inner["type"] != "LSTM":
            continue
        inner["bias_initializer"] = "chrono"
        inner["chrono_max_len"] = max(3, int(max_len or effective_steps(layers, i, facts.steps)))
        if layers[i].get("type") == "Bidirectional" and isinstance(layers[i].get("backward_layer"), dict):
            layers[i]["backward_layer"].update(bias_initializer="chrono", chrono_max_len=inner["chrono_max_len"])


def _readout(cfg: dict, facts: DataFacts, kind: str = "mean") -> None:
    """The last recurrent layer returns every step; a mean-pool or attention layer reads them out."""
    if kind not in ("mean", "attention"):
        raise ValueError(f"readout: expected 'mean' or 'attention', got {kind!r}")
    if facts.per_step:
        raise ValueError("readout: the data have one target per step; a pooling readout needs one per sequence")
    layers = cfg["model"]["layers"]
    last = _need_recurrent(layers)[-1]
    _inner(layers[last])["return_sequences"] = True
    layers.insert(last + 1, {"type": "GlobalAveragePooling1D"} if kind == "mean" else {"type": "Attention"})


def _clip(cfg: dict, facts: DataFacts, norm: float = 1.0) -> None:
    cfg.setdefault("train", {})["clipnorm"] = float(norm)


def _learning_rate(cfg: dict, facts: DataFacts, factor: float) -> None:
    t = cfg.setdefault("train", {})
    lr = t.get("learning_rate") or 1e-3  # the doctor's base config states the resolved rate
    t["learning_rate"] = float(f"{lr * factor:.3g}")


def _tbptt(cfg: dict, facts: DataFacts, steps: int) -> None:
    cfg.setdefault("train", {})["tbptt"] = int(steps)


_APPLY: dict[str, Callable[..., None]] = {
    "cell": _cell, "series_norm": _series_norm, "difference": _difference, "patch": _patch, "width": _scale_units,
    "depth": _depth, "bidirectional": _bidirectional, "layer_norm": _layer_norm, "chrono": _chrono,
    "readout": _readout, "ensemble": _ensemble, "clip": _clip, "learning_rate": _learning_rate, "tbptt": _tbptt,
}
_PARAM = {"cell": "to", "patch": "size", "width": "factor", "depth": "layers_n", "chrono": "max_len",
          "readout": "kind", "ensemble": "members", "clip": "norm", "learning_rate": "factor", "tbptt": "steps"}


def apply(cfg: dict, facts: DataFacts, treatments: list[Treatment] | tuple[Treatment, ...]) -> dict:
    """A new config: ``cfg`` (with explicit ``model.layers``) with the treatments applied in :data:`ORDER`."""
    out = copy.deepcopy(cfg)
    if not out.get("model", {}).get("layers"):
        raise ValueError("model.layers: the doctor treats explicit layer lists; resolve the default model first")
    for t in sorted(treatments, key=lambda t: ORDER.index(t.kind)):
        _APPLY[t.kind](out, facts, **t.params)
    return out


def treatment(kind: str, value: Any = None, **extra: Any) -> Treatment:
    """``treatment("patch", 8)`` -> ``Treatment("patch", {"size": 8})``."""
    params = dict(extra)
    if value is not None:
        params[_PARAM[kind]] = value
    return Treatment(kind, params)


__all__ += ["treatment"]
