"""One probe: a candidate config trained by ``lstmlab train`` in its own run directory, advanced slice by
slice (each slice resumes the last one's checkpoint), measured after every slice.

Slices end at epoch boundaries (:class:`SliceStop`): a run stopped and resumed at an epoch end is
bit-identical to one that ran straight through, so the winning probe, continued to its final
number of epochs, *is* the run that ``lstmlab train best.toml`` repeats.  After each slice the
probe reads its score (the validation metric of the weights the run would deliver: the best epoch,
restored), its gradient health (the GradientMonitor's samples of that slice), the decay profile
(:func:`lstmlab.diagnose` on validation data) and the slope of its training loss.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..callbacks import Callback
from ..config import dumps_toml
from ..diagnostics import diagnose
from ..model import load_model
from ..run import RunDir
from ..run.session import train
from .candidates import Candidate
from .diagnosis import headline
from .facts import DataFacts

__all__ = ["Probe", "Slice", "SliceStop", "score_key", "EPOCH_CAP"]

EPOCH_CAP = 100_000  # the epochs of a probe's config while it is probed (slices stop it earlier)


class SliceStop(Callback):
    """Stop a run at the first epoch end after ``seconds`` of training; keep every step's loss."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.losses: list[tuple[float, float]] = []  # (seconds since the slice began, step loss)
        self.t0 = time.monotonic()

    def on_train_begin(self, logs=None) -> None:
        self.t0 = time.monotonic()

    def on_batch_end(self, batch, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if isinstance(loss, (int, float)):
            self.losses.append((time.monotonic() - self.t0, float(loss)))

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.seconds is not None and time.monotonic() - self.t0 >= self.seconds:
            self.model.stop_training = True


def score_key(val: dict | None, metric: str) -> float:
    """The number probes are ranked by (higher is better): accuracy with the loss breaking ties, or
    the negative loss; -inf when there is none (a diverged run)."""
    if not isinstance(val, dict):
        return -math.inf
    loss = val.get("loss")
    loss = float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
    if metric == "val_accuracy":
        acc = val.get("accuracy")
        if not isinstance(acc, (int, float)) or not math.isfinite(acc):
            return -math.inf
        return float(acc) - 1e-3 * min(loss, 10.0)
    return -loss


def loss_slope(losses: list[tuple[float, float]]) -> float | None:
    """Relative change of the training loss per minute over a slice: (last quarter - first quarter)
    / first quarter / minutes between them; negative while the loss falls."""
    if len(losses) < 8:
        return None
    n = max(2, len(losses) // 4)
    a, b = losses[:n], losses[-n:]
    la, lb = float(np.mean([v for _, v in a])), float(np.mean([v for _, v in b]))
    dt = (float(np.mean([t for t, _ in b])) - float(np.mean([t for t, _ in a]))) / 60.0
    if not (math.isfinite(la) and math.isfinite(lb)) or la <= 0 or dt <= 0:
        return None
    return (lb - la) / la / dt


@dataclass
class Slice:
    """What one slice of a probe showed."""

    rung: int
    seconds: float
    epochs: int                     # epochs done in total after the slice
    status: str
    val: dict | None
    test: dict | None
    key: float
    verdict: str | None             # headline verdict of the slice's GradientMonitor samples
    counts: dict = field(default_factory=dict)
    decay: float | None = None      # log10 ||dL/dh_1|| / ||dL/dh_T|| (diagnose on validation data)
    profile: list[float] | None = None
    end_verdict: str | None = None
    slope: float | None = None      # relative loss change per minute
    remedies: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Probe:
    """A candidate and its run directory ``RUN_DIR/probes/NN-label``."""

    def __init__(self, index: int, candidate: Candidate, cfg: dict, root: Path, facts: DataFacts, metric: str,
                 val_batch: tuple) -> None:
        self.index, self.candidate, self.cfg, self.facts, self.metric = index, candidate, cfg, facts, metric
        self.rd = RunDir(Path(root) / f"{index:02d}-{candidate.slug()}")
        self.val_batch = val_batch
        self.slices: list[Slice] = []
        self.trained_s = 0.0
        self.trial = None
        self.pruned_at: int | None = None
        self.reason: str | None = None
        self.final_epochs: int | None = None     # the epochs of best.toml when this probe is the answer
        self.fallback_from: str | None = None    # the winner this (plain) probe replaced (never-worse rule)
        self.fallback_why: str | None = None     # "below" | "within noise"
        self.val_probe: Probe | None = None      # trained without the validation series: its val stands in
        self.stage: str | None = None            # "ensemble": made after the probing (doctor.small), not a rival

    @property
    def label(self) -> str:
        return self.candidate.label

    @property
    def last(self) -> Slice | None:
        return self.slices[-1] if self.slices else None

    @property
    def config_path(self) -> Path:
        return self.rd.path(self.rd.TRIAL_CONFIG)

    def config(self, epochs: int) -> dict:
        """The probe's config with ``epochs`` (everything else fixed from its first slice on)."""
        cfg = copy.deepcopy(self.cfg)
        cfg["train"]["epochs"] = int(epochs)
        return cfg

    def write_config(self, epochs: int, header: str) -> Path:
        self.rd.create("train")  # a train run directory from the start: its config goes in before the run
        return self.rd.write_text(self.config_path, dumps_toml(self.config(epochs), header=header))

    def epoch_seconds(self) -> float:
        """Wall seconds per epoch over the probe's last slice, everything included (validation, checkpoints,
        the slice's start): a cautious rate for planning the rest of the budget."""
        if self.last is None:
            return self.trained_s / max(1, self.epochs_done())
        n = self.last.epochs - (self.slices[-2].epochs if len(self.slices) > 1 else 0)
        return self.last.seconds / max(1, n)

    def epochs_done(self) -> int:
        st = self.rd.read_json(self.rd.state) if self.rd.state.exists() else None
        return int(st.get("epoch", 0)) if isinstance(st, dict) else 0

    def run(self, rung: int, seconds: float | None, epochs: int = EPOCH_CAP, log=None) -> Slice:
        """Train one slice (``seconds``, or to ``epochs`` when ``seconds`` is None) and measure it."""
        resume = self.rd.has_run()
        self.write_config(epochs, f"doctor probe {self.index}: {self.label}")
        stop = SliceStop(seconds)
        health_before = len(self._health())
        t0 = time.monotonic()
        with warnings.catch_warnings():  # findings go to gradient_health.jsonl, not the console
            warnings.simplefilter("ignore")
            result = train(self.config_path, self.rd.root, resume=resume, out=log or _quiet, callbacks=[stop])
        took = time.monotonic() - t0
        self.trained_s += took
        sl = self._measure(rung, took, result, self._health()[health_before:])
        sl.slope = loss_slope(stop.losses)
        self.slices.append(sl)
        return sl

    def _health(self) -> list[dict]:
        return [r for r in self.rd.read_jsonl(self.rd.health) if r.get("verdict")]

    def _measure(self, rung: int, took: float, result: dict, records: list[dict]) -> Slice:
        counts: dict[str, int] = {}
        for r in records:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        verdict = headline(counts)[0] if counts else None
        if result.get("status") == "diverged":
            verdict, counts = "exploding", {**counts, "exploding": counts.get("exploding", 0) + 1}
        sl = Slice(rung=rung, seconds=round(took, 2), epochs=int(result.get("epochs") or 0),
                   status=str(result.get("status")), val=result.get("val"), test=result.get("test"),
                   key=score_key(result.get("val"), self.metric), verdict=verdict, counts=counts)
        self._diagnose(sl)
        return sl

    def _diagnose(self, sl: Slice) -> None:
        """The decay profile of the delivered model on validation data (a failure is recorded, not raised)."""
        if not self.rd.model.exists():
            return
        try:
            model = load_model(self.rd.model)
            x, y, lengths = self.val_batch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rep = diagnose(model, x, y, lengths=lengths)
        except Exception as exc:  # noqa: BLE001 - a diagnosis problem must not end the probing
            sl.remedies = [f"diagnose failed: {type(exc).__name__}: {str(exc)[:120]}"]
            return
        sl.end_verdict, sl.decay = rep.verdict, rep.worst_decay()
        name = next(iter(rep.per_step), None)
        prof = rep.profile(name) if name is not None else None
        sl.profile = None if prof is None else [float(v) for v in prof]
        sl.remedies = list(rep.remedies)

    def summary(self) -> dict[str, Any]:
        """Everything about the probe for doctor.json / doctor.md."""
        return {"index": self.index, "label": self.label,
                "treatments": [t.to_dict() for t in self.candidate.treatments], "reason": self.candidate.reason,
                "run_dir": str(self.rd.root), "trained_s": round(self.trained_s, 1), "pruned_at": self.pruned_at,
                "why": self.reason, "stage": self.stage, "slices": [s.to_dict() for s in self.slices]}


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The probes' own per-epoch lines are not printed (they are in metrics.jsonl)."""
