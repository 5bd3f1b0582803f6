"""Checkpoints of a run: weights, optimizer, RNG states and the training state, in one file.

``checkpoints/last.lstmlab`` is a model file (:mod:`lstmlab.saving`) whose metadata also holds
the training state (``train_state``, the same JSON as ``checkpoints/state.json``): epochs done,
batches of the next epoch done and that epoch's running sums, global step, best metric and
early-stopping count, status, RNG states (per rank under torchrun), the gradient monitor's
schedule and rollback snapshot, and the settings the run changed on its own (clipping; the
learning rates and weight decays are in the optimizer's groups; see :mod:`lstmlab.run.resume`).
With it a run killed at any moment resumes bit-exactly.

:class:`RunCheckpoint` is the callback that writes them: at each epoch end (``last``, and
``best`` when the run's :class:`~lstmlab.callbacks.ModelCheckpoint` says the monitored metric
improved) and, with ``[train] checkpoint_every``, every N steps in the middle of an epoch.  A
mid-epoch snapshot is held in memory and written only once the next step's loss, computed with
those weights, is finite: a diverging run never replaces its last good checkpoint.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from .. import saving
from ..callbacks import Callback, EarlyStopping, ModelCheckpoint, StopOnDivergence, finite_weights
from ..training.loop import BatchDone, Strategy
from .files import clean
from .resume import pack_rollback, train_settings
from .rundir import RunDir

__all__ = ["STATE_VERSION", "rng_state", "set_rng_state", "seed_everything", "rank_seed", "model_bytes",
           "read_checkpoint", "monitor_state", "set_monitor_state", "RunCheckpoint", "Parts"]

STATE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# random number generators
# ---------------------------------------------------------------------------------------------
def rng_state() -> dict:
    """Python, NumPy and torch RNG states as JSON lists."""
    py = random.getstate()
    npst = np.random.get_state()
    out = {"python": [py[0], list(py[1]), py[2]],
           "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])],
           "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state().tolist()
    return out


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank`` (dropout masks differ between ranks; the data order does not)."""
    return (int(seed) + 104_729 * int(rank)) % 2**32


# ---------------------------------------------------------------------------------------------
# checkpoint files
# ---------------------------------------------------------------------------------------------
def _bytes(tensors: dict[str, torch.Tensor], meta: dict[str, str], state: dict | None,
           extra: dict[str, torch.Tensor] | None = None) -> bytes:
    if state is not None:
        meta = dict(meta, train_state=json.dumps(clean(state)))
    return safetensors_bytes({**tensors, **(extra or {})}, metadata=meta)


def model_bytes(model, state: dict | None = None, extra: dict[str, torch.Tensor] | None = None) -> bytes:
    """A model file (weights, optimizer, architecture; plus the training state and ``extra``
    tensors, e.g. the monitor's rollback snapshot, when given)."""
    tensors, meta = saving.pack(model, include_optimizer=True)
    return _bytes(tensors, meta, state, extra)


def read_checkpoint(path: str | Path) -> tuple[dict, dict | None, dict | None]:
    """(model state_dict, optimizer state or None, training state or None) of a checkpoint (the
    state unchecked: a resume reads it with :func:`lstmlab.run.resume.read_resume`)."""
    tensors, meta = saving.read(path)
    try:
        state = json.loads(meta["train_state"]) if "train_state" in meta else None
    except (ValueError, RecursionError) as exc:
        raise saving.ModelFileError(f"{path}: train_state: not valid JSON ({type(exc).__name__})") from None
    return saving.model_state(tensors), saving.optimizer_state(tensors, meta), state


# ---------------------------------------------------------------------------------------------
# the gradient monitor's state
# ---------------------------------------------------------------------------------------------
_MONITOR_FIELDS = ("_last_sample", "_best", "_losses", "_param_norms", "findings", "restores",
                   "_snapshot_step")


