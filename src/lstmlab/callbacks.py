"""Training callbacks (Keras names): History, EarlyStopping, ModelCheckpoint, plus the hook API.

Hooks called by ``Sequential.fit``: ``on_train_begin/end(logs)``, ``on_epoch_begin/end(epoch,
logs)``, ``on_batch_begin/end(batch, logs)`` and ``on_backward_end(step, logs)``, which runs
after ``loss.backward()`` and before clipping and the optimizer step, so a callback can read the
gradients (and the step taps) of that very step or veto the step (``model.skip_step = True``).
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np


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


def _better(mode: str, monitor: str):
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("r2")) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    return (lambda a, b, d: a < b - d) if mode == "min" else (lambda a, b, d: a > b + d), mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(min_delta)
        self.better, self.mode = _better(mode, monitor)
        self.restore_best_weights = restore_best_weights
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.best_state = None
        self.stopped_epoch = None

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait, self.best_state = 0, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"EarlyStopping monitor: {self.monitor!r} is not among the logged metrics "
                             f"{sorted(logs or {})}")
        if self.better(value, self.best, self.min_delta):
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.model.stop_training = True
                self.stopped_epoch = epoch

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save the model (atomically) after each epoch, or only when ``monitor`` improves.

    ``filepath`` may contain ``{epoch}`` and any logged metric, e.g. ``ckpt-{epoch:03d}.lstmlab``.
    """

    def __init__(self, filepath: str, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", include_optimizer: bool = True) -> None:
        self.filepath = os.fspath(filepath)
        self.monitor, self.save_best_only = monitor, save_best_only
        self.better, self.mode = _better(mode, monitor)
        self.include_optimizer = include_optimizer
        self.best = math.inf if self.mode == "min" else -math.inf
        self.saved: list[str] = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None or not np.isfinite(value) or not self.better(value, self.best, 0.0):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        self.model.save(path, include_optimizer=self.include_optimizer)
        self.saved.append(path)
