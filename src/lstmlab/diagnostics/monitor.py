"""``GradientMonitor``: gradient health during ``fit``, from the taps of the training steps themselves."""

from __future__ import annotations

import copy
import math
import warnings

import torch

from .. import initializers
from ..callbacks import Callback
from ..layers import RNNLayer
from . import detectors, remedies
from .diagnose import build_report, directions
from .report import GradientReport

_ACTIONS = {
    "on_vanishing": ("warn", "stop", "fix", "ignore"),
    "on_exploding": ("warn", "stop", "fix", "ignore"),
    "on_nan": ("warn", "stop", "fix", "ignore"),
    "on_slow_loss": ("warn", "stop", "ignore"),
    "on_param_growth": ("warn", "stop", "fix", "ignore"),
}


def chrono_in_place(layer: RNNLayer, steps: int, seed: int = 0) -> None:
    """Set an LSTM's forget-gate biases to the chrono initialisation for ``steps`` (input gate: minus
    that), as ``bias_initializer="chrono"`` would have; the other weights stay as trained."""
    h = layer.units
    gen = torch.Generator().manual_seed(int(seed))
    bf = initializers.chrono_bias(h, max(3, int(steps)), gen).to(layer.bias_ih.dtype).to(layer.bias_ih.device)
    with torch.no_grad():
        layer.bias_ih[h:2 * h] = bf
        layer.bias_ih[0:h] = -bf
        layer.bias_hh[0:2 * h] = 0.0


class GradientWarning(UserWarning):
    """A gradient-health finding of :class:`GradientMonitor` (issued once per kind and run)."""