def monitor_state(mon) -> dict | None:
    """What a GradientMonitor must remember across a resume (its sampling schedule above all:
    a sampled step may run on another engine, so the schedule is part of the exact replay).
    Its rollback snapshot is stored apart (:func:`lstmlab.run.resume.pack_rollback`)."""
    if mon is None:
        return None
    out: dict[str, Any] = {}
    for k in _MONITOR_FIELDS:
        if not hasattr(mon, k):
            continue
        v = getattr(mon, k)
        if k == "_losses":
            v = list(v)[:getattr(mon, "slow_loss_steps", len(v))]
        elif k == "_param_norms":
            v = list(v)[-getattr(mon, "growth_window", len(v)):]
        elif k == "findings":
            v = sorted(v)
        out[k] = v
    return out


def set_monitor_state(mon, saved: dict | None, rollback: dict | None = None) -> None:
    """Restore :func:`monitor_state` into a monitor after its ``on_train_begin``, with the rollback
    snapshot of the checkpoint (without one the monitor keeps the snapshot of the resumed weights
    it took at ``on_train_begin``, and the step it names is that one)."""
    if mon is None or not saved:
        return
    if rollback is not None and hasattr(mon, "_snapshot"):
        mon._snapshot = rollback
    for k, v in saved.items():
        if k not in _MONITOR_FIELDS or not hasattr(mon, k) or (k == "_snapshot_step" and rollback is None):
            continue
        if k == "_best":
            v = math.inf if v is None else float(v)
        elif k in ("_losses", "_param_norms"):
            v = [math.nan if x is None else float(x) for x in v]
        elif k == "findings":
            v = set(v)
        setattr(mon, k, v)


# ---------------------------------------------------------------------------------------------
# the callback
# ---------------------------------------------------------------------------------------------
@dataclass
class Parts:
    """What :class:`RunCheckpoint` works with: the run's directory, its other callbacks, the loop's
    strategy (and its process context), the epoch count and the mid-epoch interval."""

    rd: RunDir
    ctx: Any
    strategy: Strategy
    stopper: EarlyStopping  # the run's early stopping (patience None: it only counts)
    guard: StopOnDivergence
    recorder: Any  # lstmlab.run.recorder.Recorder: health rows and the epoch clock
    monitor: Any = None  # GradientMonitor or None
    epochs: int = 1
    every: int | None = None  # [train] checkpoint_every
    global_batch: int = 1
    best: ModelCheckpoint | None = None  # set by RunCheckpoint.best_checkpoint


