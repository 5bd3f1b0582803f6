"""``diagnose(model, x, y)``: one forward/backward with taps on, turned into a GradientReport.

The numbers come from the engines' per-step taps (:mod:`lstmlab.engine.taps`); this module only
reduces them, adds parameter / gradient norms, finds non-finite values and applies the
detectors' thresholds.  :func:`build_report` is shared with :class:`GradientMonitor`, which calls
it on the taps of a training step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import cells
from ..engine.taps import StepTaps
from ..layers import Bidirectional, RNNLayer
from ..validation import InputError, as_tensor, check_lengths
from . import detectors, remedies
from .lossfn import LossFn
from .report import GradientReport


@dataclass
class Direction:
    """One recurrent layer direction: its report name, the layer that runs it, time order."""

    name: str
    layer: RNNLayer
    reverse: bool


def directions(model: nn.Module) -> list[Direction]:
    """Every recurrent layer direction of ``model`` in order: ``lstm/forward``,
    ``bidirectional/forward``, ``bidirectional/backward``, ..."""
    inside: set[int] = set()
    for m in model.modules():
        if isinstance(m, Bidirectional):
            inside.update({id(m.forward_layer), id(m.backward_layer)})
    out: list[Direction] = []
    used: set[str] = set()

    def add(name: str, layer: RNNLayer) -> None:
        base, k = name, 1
        while name in used:
            head, tail = base.rsplit("/", 1)
            name = f"{head}_{k}/{tail}"
            k += 1
        used.add(name)
        out.append(Direction(name, layer, bool(layer.go_backwards)))

    for m in model.modules():
        if isinstance(m, Bidirectional):
            add(f"{m.name}/forward", m.forward_layer)
            add(f"{m.name}/backward", m.backward_layer)
        elif isinstance(m, RNNLayer) and id(m) not in inside:
            add(f"{m.name}/{'backward' if m.go_backwards else 'forward'}", m)
    return out


def layer_taps(layer: RNNLayer) -> StepTaps | None:
    """The finalized taps of the layer's last forward/backward, or None when none were recorded."""
    taps = getattr(layer, "last_taps", None) or {}
    if not taps:
        return None
    t = taps.get("forward") if len(taps) > 1 else next(iter(taps.values()))
    return None if t is None else t.finalize()


def _norms(sq: torch.Tensor | None) -> np.ndarray | None:
    if sq is None:
        return None
    return torch.sqrt(sq.detach().to(torch.float64).sum(1)).cpu().numpy()


