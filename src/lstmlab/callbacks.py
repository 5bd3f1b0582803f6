"""Training callbacks (Keras names): History, EarlyStopping, ModelCheckpoint, ProgbarLogger,
StopOnDivergence, plus the hook API.

Hooks called by the training loop (:mod:`lstmlab.training.loop`, behind ``Sequential.fit`` and
``lstmlab train``): ``on_train_begin/end(logs)``, ``on_epoch_begin/end(epoch,
logs)``, ``on_batch_begin/end(batch, logs)`` and ``on_backward_end(step, logs)``, which runs
after ``loss.backward()`` and before clipping and the optimizer step, so a callback can read the
gradients (and the step taps) of that very step or veto the step (``model.skip_step = True``).
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import metrics as M


class Callback:
    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...
    def on_backward_end(self, step, logs=None): ...


class History(Callback):
    """Per-epoch metrics in ``history`` (lists per key) plus free-form ``events`` and ``records``."""

    def __init__(self) -> None:
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []
        self.events: list[dict] = []   # e.g. {"step": 120, "event": "restore", ...}
        self.records: list[dict] = []  # e.g. gradient-health summaries

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def to_dict(self) -> dict:
        return {"history": self.history, "epoch": self.epoch, "events": self.events,
                "records": self.records}


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    A NaN/Inf value never counts as an improvement.  ``best``, ``best_epoch`` (1-based) and
    ``wait`` say where it stands; :meth:`state_dict` / :meth:`load_state_dict` carry them across
    a resumed run.
    ``patience=None`` only keeps the count and never stops."""

    def __init__(self, monitor: str = "val_loss", patience: int | None = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.mode = M.mode(monitor, mode)
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_state = None
        self.stopped_epoch = None
        self._loaded = False

    def on_train_begin(self, logs=None):
        if not self._loaded:  # a state loaded for this run (a resume) is kept
            self.best = math.inf if self.mode == "min" else -math.inf
            self.wait = 0
        self.best_state, self._loaded = None, False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping monitor: {self.monitor!r} is not among the logged metrics "
                             f"{sorted(logs or {})}")
        if math.isfinite(value) and M.improved(self.mode, value, self.best, self.min_delta):
            self.best, self.wait, self.best_epoch = value, 0, epoch + 1
            if self.restore_best_weights:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.wait += 1
            if self.patience is not None and self.wait > self.patience:
                self.model.stop_training = True
                self.stopped_epoch = epoch

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_state is not None:
            self.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict:
        """``best`` (None before the first improvement), ``best_epoch`` and ``wait``."""
        return {"best": float(self.best) if math.isfinite(self.best) else None, "best_epoch": self.best_epoch,
                "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` (before ``fit(..., initial_epoch=...)`` or after
        ``on_train_begin``)."""
        best = state.get("best")
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)
        self.best_epoch, self.wait = state.get("best_epoch"), int(state.get("wait") or 0)
        self._loaded = True


class ModelCheckpoint(Callback):
    """Save the model (atomically) after each epoch, or only when ``monitor`` improves (by more
    than ``min_delta``, with ``save_best_only``).

    ``filepath`` may contain ``{epoch}`` and any logged metric, e.g. ``ckpt-{epoch:03d}.lstmlab``.
    ``save(model, path)`` replaces ``model.save(path, include_optimizer)`` (``lstmlab train``
    stores its training state with the weights).  ``best`` / ``best_epoch`` / ``improved`` say
    where it stands; :meth:`state_dict` / :meth:`load_state_dict` carry them across a resume.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", include_optimizer: bool = True, min_delta: float = 0.0,
                 save: Callable[[Any, str], None] | None = None) -> None:
        self.filepath = os.fspath(filepath)
        self.monitor, self.save_best_only, self.min_delta = monitor, save_best_only, abs(min_delta)
        self.mode = M.mode(monitor, mode)
        self.include_optimizer = include_optimizer
        self.save = save
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch: int | None = None
        self.improved = False  # whether the last epoch improved on the best
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.improved = False
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None or not np.isfinite(value) or not M.improved(self.mode, value, self.best,
                                                                          self.min_delta):
                return
            self.best, self.best_epoch, self.improved = value, epoch + 1, True
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save is not None:
            self.save(self.model, path)
        else:
            self.model.save(path, include_optimizer=self.include_optimizer)
        self.saved.append(path)

    def state_dict(self) -> dict:
        return {"best": float(self.best) if math.isfinite(self.best) else None, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict) -> None:
        best = state.get("best")
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)
        self.best_epoch = state.get("best_epoch")


class StopOnDivergence(Callback):
    """Stop at the end of an epoch whose logged values or weights are NaN/Inf (``diverged_epoch``,
    0-based, says which); later callbacks in the list can read it before they save anything."""

    def __init__(self) -> None:
        self.diverged_epoch: int | None = None

    def on_train_begin(self, logs=None):
        self.diverged_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        finite = all(math.isfinite(v) for v in (logs or {}).values() if isinstance(v, float))
        if not (finite and finite_weights(self.model)):
            self.diverged_epoch = epoch
            self.model.stop_training = True


def finite_weights(model) -> bool:
    """Whether every parameter of ``model`` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class ProgbarLogger(Callback):
    """``fit``'s console output: a progress bar while an epoch runs (``verbose=1``, on a terminal)
    and one line per epoch with its loss and metrics."""

    def __init__(self, epochs: int, steps: int, verbose: int = 1) -> None:
        self.epochs, self.steps, self.verbose = epochs, steps, verbose
        self.t0 = time.time()
        self.sums = [0.0, 0.0]
        self.done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.sums, self.done, self.epoch = time.time(), [0.0, 0.0], 0, epoch

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        if logs.get("skipped"):
            return
        self.sums[0] += logs["loss"] * logs["size"]
        self.sums[1] += logs["size"]
        if self.verbose == 1 and sys.stdout.isatty():
            width, b = 20, batch + 1
            done = int(width * b / self.steps)
            loss = self.sums[0] / max(self.sums[1], 1)
            print(f"\rEpoch {self.epoch + 1}/{self.epochs} [{'=' * done}{'.' * (width - done)}] {b}/{self.steps} "
                  f"- {time.time() - self.t0:.1f}s - loss: {loss:.4g}", end="", flush=True)

    def on_epoch_end(self, epoch, logs=None):
        msg = " - ".join(f"{k}: {v:.4g}" for k, v in (logs or {}).items())
        prefix = "\r" if self.verbose == 1 and sys.stdout.isatty() else ""
        print(f"{prefix}Epoch {epoch + 1}/{self.epochs} - {time.time() - self.t0:.1f}s - {msg}", flush=True)
