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
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta):
            raise ValueError(f"EarlyStopping min_delta: expected a finite number, got {min_delta!r}")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 0):
            raise ValueError(f"EarlyStopping patience: expected an integer >= 0 or None, got {patience!r}")
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


def _eta(seconds: float) -> str:
    """Keras' way of writing a duration: ``3s``, ``1:05``, ``2:03:09``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s}s"


def _value(v: float) -> str:
    return f"{v:.4e}" if v != 0 and abs(v) < 1e-3 else f"{v:.4f}"


class Progbar:
    """A Keras-style progress bar on one terminal line, redrawn in place (``\\r``)::

         12/200 [=>............................] - ETA: 3s - loss: 0.4100

    :meth:`update` redraws at most every ``interval`` seconds (always at the first and the last
    step); :meth:`finish` writes the final line (``- 2s 10ms/step``), :meth:`clear` erases the bar."""

    def __init__(self, total: int, stream=None, width: int = 30, interval: float = 0.1, prefix: str = "") -> None:
        self.total, self.width, self.interval, self.prefix = max(int(total), 1), width, interval, prefix
        self.stream = stream if stream is not None else sys.stdout
        self.t0, self.first, self.shown, self.drawn = time.monotonic(), None, 0, -math.inf

    def bar(self, done: int) -> str:
        """``' 12/200 [=====>......]'`` for ``done`` of :attr:`total` steps."""
        digits = len(str(self.total))
        filled = int(self.width * min(done, self.total) / self.total)
        arrow = ("=" * (filled - 1) + (">" if done < self.total else "=")) if filled else ""
        return f"{self.prefix}{done:{digits}d}/{self.total} [{arrow}{'.' * (self.width - filled)}]"

    def update(self, done: int, values: dict[str, float] | None = None) -> None:
        """``done`` steps of :attr:`total` are done; ``values`` (e.g. the running loss) follow the ETA."""
        now = time.monotonic()
        if self.first is None:  # a resumed epoch starts part-way: the rate counts this process's steps
            self.first = done - 1
        if done < self.total and done > 1 + self.first and now - self.drawn < self.interval:
            return
        rate = (now - self.t0) / max(done - self.first, 1)
        info = f" - ETA: {_eta(rate * (self.total - done))}" if done < self.total else ""
        self._write(self.bar(done) + info + "".join(f" - {k}: {_value(v)}" for k, v in (values or {}).items()))
        self.drawn = now

    def _write(self, line: str) -> None:
        pad = " " * max(self.shown - len(line), 0)  # cover what a longer earlier line left
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self.shown = len(line)

    def finish(self, values: dict[str, float] | None = None) -> None:
        """The completed bar with the time taken and ``values``, and a newline."""
        took = time.monotonic() - self.t0
        per = took / max(self.total - (self.first or 0), 1)
        per_s = f"{per * 1e3:.0f}ms/step" if per >= 1e-3 else f"{per * 1e6:.0f}us/step"
        self._write(self.bar(self.total) + f" - {_eta(took)} {per_s}"
                    + "".join(f" - {k}: {_value(v)}" for k, v in (values or {}).items()))
        self.stream.write("\n")
        self.stream.flush()
        self.shown = 0

    def clear(self) -> None:
        """Erase the bar (the cursor ends at the start of the empty line)."""
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
        self.shown, self.drawn = 0, -math.inf


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal (a bar drawn in place makes sense there)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _RunningLoss(Callback):
    """The loss over the epoch's batches so far (vetoed steps left out), for a bar on ``stream``."""

    def __init__(self, stream=None, interval: float = 0.1) -> None:
        self.stream, self.interval = stream, interval
        self.bar: Progbar | None = None
        self.t0, self.sums, self.epoch = time.time(), [0.0, 0.0], 0

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.sums, self.epoch = time.time(), [0.0, 0.0], epoch

    def add(self, logs: dict | None) -> bool:
        """Count one batch; False when the step was vetoed (nothing to show)."""
        logs = logs or {}
        if logs.get("skipped"):
            return False
        self.sums[0] += logs["loss"] * logs["size"]
        self.sums[1] += logs["size"]
        return True

    @property
    def loss(self) -> float:
        return self.sums[0] / max(self.sums[1], 1)


class ProgbarLogger(_RunningLoss):
    """``fit``'s console output (Keras style).  ``verbose=1`` on a terminal: ``Epoch 3/10``, then a
    bar redrawn after each batch (``12/200 [==>.....] - ETA: 3s - loss: 0.4100``) that ends as
    ``200/200 [======] - 2s 10ms/step - loss: ... - val_loss: ...``.  Otherwise (``verbose=2``,
    or output to a file or pipe): one line per epoch, ``Epoch 3/10 - 2.0s - loss: ...``."""

    def __init__(self, epochs: int, steps: int, verbose: int = 1, stream=None, interval: float = 0.1) -> None:
        super().__init__(stream, interval)
        self.epochs, self.steps, self.verbose = epochs, steps, verbose

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.bar = None
        if self.verbose == 1 and is_terminal(self._out()):
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self._out(), flush=True)
            self.bar = Progbar(self.steps, self._out(), interval=self.interval)

    def on_batch_end(self, batch, logs=None):
        if self.add(logs) and self.bar is not None:
            self.bar.update(batch + 1, {"loss": self.loss})

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
        if self.bar is not None:
            self.bar.finish(logs)
            return
        msg = " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())
        print(f"Epoch {epoch + 1}/{self.epochs} - {time.time() - self.t0:.1f}s - {msg}", file=self._out(),
              flush=True)


class BatchProgress(_RunningLoss):
    """``lstmlab train``'s bar while an epoch runs, on a terminal only: ``epoch 3  12/200 [==>....]
    - ETA: 3s - loss: 0.4100``.  Lines printed through :meth:`printer` (the run's epoch line, its
    notices) first erase the bar, so the console reads as without it.  Not a terminal: nothing."""

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.clear()
        self.bar = None

    def on_batch_end(self, batch, logs=None):
        if not self.add(logs) or not is_terminal(self._out()):
            return
        if self.bar is None:  # the epoch's number of batches comes with the first one
            self.bar = Progbar(int((logs or {}).get("batches") or batch + 1), self._out(), interval=self.interval,
                               prefix=f"epoch {self.epoch + 1}  ")
        self.bar.update(batch + 1, {"loss": self.loss})

    def clear(self) -> None:
        """Erase the bar (it is drawn again at the next batch)."""
        if self.bar is not None:
            self.bar.clear()

    def on_train_end(self, logs=None):
        self.clear()

    def printer(self, write: Callable[..., Any] = print) -> Callable[..., None]:
        """``write`` (a ``print``), erasing the bar before each line."""
        def out(*args: Any, **kwargs: Any) -> None:
            self.clear()
            write(*args, **kwargs)
        return out