class GradientMonitor(Callback):
    """Watch gradient flow while training and act on what it sees.

    Every ``every`` steps the monitor switches the recurrent layers' taps on for that step only
    (other steps run at full speed, e.g. on the native kernels), builds a
    :class:`GradientReport` from the step's own backward pass, appends ``report.summary()`` to
    ``model.history.records`` and, with ``log_dir``, writes TensorBoard scalars.

    Findings and the action taken for each (``"warn"``: one warning naming the remedy, once per
    kind; ``"stop"``: ``model.stop_training = True``; ``"fix"``; ``"ignore"``):

    * ``on_vanishing`` / ``on_exploding``: the sampled step's verdict (thresholds in
      :mod:`lstmlab.diagnostics.detectors`).  ``"fix"`` for exploding switches on
      ``model.global_clipnorm = clip_to`` (1.0) and records a ``"clip"`` event.  ``"fix"`` for
      vanishing waits until the loss has plateaued (it fell by less than ``slow_loss_drop`` over
      the last ``slow_loss_steps`` steps), then moves the forget/input-gate biases of every LSTM
      direction that is vanishing to the chrono initialisation for the steps it runs (a
      ``"chrono"`` event); what cannot be changed in place (a SimpleRNN or GRU, an LSTM already
      chrono-initialised, a sequence too long for any bias) gets a ``"doctor"`` event naming the
      treatment to run (``lstmlab doctor``).  Each layer is treated at most once.  When the loss
      reads every step the training profile includes each step's own loss term, so vanishing is
      seen less readily than with :func:`lstmlab.diagnose`, which isolates the end step's loss.
    * ``on_nan``: checked on *every* step (loss and gradients).  ``"fix"``: restore the last good
      weights and optimizer state (snapshots are taken at sampled steps with finite loss and
      gradients whose loss is at most ``good_loss_factor`` times the lowest loss so far, so a
      run that blows up before it turns NaN goes back to sane weights), skip the step, halve the
      learning rate and record
      ``{"step", "event": "restore", "lr", "restored_step"}``; after ``max_restores`` restores
      training stops.  ``"stop"`` also skips the bad step.
    * ``on_slow_loss``: after ``slow_loss_steps`` steps the loss fell by less than
      ``slow_loss_drop`` (relative) from its start.
    * ``on_param_growth``: the parameter norm grew ``growth_ratio``-fold, nearly monotonically, over
      the last ``growth_window`` samples.  ``"fix"`` sets ``weight_decay=1e-4`` in the optimizer.

    Every finding is also recorded once in ``model.history.events``.  ``reports`` keeps the last
    ``keep_reports`` reports (``last_report`` the newest).
    """

    def __init__(self, every: int = 10, on_vanishing: str = "warn", on_exploding: str = "warn",
                 on_nan: str = "warn", on_slow_loss: str = "warn", on_param_growth: str = "warn",
                 log_dir: str | None = None, slow_loss_steps: int = detectors.SLOW_LOSS_STEPS,
                 slow_loss_drop: float = detectors.SLOW_LOSS_MIN_DROP,
                 growth_window: int = detectors.PARAM_GROWTH_WINDOW,
                 growth_ratio: float = detectors.PARAM_GROWTH_RATIO, clip_to: float = 1.0,
                 max_restores: int = 10, keep_reports: int = 5, good_loss_factor: float = 10.0) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every: expected a positive integer number of steps, got {every!r}")
        self.actions: dict[str, str] = {}
        for arg, value in (("on_vanishing", on_vanishing), ("on_exploding", on_exploding), ("on_nan", on_nan),
                           ("on_slow_loss", on_slow_loss), ("on_param_growth", on_param_growth)):
            value = "ignore" if value is None else value
            if value not in _ACTIONS[arg]:
                raise ValueError(f"{arg}: expected one of {_ACTIONS[arg]}, got {value!r}")
            self.actions[arg[3:]] = value
        for arg, v, low in (("slow_loss_steps", slow_loss_steps, 2), ("growth_window", growth_window, 2),
                            ("max_restores", max_restores, 0), ("keep_reports", keep_reports, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{arg}: expected an integer >= {low}, got {v!r}")
        for arg, v in (("slow_loss_drop", slow_loss_drop), ("growth_ratio", growth_ratio),
                       ("clip_to", clip_to), ("good_loss_factor", good_loss_factor)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{arg}: expected a positive number, got {v!r}")
        self.every = every
        self.log_dir = log_dir
        self.slow_loss_steps, self.slow_loss_drop = slow_loss_steps, float(slow_loss_drop)
        self.growth_window, self.growth_ratio = growth_window, float(growth_ratio)
        self.clip_to, self.max_restores, self.keep_reports = float(clip_to), max_restores, keep_reports
        self.good_loss_factor = float(good_loss_factor)
        self._reset()

    # --- state ------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.reports: list[GradientReport] = []
        self.last_report: GradientReport | None = None
        self.findings: set[str] = set()
        self.restores = 0
        self._losses: list[float] = []
        self._param_norms: list[float] = []
        self._snapshot: dict | None = None
        self._snapshot_step: int | None = None
        self._best = math.inf
        self._last_sample: int | None = None
        self._sampling = False
        self._flags: list[tuple[RNNLayer, bool]] = []
        self._writer = None
        self._treated: set[int] = set()

    def _rnns(self) -> list[RNNLayer]:
        return [m for m in self.model.modules() if isinstance(m, RNNLayer)]

    def _set_taps(self, on: bool) -> None:
        for r in self._rnns():
            r.record_taps = on and r.engine != "native"  # native kernels cannot record taps

    def _events(self) -> list:
        h = getattr(self.model, "history", None)
        return h.events if h is not None else []

    def _records(self) -> list:
        h = getattr(self.model, "history", None)
        return h.records if h is not None else []

    # --- hooks ------------------------------------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        self._reset()
        self._flags = [(r, r.record_taps) for r in self._rnns()]
        self._set_taps(True)
        self._sampling = True
        self._take_snapshot(int(getattr(self.model, "global_step", 0)))
        if self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_train_end(self, logs=None) -> None:
        for r, flag in self._flags:
            r.record_taps = flag
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        self._snapshot = None

    def on_batch_begin(self, batch, logs=None) -> None:
        step = int(getattr(self.model, "global_step", 0))
        due = self._last_sample is None or step - self._last_sample >= self.every
        if due != self._sampling:
            self._set_taps(due)
        self._sampling = due

    def on_backward_end(self, step, logs=None) -> None:
        model = self.model
        loss = float((logs or {}).get("loss", math.nan))
        self._losses.append(loss)
        finite = math.isfinite(loss) and all(bool(torch.isfinite(p.grad).all())
                                             for p in model.parameters() if p.grad is not None)
        report = None
        if self._sampling:
            report = self._sample(step, loss)
        if not finite:
            self._on_nan(step, loss, report)
            return
        if math.isfinite(loss):
            self._best = min(self._best, loss)
        if report is not None:
            self._check_report(step, report)
            good = loss <= self.good_loss_factor * self._best
            if good and (self._snapshot_step is None or step - self._snapshot_step >= self.every):
                self._take_snapshot(step)
        if len(self._losses) == self.slow_loss_steps:
            slow, drop = detectors.slow_loss(self._losses, self.slow_loss_steps, self.slow_loss_drop)
            if slow:
                last = self.last_report
                verdicts = {n: d["verdict"] for n, d in last.decay.items()} if last else None
                rem = remedies.for_slow_loss(last.verdict if last else None, last.layers if last else {},
                                             verdicts)
                self._act("slow_loss", step, f"the training loss fell by only {drop:.1%} in the first "
                          f"{self.slow_loss_steps} steps (threshold {self.slow_loss_drop:.0%})", rem)

    # --- work -------------------------------------------------------------------------------------
    def _sample(self, step: int, loss: float) -> GradientReport:
        report = build_report(self.model, loss=loss, step=step, source="monitor")
        self._set_taps(False)
        self._sampling = False
        self._last_sample = step
        self.last_report = report
        self.reports = (self.reports + [report])[-self.keep_reports:]
        rec = report.summary()
        self._records().append(rec)
        if self._writer is not None:
            for k, v in rec.items():
                number = isinstance(v, (int, float)) and not isinstance(v, bool)
                if k != "step" and number and math.isfinite(v):
                    self._writer.add_scalar(f"gradients/{k}", v, step)
            self._writer.add_scalar("gradients/verdict", detectors.VERDICTS.index(report.verdict), step)
        return report

    def _check_report(self, step: int, report: GradientReport) -> None:
        if report.verdict in ("vanishing", "exploding"):
            bad = [n for n, d in report.decay.items() if d.get("verdict") == report.verdict]
            d = report.decay[bad[0]] if bad else {}
            r = d.get("effective")
            what = f"gradient ratio first/last step = 10^{r:+.1f}" if r is not None else "non-finite values"
            self._act(report.verdict, step, f"{report.verdict} gradients in {', '.join(bad) or 'the model'} "
                      f"({what} over {d.get('steps', '?')} steps)", report.remedies)
        pn = report.param_norm
        if pn is not None and math.isfinite(pn):
            self._param_norms.append(pn)
            growing, ratio = detectors.param_growth(self._param_norms, self.growth_window, self.growth_ratio)
            if growing:
                self._act("param_growth", step, f"the parameter norm grew {ratio:.2f}x over the last "
                          f"{self.growth_window} samples and keeps growing", remedies.for_param_growth())

    def _act(self, kind: str, step: int, message: str, rem: list[str]) -> None:
        action = self.actions[kind]
        if action == "ignore":
            return
        if kind not in self.findings:
            self.findings.add(kind)
            tip = f" Remedy: {rem[0]}" if rem else ""
            self._events().append({"step": step, "event": kind, "action": action, "message": message,
                                   "remedies": list(rem)})
            warnings.warn(f"lstmlab GradientMonitor: step {step}: {message}.{tip}", GradientWarning,
                          stacklevel=3)
        if action == "stop":
            self.model.stop_training = True
        elif action == "fix":
            self._fix(kind, step)

    def _fix(self, kind: str, step: int) -> None:
        model = self.model
        if kind == "vanishing":
            self._fix_vanishing(step)
        elif kind == "exploding":
            if getattr(model, "global_clipnorm", None) is None and getattr(model, "clipnorm", None) is None:
                model.global_clipnorm = self.clip_to
                self._events().append({"step": step, "event": "clip", "global_clipnorm": self.clip_to})
        elif kind == "param_growth":
            opt = getattr(model, "optimizer", None)
            if opt is not None and any(not g.get("weight_decay") for g in opt.param_groups):
                for g in opt.param_groups:
                    g["weight_decay"] = g.get("weight_decay") or 1e-4
                self._events().append({"step": step, "event": "weight_decay", "weight_decay": 1e-4})

    def _plateau(self) -> bool:
        """The loss fell by less than ``slow_loss_drop`` over the last ``slow_loss_steps`` steps."""
        n = self.slow_loss_steps
        return len(self._losses) >= n and detectors.slow_loss(self._losses[-n:], n, self.slow_loss_drop)[0]

    def _fix_vanishing(self, step: int) -> None:
        """Chrono biases in place for vanishing LSTM directions once the loss has plateaued; else name the
        doctor's treatment (once per layer)."""
        report = self.last_report
        if report is None or not self._plateau():
            return
        by_name = {d.name: d.layer for d in directions(self.model)}
        for name, d in report.decay.items():
            layer = by_name.get(name)
            if d.get("verdict") != "vanishing" or layer is None or id(layer) in self._treated:
                continue
            self._treated.add(id(layer))
            steps = int(report.layers.get(name, {}).get("steps") or 0)
            if layer.cell == "lstm" and layer.bias_initializer != "chrono" and layer.use_bias and steps >= 3:
                chrono_in_place(layer, steps, step)
                self._events().append({"step": step, "event": "chrono", "layer": name, "chrono_max_len": steps})
                continue
            what = remedies.doctor_treatment(layer.cell, steps)
            self._events().append({"step": step, "event": "doctor", "layer": name, "treatment": what})
            warnings.warn(f"lstmlab GradientMonitor: step {step}: {name} keeps losing the gradient and cannot be "
                          f"fixed in place; run lstmlab doctor (treatment: {what})", GradientWarning, stacklevel=4)

    def _take_snapshot(self, step: int) -> None:
        if self.actions["nan"] != "fix":
            return
        self._snapshot = self.model.get_state()
        self._snapshot_step = step

    def _on_nan(self, step: int, loss: float, report: GradientReport | None) -> None:
        where = ""
        if report is not None and report.nonfinite:
            nf = report.nonfinite
            where = f" (first at layer={nf['layer']}, step={nf['step']}, tensor={nf['tensor']})"
        what = "loss" if not math.isfinite(loss) else "gradient"
        message = f"non-finite {what} (loss={loss}){where}"
        action = self.actions["nan"]
        if action == "fix":
            self._restore(step, message)
            return
        if action == "stop":
            self.model.skip_step = True
        self._act("nan", step, message, [remedies.CLIP, remedies.ROLLBACK, remedies.LOWER_LR])

    def _restore(self, step: int, message: str) -> None:
        model = self.model
        model.skip_step = True
        if self._snapshot is None or self.restores >= self.max_restores:
            model.stop_training = True
            self._events().append({"step": step, "event": "stop", "reason": "nan",
                                   "message": f"{message}; no restore left "
                                              f"(max_restores={self.max_restores})"})
            warnings.warn(f"lstmlab GradientMonitor: step {step}: {message}; gave up after {self.restores} "
                          "restores, training stopped", GradientWarning, stacklevel=3)
            return
        opt = getattr(model, "optimizer", None)
        lrs = [g["lr"] for g in opt.param_groups] if opt is not None else []
        # a deep copy: torch's Optimizer.load_state_dict keeps same-device tensors by reference
        model.set_state(copy.deepcopy(self._snapshot))
        new = [lr * 0.5 for lr in lrs]
        if opt is not None:
            for g, lr in zip(opt.param_groups, new, strict=True):
                g["lr"] = lr
        for p in model.parameters():
            p.grad = None
        self.restores += 1
        event = {"step": step, "event": "restore", "lr": new[0] if new else None,
                 "restored_step": self._snapshot_step}
        self._events().append(event)
        if "nan" not in self.findings:
            self.findings.add("nan")
            warnings.warn(f"lstmlab GradientMonitor: step {step}: {message}; restored the weights of step "
                          f"{self._snapshot_step} and halved the learning rate to {event['lr']:.3g}. "
                          f"Remedy: {remedies.CLIP}", GradientWarning, stacklevel=3)
