"""The recorder of a run: what happened, written down and nothing else decided here.

Per epoch, one row of ``metrics.jsonl`` (loss and metrics, time, global step, learning rate,
gradient norm, the epoch's last gradient verdict), the GradientMonitor's records and events appended to
``gradient_health.jsonl``, TensorBoard scalars and the console line.  Decisions (early stopping,
the best epoch, divergence) are taken by the callbacks before it in the list; it reads them.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..callbacks import Callback, EarlyStopping, StopOnDivergence
from .rundir import RunDir

__all__ = ["Recorder", "open_tensorboard"]


def open_tensorboard(log_dir: Path, purge_step: int | None = None):
    """A TensorBoard ``SummaryWriter`` (None, with a warning, when tensorboard is not installed)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed; no events under tb/ (pip install tensorboard)",
                      stacklevel=2)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _last_verdict(records: list, verdict: str | None) -> str | None:
    for rec in records:
        v = rec.get("verdict") if isinstance(rec, dict) else getattr(rec, "verdict", None)
        verdict = v or verdict
    return verdict


def _as_dict(rec: Any) -> dict:
    if hasattr(rec, "to_dict"):
        return rec.to_dict()
    return rec.summary() if hasattr(rec, "summary") else dict(rec)


class Recorder(Callback):
    """Rows of ``metrics.jsonl`` and ``gradient_health.jsonl``, TensorBoard and the console.

    Only rank 0 (``main``) writes; the others keep the same counters.  ``state`` is the run's
    training state (read only: the console names the last good checkpoint after a divergence)."""

    def __init__(self, rd: RunDir, state: dict, *, epochs: int, monitor_name: str, guard: StopOnDivergence,
                 stopper: EarlyStopping, writer=None, out: Callable = print, verbose: int = 1, main: bool = True,
                 carry_s: float = 0.0, carry_verdict: str | None = None) -> None:
        self.rd, self.state, self.epochs, self.monitor_name = rd, state, epochs, monitor_name
        self.guard, self.stopper = guard, stopper
        self.writer, self.out, self.verbose, self.main = writer, out, verbose, main
        self.carry_s = carry_s  # seconds of a partial epoch before a resume
        self.carry_verdict = carry_verdict  # the partial epoch's last gradient verdict before a resume
        self.verdict: str | None = None  # the last gradient verdict of this epoch so far
        self.t0 = time.time()
        self.epoch_time = 0.0  # seconds of the last finished epoch
        self.n_records = self.n_events = 0

    def elapsed(self) -> float:
        """Seconds since the epoch began (counting the part before a resume)."""
        return time.time() - self.t0

    def on_train_begin(self, logs=None):
        hist = self.model.history
        self.n_records = len(hist.records) if hist is not None else 0
        self.n_events = len(hist.events) if hist is not None else 0

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time() - self.carry_s
        self.carry_s = 0.0
        self.verdict, self.carry_verdict = self.carry_verdict, None

    def epoch_verdict(self) -> str | None:
        """The last gradient verdict of this epoch so far (records not yet written included): part of
        a mid-epoch checkpoint, so that a resumed epoch's row says what the uninterrupted one says."""
        hist = self.model.history
        return _last_verdict(hist.records[self.n_records:] if hist is not None else [], self.verdict)

    def flush_health(self, epoch: int) -> list:
        """Append the monitor's new records and events (labelled with epoch ``epoch + 1``)."""
        hist = self.model.history
        records = list(hist.records[self.n_records:]) if hist is not None else []
        self.n_records += len(records)
        self.verdict = _last_verdict(records, self.verdict)
        events = list(hist.events[self.n_events:]) if hist is not None else []
        self.n_events += len(events)
        if not self.main:
            return records
        for rec in records:
            self.rd.append(self.rd.health, {"epoch": epoch + 1, **_as_dict(rec)})
        for ev in events:
            self.rd.append(self.rd.health, {"epoch": epoch + 1, **(ev if isinstance(ev, dict) else {"event": str(ev)})})
        return records

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.epoch_time = self.elapsed()
        records = self.flush_health(epoch)
        verdict = self.verdict  # the epoch's last, also from records a mid-epoch checkpoint wrote
        model, opt = self.model, self.model.optimizer
        row = {"epoch": epoch + 1, **logs, "time_s": round(self.epoch_time, 3), "global_step": model.global_step,
               "lr": opt.param_groups[0]["lr"] if opt else None, "grad_norm": getattr(model, "last_grad_norm", None)}
        if verdict:
            row["gradient_verdict"] = verdict
        if self.guard.diverged_epoch == epoch:
            row["diverged"] = True
            if self.main:
                self.rd.append(self.rd.metrics, row)
                self._say_diverged(epoch)
            return
        if not self.main:
            return
        self.rd.append(self.rd.metrics, row)
        self._tensorboard(epoch, logs, records)
        self._say(epoch, logs, verdict)

    def _tensorboard(self, epoch: int, logs: dict, records: list) -> None:
        if self.writer is None:
            return
        for k, v in logs.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                tag = f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"
                self.writer.add_scalar(tag, v, epoch + 1)
        for rec in records:
            summ = rec if isinstance(rec, dict) else {}
            for k in ("decay", "grad_norm", "param_norm", "saturation"):
                v = summ.get(k)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(f"gradients/{k}", v, summ.get("step") or self.model.global_step)
        self.writer.flush()

    def _say(self, epoch: int, logs: dict, verdict: str | None) -> None:
        if self.verbose:
            shown = " - ".join(f"{k}: {v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))
            mark = " *" if self.stopper.best_epoch == epoch + 1 else ""  # improved on the best
            grad = f" - gradients: {verdict}" if verdict else ""
            self.out(f"epoch {epoch + 1}/{self.epochs} - {self.epoch_time:.1f}s - {shown}{grad}{mark}", flush=True)
        es = self.stopper
        if es.stopped_epoch == epoch:
            self.out(f"early stopping: {self.monitor_name} has not improved for {es.wait} epochs "
                     f"(best {es.best:.4g} at epoch {es.best_epoch})", flush=True)

    def _say_diverged(self, epoch: int) -> None:
        st, last = self.state, self.rd.last
        kept = (f"The last good checkpoint (epoch {st['epoch']}"
                + (f", batch {st['batch']}" if st.get("batch") else "") + f") is kept in {last.parent}."
                if last.exists() else "No checkpoint had been written yet.")
        self.out(f"epoch {epoch + 1}: the loss or the weights became NaN/Inf; stopping. {kept}", file=sys.stderr)