class RunCheckpoint(Callback):
    """The training state of a run (``state``, a dict: what ``state.json`` holds) and its checkpoints.

    Put it last among the callbacks: it starts the early stopping, the best-model checkpoint and
    (on ``on_train_begin``) the gradient monitor from ``state`` (a resume), and on
    ``on_epoch_end`` it reads what they decided.  It is also the loop's ``checkpoint`` hook."""

    def __init__(self, state: dict, parts: Parts) -> None:
        self.state, self.p = state, parts
        parts.stopper.load_state_dict(state)
        self.best_due = False  # the best-model checkpoint asked for a save this epoch
        self.pending: dict | None = None  # a mid-epoch snapshot waiting for the next step's loss
        self.last_step = 0

    def best_checkpoint(self, monitor: str, min_delta: float) -> ModelCheckpoint:
        """The run's ``ModelCheckpoint(checkpoints/best.lstmlab, save_best_only=True)``: it decides
        when; this callback writes the file, with the epoch's training state, at its epoch end."""
        path = str(self.p.rd.best).replace("{", "{{").replace("}", "}}")  # a literal path, not a template
        self.p.best = ModelCheckpoint(path, monitor, save_best_only=True, min_delta=min_delta, save=self._best_due)
        self.p.best.load_state_dict(self.state)
        return self.p.best

    def _best_due(self, model, path: str) -> None:
        self.best_due = True

    def on_train_begin(self, logs=None):
        self.last_step = self.model.global_step
        set_monitor_state(self.p.monitor, self.state.get("monitor_state"), self.state.pop("_rollback", None))

    def on_epoch_begin(self, epoch, logs=None):
        self.pending, self.best_due = None, False

    def _extra(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Per-rank RNG states (gathered to every rank), the monitor's state, the settings the run
        changed, the global batch size (what a batch index means); and the rollback tensors."""
        ctx, mon = self.p.ctx, self.p.monitor
        extra: dict[str, Any] = {"monitor_state": monitor_state(mon), "global_batch": self.p.global_batch,
                                 "settings": train_settings(self.model)}
        tensors, info = pack_rollback(getattr(mon, "_snapshot", None)) if ctx.main else ({}, None)
        if info is not None:
            extra["monitor_state"]["rollback"] = info
        if ctx.enabled:
            extra["rng_ranks"] = ctx.gather(rng_state())
            extra["world_size"] = ctx.world
        return extra, tensors

    def public(self) -> dict:
        return {k: v for k, v in self.state.items() if not k.startswith("_")}

    def on_epoch_end(self, epoch, logs=None):
        st, p = self.state, self.p
        if p.guard.diverged_epoch == epoch:
            st["status"], st["diverged_epoch"] = "diverged", epoch + 1
            return
        extra, rollback = self._extra()
        st["epoch"], st["global_step"] = epoch + 1, self.model.global_step
        st.update(p.stopper.state_dict())
        if p.stopper.stopped_epoch == epoch:
            st["status"] = "early_stopped"
        else:
            st["status"] = "completed" if epoch + 1 >= p.epochs else "running"
        st["rng"] = rng_state()
        st.update(extra)
        st["batch"] = 0  # the next epoch starts at its first batch
        for key in ("epoch_sums", "epoch_verdict", "partial_time_s"):  # of a mid-epoch checkpoint
            st.pop(key, None)
        st["time_s"] = st.get("time_s", 0.0) + p.recorder.epoch_time
        if not p.ctx.main:
            return
        public = self.public()
        data = model_bytes(self.model, public, rollback)
        if self.best_due:
            p.rd.write_bytes(p.rd.best, data)
        p.rd.write_bytes(p.rd.last, data)
        p.rd.write_json(p.rd.state, public, indent=None)

    # --- mid-epoch checkpoints (the loop's checkpoint hook) ---------------------------------------
    def batch_done(self, done: BatchDone) -> None:
        if self.pending is not None:  # the snapshot's weights gave a finite loss: keep it
            if math.isfinite(done.loss) and not done.skipped:
                self._commit(self.pending)
            self.pending = None
        every = self.p.every
        if done.stopping or not every:
            return
        if self.model.global_step - self.last_step >= every and done.batch + 1 < done.n_batches:
            self.last_step = self.model.global_step
            extra, rollback = self._extra()
            self.pending = self._snapshot(done.epoch, done.batch + 1, self.p.strategy.reduce(done.sums), extra,
                                          rollback)

    def _snapshot(self, epoch: int, batch: int, sums: dict[str, list[float]], extra: dict,
                  rollback: dict[str, torch.Tensor]) -> dict | None:
        """A mid-epoch checkpoint held in memory: weights, optimizer, RNG states, the data position
        (``epoch`` epochs done, ``batch`` batches of the next one) and the epoch's running sums, so
        that a resume continues exactly.  None when the weights or the running loss are not finite."""
        flat = [v for pair in sums.values() for v in pair]
        if not (all(math.isfinite(v) for v in flat) and finite_weights(self.model)):
            return None
        part = {"epoch": epoch, "batch": batch, "global_step": self.model.global_step,
                "epoch_sums": {k: list(v) for k, v in sums.items()}, "epoch_verdict": self.p.recorder.epoch_verdict(),
                "partial_time_s": self.p.recorder.elapsed(), "rng": rng_state(), **extra}
        snap: dict[str, Any] = {"state": part}
        if self.p.ctx.main:
            snap["tensors"], snap["meta"] = saving.pack(self.model, include_optimizer=True)
            snap["tensors"].update(rollback)
        return snap

    def _commit(self, snap: dict) -> None:
        """Write a snapshot to ``checkpoints/last.lstmlab`` (atomically) and ``state.json``."""
        part = snap["state"]
        self.state.update(part)
        if not self.p.ctx.main:
            return
        self.p.recorder.flush_health(part["epoch"])
        public = self.public()
        self.p.rd.write_bytes(self.p.rd.last, _bytes(snap["tensors"], snap["meta"], public))
        self.p.rd.write_json(self.p.rd.state, public, indent=None)