def _saturation(taps: StepTaps,
                lengths: torch.Tensor | None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    overall: dict[str, float] = {}
    steps: dict[str, np.ndarray] = {}
    units = max(int(taps.units), 1)
    for gate, sat in taps.saturated.items():
        s = sat.detach().to(torch.float64).cpu()
        n_t, n_b = s.shape
        if lengths is None:
            valid = torch.ones(n_t, n_b, dtype=torch.float64)
        else:
            valid = (torch.arange(n_t).unsqueeze(1) < lengths.cpu().unsqueeze(0)).to(torch.float64)
        per = s.sum(1) / (units * valid.sum(1)).clamp_min(1)
        steps[gate] = per.numpy()
        overall[gate] = float(s.sum() / (units * valid.sum()).clamp_min(1))
    return overall, steps


def _norm(tensors: list[torch.Tensor | None]) -> float | None:
    ts = [t.detach() for t in tensors if t is not None]
    if not ts:
        return None
    return float(torch.sqrt(sum(t.to(torch.float64).pow(2).sum() for t in ts)))


def _rnn_norms(layer: RNNLayer, grads: bool) -> dict[str, float]:
    get = (lambda p: p.grad) if grads else (lambda p: p)
    if not layer.built:
        return {}
    w_ih, w_hh = get(layer.weight_ih), get(layer.weight_hh)
    d: dict[str, float | None] = {"total": _norm([get(p) for p in layer.parameters()])}
    d["weight_ih"], d["weight_hh"] = _norm([w_ih]), _norm([w_hh])
    if layer.use_bias:
        d["bias"] = _norm([get(layer.bias_ih), get(layer.bias_hh)])
    if w_ih is not None and w_hh is not None:
        for seed_name, sl in zip(layer.cell_spec.seed_names, layer.gate_blocks().values(), strict=True):
            d[seed_name] = _norm([w_ih[sl], w_hh[sl]])
    if not grads and w_hh is not None and bool(torch.isfinite(w_hh).all()):
        d["weight_hh_sigma_max"] = float(torch.linalg.matrix_norm(w_hh.detach().double(), 2))
    return {k: v for k, v in d.items() if v is not None}


def _named_units(model: nn.Module, dirs: list[Direction]) -> list[tuple[str, nn.Module, RNNLayer | None]]:
    """(name, module, rnn layer or None) for every part with parameters, in order."""
    by_layer = {id(d.layer): d for d in dirs}
    out: list[tuple[str, nn.Module, RNNLayer | None]] = [(d.name, d.layer, d.layer) for d in dirs]
    seen = {id(d.layer) for d in dirs}
    tops = list(model.layers) if hasattr(model, "layers") and isinstance(model.layers, nn.ModuleList) \
        else [m for m in model.children()]
    for k, m in enumerate(tops):
        if id(m) in by_layer or isinstance(m, Bidirectional) or isinstance(m, RNNLayer):
            continue
        if any(True for _ in m.parameters()):
            out.append((getattr(m, "name", f"{k}:{type(m).__name__}"), m, None))
            seen.add(id(m))
    return out


def _all_norms(model: nn.Module, dirs: list[Direction]) -> tuple[dict, dict]:
    params: dict[str, dict[str, float]] = {}
    grads: dict[str, dict[str, float]] = {}
    for name, m, rnn in _named_units(model, dirs):
        if rnn is not None:
            params[name], grads[name] = _rnn_norms(rnn, False), _rnn_norms(rnn, True)
        else:
            params[name] = {"total": _norm(list(m.parameters()))}
            grads[name] = {"total": _norm([p.grad for p in m.parameters()])}
            for pn, p in m.named_parameters():
                params[name][pn] = _norm([p])
                if p.grad is not None:
                    grads[name][pn] = _norm([p.grad])
            params[name] = {k: v for k, v in params[name].items() if v is not None}
            grads[name] = {k: v for k, v in grads[name].items() if v is not None}
    ps = list(model.parameters())
    params["model"] = {"total": _norm(ps) or 0.0}
    grads["model"] = {"total": _norm([p.grad for p in ps]) or 0.0}
    return params, grads


def _first_nonfinite_param(model: nn.Module, dirs: list[Direction], grads: bool) -> dict | None:
    for name, m, _ in _named_units(model, dirs):
        for pn, p in m.named_parameters():
            t = p.grad if grads else p
            if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                return {"layer": name, "step": None, "tensor": f"{pn}.grad" if grads else pn}
    return None


def _first_nonfinite_tap(per_step: dict, dirs: list[Direction]) -> dict | None:
    """The non-finite tap closest to the loss: top layer first, last processed step first."""
    for d in reversed(dirs):
        prof = per_step.get(d.name, {})
        steps = {}
        for key in ("dL_dh", "dL_dc"):
            v = prof.get(key)
            if v is None:
                continue
            bad = np.nonzero(~np.isfinite(v))[0]
            if len(bad):
                steps[key] = int(bad.min() if d.reverse else bad.max())
        if steps:
            # dL/dh_t is computed before dL/dc_t in the backward pass
            key = min(steps, key=lambda k: (steps[k] if d.reverse else -steps[k], k != "dL_dh"))
            return {"layer": d.name, "step": steps[key], "tensor": key.replace("_", "/")}
    return None


def layer_info(d: Direction, steps: int) -> dict:
    layer = d.layer
    return {"cell": layer.cell, "units": layer.units, "steps": steps, "reverse": d.reverse,
            "activation": layer.activation, "recurrent_initializer": layer.recurrent_initializer,
            "unit_forget_bias": bool(getattr(layer, "unit_forget_bias", False)) and layer.cell_spec.chrono,
            "bias_initializer": layer.bias_initializer,
            "layer_norm": bool(getattr(layer, "layer_norm", False)),
            "engine": layer.engine}


def _reason(name: str, st: dict, verdict: str, profile: str) -> str:
    steps = st.get("steps", 0)
    src = " (profile of the end step's loss alone)" if profile == "last_step" else ""
    if not st.get("finite", True):
        return f"{name}: the gradient through time contains NaN/Inf -> exploding"
    r = st.get("log10_ratio")
    if r is None:
        return f"{name}: no gradient reached this layer"
    rate = st.get("rate") or 0.0
    hz = st.get("horizon")
    per = f"{10 ** rate:.3g}x per step back" + (f", tenfold every {hz:.0f} steps" if hz and math.isfinite(hz)
                                                else "")
    low, high = detectors.VANISHING_RATIO, detectors.EXPLODING_RATIO
    text = (f"{name}: ||dL/dh|| goes from {st['last']:.3g} at the last processed step to "
            f"{st['first']:.3g} at the first over {steps} steps: ratio 10^{r:+.1f}, fitted {per}{src}")
    cell = st.get("cell")
    if cell and cell.get("log10_ratio") is not None:
        text += f"; the cell state's ||dL/dc|| ratio is 10^{cell['log10_ratio']:+.1f}"
    eff = st.get("effective")
    if verdict == "vanishing":
        text += f"; effective ratio {10 ** eff:.2g} < {low:g}" if eff is not None else ""
    elif verdict == "exploding":
        text += f"; effective ratio {10 ** eff:.2g} > {high:g}" if eff is not None else ""
    else:
        text += f"; within [{low:g}, {high:g}]"
    return text + f" -> {verdict}"


def build_report(model: nn.Module, *, loss: float | None, last_step: dict | None = None,
                 forward_nonfinite: dict | None = None, step: int | None = None,
                 source: str = "diagnose") -> GradientReport:
    """A GradientReport from the taps and ``.grad`` that the last backward pass left in ``model``."""
    dirs = directions(model)
    per_step: dict = {}
    per_gate: dict = {}
    per_gate_step: dict = {}
    layers: dict = {}
    for d in dirs:
        taps = layer_taps(d.layer)
        dh = dc = None
        if taps is not None:
            dh, dc = _norms(taps.grad_h_sq), _norms(taps.grad_c_sq)
            lengths = getattr(d.layer, "_last_lengths", None)
            per_gate[d.name], per_gate_step[d.name] = _saturation(taps, lengths)
        per_step[d.name] = {"dL_dh": dh, "dL_dc": dc}
        layers[d.name] = layer_info(d, len(dh) if dh is not None else 0)
    params, grads = _all_norms(model, dirs)
    nonfinite = (_first_nonfinite_param(model, dirs, grads=False) or forward_nonfinite
                 or (None if loss is None or math.isfinite(loss) else
                     {"layer": None, "step": None, "tensor": "loss"})
                 or _first_nonfinite_tap(per_step, dirs) or _first_nonfinite_param(model, dirs, grads=True))
    report = GradientReport(verdict="healthy", per_step=per_step, decay={}, per_gate=per_gate,
                            per_gate_step=per_gate_step, param_norms=params, grad_norms=grads, remedies=[],
                            last_step=dict(last_step or {}), nonfinite=nonfinite, loss=loss, layers=layers,
                            step=step, source=source)
    judge(report, model, dirs)
    return report


def judge(report: GradientReport, model: nn.Module | None, dirs: list[Direction]) -> None:
    """Fill ``decay``, ``verdict``, ``reasons`` and ``remedies`` of ``report`` from its profiles."""
    verdicts: dict[str, str] = {}
    reasons: list[str] = []
    extra: list[str] = []
    report.decay = {}
    for d in dirs:
        full = report.per_step.get(d.name, {})
        dh, dc = full.get("dL_dh"), full.get("dL_dc")
        ls = report.last_step.get(d.name, {})
        use_last = ls.get("dL_dh") is not None
        src = ls if use_last else full
        prof = src.get("dL_dh")
        st_c = detectors.decay_stats(src["dL_dc"], d.reverse) if src.get("dL_dc") is not None else None
        st = detectors.combine(detectors.decay_stats(prof, d.reverse), st_c)
        if any(v is not None and not np.all(np.isfinite(v)) for v in (dh, dc)):
            st["finite"] = False
        v = detectors.direction_verdict(st) if prof is not None else "healthy"
        verdicts[d.name] = v
        profile = "last_step" if use_last else "all_steps"
        report.decay[d.name] = {**st, "verdict": v, "profile": profile}
        if dh is None and not use_last:
            reasons.append(f"{d.name}: no gradient taps were recorded (was the layer run with taps on, "
                           "and did the loss reach it?)")
        else:
            reasons.append(_reason(d.name, st, v, profile))
        for gate, frac in report.per_gate.get(d.name, {}).items():
            if frac >= detectors.SATURATION_HIGH:
                kind = cells.SATURATION_RULES[d.layer.cell_spec.gate_kind(gate, d.layer.activation)]
                extra.append(f"{d.name}: {frac:.0%} of gate '{gate}' values are saturated ({kind}); "
                             "their derivative is < 0.01, so little gradient passes through them")
    nf = report.nonfinite
    if nf is not None:
        extra.append(f"non-finite value first seen at layer={nf['layer']}, step={nf['step']}, "
                     f"tensor={nf['tensor']}")
    report.verdict = detectors.overall_verdict(list(verdicts.values()), nf is not None)
    report.reasons = reasons + extra
    sat = max([v for g in report.per_gate.values() for v in g.values()] + [0.0])
    clipped = model is not None and any(getattr(model, a, None) is not None
                                        for a in ("clipnorm", "clipvalue", "global_clipnorm"))
    report.remedies = remedies.suggest(report.verdict, report.layers, verdicts, saturation=sat,
                                       clipped=clipped, nonfinite=nf is not None,
                                       saturation_high=detectors.SATURATION_HIGH)


# ---------------------------------------------------------------------------------------------
# diagnose
# ---------------------------------------------------------------------------------------------
class _Saved:
    """Everything diagnose touches, restored on exit: mode, taps flags, grads, states, engines."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.training = model.training
        self.rnns = [m for m in model.modules() if isinstance(m, RNNLayer)]
        self.flags = [(r.record_taps, r.engine, r._states) for r in self.rnns]
        self.grads = [(p, None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()]

    def reset_states(self) -> None:
        for r, (_, _, states) in zip(self.rnns, self.flags, strict=True):
            r._states = states

    def restore(self) -> None:
        for r, (flag, engine, states) in zip(self.rnns, self.flags, strict=True):
            r.record_taps, r.engine, r._states = flag, engine, states
        for p, g in self.grads:
            p.grad = g
        self.model.train(self.training)


def _prepare(model: nn.Module, x, y, lengths, batch_size):
    xt = as_tensor("x", x)
    if xt.numel() == 0 or xt.dim() < 2:
        raise InputError("x: expected a non-empty (batch, time, features) array, "
                         f"got shape {tuple(xt.shape)}")
    yt = as_tensor("y", y) if y is not None else None
    if yt is not None and yt.shape[0] != xt.shape[0]:
        raise InputError(f"y: expected {xt.shape[0]} rows to match x, got {yt.shape[0]}")
    if lengths is not None:
        lengths = check_lengths("lengths", lengths, xt.shape[0], xt.shape[1])
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected a positive integer, got {batch_size!r}")
        xt = xt[:batch_size]
        yt = None if yt is None else yt[:batch_size]
        lengths = None if lengths is None else lengths[:batch_size]
    if hasattr(model, "build"):
        model.build(xt, lengths)
    p = next(iter(model.parameters()), None)
    if p is not None:
        if xt.is_floating_point() and xt.dtype != p.dtype:
            xt = xt.to(p.dtype)
        xt = xt.to(p.device)
        yt = None if yt is None else yt.to(p.device)
    return xt, yt, lengths


def _forward_hooks(model: nn.Module, dirs: list[Direction], found: list) -> list:
    """Forward hooks that remember the first layer output holding NaN/Inf (layer, step)."""
    named: list[tuple[str, nn.Module]] = [(d.name, d.layer) for d in dirs]
    named += [(n, m) for n, m, rnn in _named_units(model, dirs) if rnn is None]

    def make(name: str, reverse: bool) -> Callable:
        def hook(_mod, _inp, out) -> None:
            if found:
                return
            outs = out if isinstance(out, (list, tuple)) else [out]
            for o in outs:
                if isinstance(o, torch.Tensor) and o.is_floating_point() \
                        and not bool(torch.isfinite(o).all()):
                    step = None
                    if o.dim() == 3:
                        bad = (~torch.isfinite(o)).any(-1).any(0).nonzero()[:, 0]
                        step = int(bad.max() if reverse else bad.min())
                    found.append({"layer": name, "step": step, "tensor": "output"})
                    return
        return hook

    rev = {d.name: d.reverse for d in dirs}
    return [m.register_forward_hook(make(n, rev.get(n, False))) for n, m in named]


def diagnose(model: nn.Module, x, y, loss=None, lengths=None,
             batch_size: int | None = None) -> GradientReport:
    """Gradient health of ``model`` on one batch: per-step ``||dL/dh_t||``, decay, gate
    saturation, norms, first non-finite value, verdict and remedies.

    One forward/backward with taps on; nothing is updated: weights, gradients (``.grad`` is put
    back as it was), optimizer, taps flags, stateful states and train/eval mode are restored.
    The model runs in eval mode, so dropout and recurrent dropout are off (the gradient of the
    deterministic network).  ``loss``: None (the compiled loss), a loss name or a callable
    ``(output, y) -> scalar``; weight regularization terms are added as in training (they only
    change the parameter gradients).  ``batch_size``: use only the first rows of ``x``.

    When the output has a time axis (the loss reads every step), a second forward/backward
    through only the end step's loss gives the long-range profile (``report.last_step``) that
    the verdict uses: the last step for forward layers, the first position for backwards ones.
    Layers with ``engine="native"`` run on ``"auto"`` here (native kernels record no taps).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an lstmlab Sequential or torch module, got {type(model).__name__}")
    dirs = directions(model)
    if not dirs:
        raise ValueError("diagnose: the model has no recurrent layer (LSTM, GRU, SimpleRNN, Bidirectional)")
    xb, yb, lb = _prepare(model, x, y, lengths, batch_size)
    lossf = LossFn(model, loss)
    if yb is None and lossf.name is not None:
        raise InputError(f"y: expected targets for the {lossf.name} loss, got None")
    saved = _Saved(model)
    try:
        model.eval()
        for r in saved.rnns:
            r.record_taps = True
            if r.engine == "native":
                r.engine = "auto"
        with torch.enable_grad():
            for p in model.parameters():
                p.grad = None
            found: list = []
            hooks = _forward_hooks(model, dirs, found)
            try:
                value, seen = lossf(xb, yb, lb)
            except InputError:
                if not found:
                    raise
                # a layer refused the NaN/Inf that an earlier layer produced: report where it began
                return build_report(model, loss=math.nan, forward_nonfinite=found[0])
            finally:
                for h in hooks:
                    h.remove()
            total = value
            reg = model.regularization_loss() if hasattr(model, "regularization_loss") else None
            if reg is not None:
                total = total + reg
            if total.requires_grad:
                total.backward()
            report_loss = float(value.detach())
            full = build_report(model, loss=report_loss, forward_nonfinite=found[0] if found else None)
            last_step = _end_profiles(model, dirs, lossf, xb, yb, lb, saved) if lossf.has_time(seen) else {}
        if last_step:
            full.last_step = last_step
            judge(full, model, dirs)
        return full
    finally:
        saved.restore()


def _end_profiles(model: nn.Module, dirs: list[Direction], lossf: LossFn, xb: torch.Tensor, yb: torch.Tensor,
                  lb: torch.Tensor | None, saved: _Saved) -> dict:
    """Profiles of the loss at the end of the sequence alone (one extra forward/backward per end).

    A fresh forward rather than a second ``backward(retain_graph=True)`` on the first graph:
    ``StepTaps.finalize()`` empties ``pending``, so hook-based engines (loop, and any reversed
    direction) could not re-assemble their taps after a second backward through the same graph.
    """
    result: dict = {}
    batch = xb.shape[0]
    ends = {"last": [d for d in dirs if not d.reverse], "first": [d for d in dirs if d.reverse]}
    for which, group in ends.items():
        if not group:
            continue
        saved.reset_states()
        for p in model.parameters():
            p.grad = None
        _, seen = lossf(xb, yb, lb)
        if not lossf.has_time(seen):
            return {}
        steps = seen[0].shape[1]
        if which == "first":
            idx = torch.zeros(batch, dtype=torch.long)
        else:
            idx = (lb - 1) if lb is not None else torch.full((batch,), steps - 1, dtype=torch.long)
        end = lossf.end(seen, idx)
        if end is None or not end.requires_grad:
            return {}
        end.backward()
        for d in group:
            taps = layer_taps(d.layer)
            if taps is not None:
                result[d.name] = {"dL_dh": _norms(taps.grad_h_sq), "dL_dc": _norms(taps.grad_c_sq)}
    return result
