"""``GradientReport``: what one backward pass says about gradient flow, plus verdict and remedies."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..run.files import clean as _jsonable
from . import detectors
from .plots import plot_report


def _fmt(v: float | None, spec: str = ".3g") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


@dataclass
class GradientReport:
    """Gradient health of a model on one batch (from :func:`lstmlab.diagnose` or a
    :class:`GradientMonitor` sample).

    Keys of the per-direction dicts are ``"<layer>/forward"`` / ``"<layer>/backward"``.

    * ``per_step[name]["dL_dh"]``, ``["dL_dc"]``: ``||dL/dh_t||``, ``||dL/dc_t||`` (norm over batch
      and units) on the original time axis, numpy ``(T,)``; ``dL_dc`` is None for GRU / SimpleRNN.
    * ``last_step``: the same for the loss of the sequence's end alone (filled when the loss reads
      every step, i.e. 3-D output; empty otherwise, where ``per_step`` already is that profile).
    * ``decay[name]``: :func:`detectors.decay_stats` of the ``dL/dh`` profile the verdict used
      (``log10_ratio`` = log10 ||dL/dh_1|| / ||dL/dh_T||, ``rate`` per step back, ...), ``cell``:
      the same for ``dL/dc`` (LSTM), ``effective``: the ratio the verdict used, ``verdict`` and
      ``profile`` ("last_step" or "all_steps").
    * ``per_gate[name][gate]``: share of saturated units; ``per_gate_step`` the same per step.
    * ``param_norms`` / ``grad_norms``: per layer (direction) and gate block (``W_i, W_f, W_c,
      W_o``; GRU ``W_r, W_z, W_n``; SimpleRNN ``W_h``; each block is ``[W_ih | W_hh]`` rows of
      that gate), plus ``"model"`` with the global norms.
    * ``nonfinite``: ``{"layer", "step", "tensor"}`` of the first NaN/Inf, or None.
    """

    verdict: str
    per_step: dict[str, dict[str, np.ndarray | None]]
    decay: dict[str, dict[str, Any]]
    per_gate: dict[str, dict[str, float]]
    per_gate_step: dict[str, dict[str, np.ndarray]]
    param_norms: dict[str, dict[str, float]]
    grad_norms: dict[str, dict[str, float]]
    remedies: list[str]
    reasons: list[str] = field(default_factory=list)
    last_step: dict[str, dict[str, np.ndarray | None]] = field(default_factory=dict)
    nonfinite: dict | None = None
    loss: float | None = None
    layers: dict[str, dict] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=lambda: dict(detectors.THRESHOLDS))
    step: int | None = None
    source: str = "diagnose"

    # --- access -------------------------------------------------------------------------------
    def profile(self, name: str) -> np.ndarray | None:
        """The ``||dL/dh_t||`` profile the verdict of direction ``name`` was computed on."""
        if name in self.last_step and self.last_step[name].get("dL_dh") is not None:
            return self.last_step[name]["dL_dh"]
        return self.per_step[name]["dL_dh"]

    @property
    def grad_norm(self) -> float | None:
        return self.grad_norms.get("model", {}).get("total")

    @property
    def param_norm(self) -> float | None:
        return self.param_norms.get("model", {}).get("total")

    def worst_decay(self) -> float | None:
        """The log10 ratio that drives the verdict (``decay[name]["effective"]``): the largest when
        exploding, else the smallest."""
        vals = [d.get("effective", d.get("log10_ratio")) for d in self.decay.values()]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        return max(vals) if self.verdict == "exploding" else min(vals)

    # --- output -------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Flat scalars for ``history.records`` and TensorBoard."""
        sat = [v for g in self.per_gate.values() for v in g.values()]
        out: dict[str, Any] = {"step": self.step, "verdict": self.verdict, "loss": self.loss,
                               "decay": self.worst_decay(), "grad_norm": self.grad_norm,
                               "param_norm": self.param_norm,
                               "saturation": max(sat) if sat else None}
        for name, d in self.decay.items():
            out[f"decay/{name}"] = d.get("effective", d.get("log10_ratio"))
        return _jsonable(out)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-serialisable (arrays as lists, NaN/Inf as None)."""
        return _jsonable({
            "verdict": self.verdict, "step": self.step, "source": self.source, "loss": self.loss,
            "per_step": self.per_step, "last_step": self.last_step, "decay": self.decay,
            "per_gate": self.per_gate, "per_gate_step": self.per_gate_step,
            "param_norms": self.param_norms, "grad_norms": self.grad_norms,
            "nonfinite": self.nonfinite, "remedies": self.remedies, "reasons": self.reasons,
            "layers": self.layers, "thresholds": self.thresholds})

    def explain(self) -> str:
        """The verdict with the reasoning behind it and what to change."""
        lines = [f"verdict: {self.verdict}"]
        lines += [f"  - {r}" for r in self.reasons]
        lines.append(f"thresholds: vanishing if ||dL/dh_first|| / ||dL/dh_last|| < "
                     f"{self.thresholds['vanishing_ratio']:g}, exploding if > "
                     f"{self.thresholds['exploding_ratio']:g} or any value is NaN/Inf "
                     "(in each layer's processing order; for an LSTM the larger of the dL/dh and dL/dc "
                     "ratios counts)")
        if self.remedies:
            lines.append("remedies (most effective first):")
            lines += [f"  {k}. {r}" for k, r in enumerate(self.remedies, 1)]
        else:
            lines.append("remedies: none needed")
        return "\n".join(lines)

    def table(self) -> str:
        """A printable table: decay per direction, then norms per layer and gate block."""
        head = ("direction", "cell", "T", "|dL/dh_1|", "|dL/dh_T|", "log10 h", "log10 c", "per step",
                "sat max", "verdict")
        rows = [head]
        for name, d in self.decay.items():
            info = self.layers.get(name, {})
            gates = self.per_gate.get(name, {})
            sat = max(gates.items(), key=lambda kv: kv[1]) if gates else None
            rows.append((name, str(info.get("cell", "?")), str(d.get("steps", "")), _fmt(d.get("first")),
                         _fmt(d.get("last")), _fmt(d.get("log10_ratio"), "+.2f"),
                         _fmt((d.get("cell") or {}).get("log10_ratio"), "+.2f"), _fmt(d.get("rate"), "+.3f"),
                         f"{sat[1]:.2f} ({sat[0]})" if sat else "-", d.get("verdict", "")))
        out = _grid(rows)
        rows = [("layer / block", "param norm", "grad norm", "grad/param")]
        for lname, blocks in self.param_norms.items():
            grads = self.grad_norms.get(lname, {})
            for b, v in blocks.items():
                if b.endswith("sigma_max"):
                    continue
                g = grads.get(b)
                ratio = (g / v) if (g is not None and v and math.isfinite(v) and v > 0) else None
                rows.append((f"{lname}:{b}", _fmt(v), _fmt(g), _fmt(ratio)))
        out += "\n\n" + _grid(rows)
        if self.nonfinite:
            nf = self.nonfinite
            out += f"\n\nfirst non-finite value: layer={nf.get('layer')} step={nf.get('step')} " \
                   f"tensor={nf.get('tensor')}"
        return out

    def plot(self, path=None):
        """Figure: ``||dL/dh_t||`` vs t (log scale) per direction and a gate-saturation heat map.

        Saves to ``path`` (PNG or SVG by extension) when given; returns the matplotlib Figure.
        """
        return plot_report(self, path)

    def __str__(self) -> str:
        return self.explain()


def _grid(rows: list[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
