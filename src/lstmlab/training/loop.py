"""The training loop, written once: epochs of batches, callbacks, metric sums, validation.

``Sequential.fit``, ``lstmlab train`` (one process or one rank of a torchrun job) and everything
built on them (``lstmlab tune``, the doctor) run :class:`Loop`.  What differs between them is
plugged in, not copied:

* a :class:`Strategy` decides the batches of an epoch, this process's share of each, how the
  epoch's sums and the validation are combined over processes and whether all agree to stop.
  The default is one process, batches in the order of a generator (Keras ``fit``);
  :class:`lstmlab.distributed.DataParallel` shards global batches over torchrun ranks and
  all-reduces the gradients (its callback runs first after each backward);
* :class:`Position` starts the loop in the middle of an epoch, with that epoch's running sums;
* a ``checkpoint`` hook hears about every finished batch (:class:`BatchDone`) after the
  callbacks and the agreement to stop: ``lstmlab train`` writes its mid-epoch checkpoints there.

Per batch: ``on_batch_begin`` -> :func:`lstmlab.training.step.train_step` (forward, loss,
backward, ``on_backward_end``, clip, optimizer step; TBPTT when asked) -> sums ->
``on_batch_end(batch, {"loss", "size", "batches"[, "skipped"]})`` (``batches``: the epoch's number of
batches, for a progress bar) -> stop agreement -> checkpoint hook.
Per epoch: ``on_epoch_begin`` -> batches -> loss and metrics over the epoch (+ ``val_*``) ->
``on_epoch_end(epoch, logs)``.  A vetoed step (``model.skip_step``) does not count towards the
epoch's loss and metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from .. import metrics as M
from ..callbacks import Callback, History
from .step import StepResult, train_step

__all__ = ["Loop", "Strategy", "Position", "BatchDone", "CheckpointHook", "fresh_sums", "epoch_logs"]

Sums = dict[str, list[float]]


@dataclass
class Position:
    """Where training starts: ``epoch`` epochs done, ``batch`` batches of the next one done, and
    that epoch's running ``sums`` (``{"loss": [sum, count], metric: [sum, count]}``) so far."""

    epoch: int = 0
    batch: int = 0
    sums: Sums | None = None


@dataclass
class BatchDone:
    """A finished batch, as the checkpoint hook sees it."""

    epoch: int  # 0-based epoch
    batch: int  # 0-based index of the batch just done
    n_batches: int  # batches in this epoch
    sums: Sums  # this process's running sums of the epoch (combine with Strategy.reduce)
    loss: float  # the step's loss over the whole (global) batch
    skipped: bool  # the update was vetoed
    stopping: bool  # all processes agreed to stop after this batch


class CheckpointHook(Protocol):
    def batch_done(self, done: BatchDone) -> None: ...


class Strategy:
    """One process: the batches of an epoch in the order of ``generator`` (a fresh permutation
    per epoch when ``shuffle``), each batch whole, sums and validation local."""

    def __init__(self, shuffle: bool = True, generator: torch.Generator | None = None) -> None:
        self.shuffle, self.generator = shuffle, generator

    def callbacks(self) -> list[Callback]:
        """Callbacks that must run first after each backward (gradient synchronisation)."""
        return []

    def batches(self, n: int, epoch: int, batch_size: int) -> list[torch.Tensor]:
        """The (global) batches of ``epoch`` as index tensors."""
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]

    def shard(self, batch: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """This process's indices of a batch, and whether they are real samples (not a stand-in)."""
        return batch, True

    def batch_loss(self, step_loss: float, tbptt: int | None) -> float:
        """The loss of the whole batch (over all processes)."""
        return step_loss

    def add_loss(self, sums: Sums, step_loss: float, size: float, batch_len: int, tbptt: int | None) -> None:
        """Add one batch's loss to the epoch's sums."""
        sums["loss"][0] += step_loss * size
        sums["loss"][1] += size

    def reduce(self, sums: Sums) -> Sums:
        """The epoch's sums over all processes."""
        return sums

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by the main process, its result on every process."""
        return fn()

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on any."""
        return bool(flag)


def fresh_sums(metric_names: Sequence[str]) -> Sums:
    return {"loss": [0.0, 0.0]} | {m: [0.0, 0.0] for m in metric_names}


def epoch_logs(sums: Sums) -> dict[str, float]:
    """Loss and metrics of an epoch from its sums."""
    return {k: M.finish(k, *v) if k != "loss" else v[0] / max(v[1], 1) for k, v in sums.items()}


@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None
    val: tuple | None
    batch_size: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The samples ``idx`` on the model's device (lengths stay on the CPU)."""
        lb = None if self.lengths is None else self.lengths[idx]
        return self.x[idx].to(self.device), self.y[idx].to(self.device), lb


class Loop:
    """Train ``model`` (compiled, built, with its optimizer) with ``callbacks``.

    ``strategy``: see :class:`Strategy`; ``tbptt``: truncate backpropagation to chunks of that
    many steps; ``checkpoint``: an object with ``batch_done(BatchDone)``."""

    def __init__(self, model, callbacks: Sequence[Callback] = (), strategy: Strategy | None = None,
                 tbptt: int | None = None, checkpoint: CheckpointHook | None = None) -> None:
        self.model, self.strategy, self.tbptt, self.checkpoint = model, strategy or Strategy(), tbptt, checkpoint
        self.callbacks = list(callbacks)
        self.cbs: list[Callback] = []

    def run(self, x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor | None = None, val: tuple | None = None,
            *, epochs: int, batch_size: int, start: Position | None = None) -> History:
        """Train from ``start`` (default: the beginning) to ``epochs``; ``y`` is prepared for the loss,
        ``val`` is ``(x, y, lengths)`` or None.  Returns the :class:`History` (also ``model.history``)."""
        model, strategy, start = self.model, self.strategy, start or Position()
        data = self._begin(x, y, lengths, val, batch_size)
        for epoch in range(start.epoch, epochs):
            batches, sums, first = self._begin_epoch(epoch, data, start)
            for b in range(first, len(batches)):
                idx, real = strategy.shard(batches[b])
                for cb in self.cbs:
                    cb.on_batch_begin(b, {})
                xb, yb, lb = data.batch(idx)
                step = train_step(model, xb, yb, lb, self.cbs, self.tbptt)
                if self._end_batch(epoch, b, batches, sums, step, real, xb.shape[0]):
                    break
            self._end_epoch(epoch, sums, data)
            if model.stop_training:
                break
        for cb in self.cbs:
            cb.on_train_end({})
        return model.history

    def _begin(self, x, y, lengths, val, batch_size: int) -> _Data:
        model = self.model
        model.history = History()
        self.cbs = [model.history] + self.strategy.callbacks() + self.callbacks
        for cb in self.cbs:
            cb.set_model(model)
        model.stop_training = False
        for cb in self.cbs:
            cb.on_train_begin({})
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return _Data(x, y, lengths, val, batch_size, device)

    def _begin_epoch(self, epoch: int, data: _Data, start: Position) -> tuple[list[torch.Tensor], Sums, int]:
        """on_epoch_begin, train mode; the epoch's batches, running sums and first batch."""
        for cb in self.cbs:
            cb.on_epoch_begin(epoch, {})
        self.model.train()
        batches = self.strategy.batches(data.x.shape[0], epoch, data.batch_size)
        sums = fresh_sums(self.model.metric_names)
        if epoch != start.epoch:
            return batches, sums, 0
        sums.update({k: [float(a), float(b)] for k, (a, b) in (start.sums or {}).items() if k in sums})
        return batches, sums, start.batch

    def _end_batch(self, epoch: int, b: int, batches: list[torch.Tensor], sums: Sums, step: StepResult, real: bool,
                   n: int) -> bool:
        """Sums, on_batch_end, the agreement to stop, the checkpoint hook; True when training stops."""
        model, strategy = self.model, self.strategy
        size = float(n) if real else 0.0
        if model.skip_step:  # a vetoed step does not count towards the epoch
            logs = {"loss": step.loss, "size": int(size), "batches": len(batches), "skipped": True}
        else:
            strategy.add_loss(sums, step.loss, size, len(batches[b]), self.tbptt)
            if real:
                self._add_metrics(sums, step)
            logs = {"loss": step.loss, "size": int(size), "batches": len(batches)}
        for cb in self.cbs:
            cb.on_batch_end(b, logs)
        model.stop_training = strategy.any(model.stop_training)
        if self.checkpoint is not None:
            loss = strategy.batch_loss(step.loss, self.tbptt)
            self.checkpoint.batch_done(BatchDone(epoch, b, len(batches), sums, loss, bool(model.skip_step),
                                                 model.stop_training))
        return model.stop_training

    def _end_epoch(self, epoch: int, sums: Sums, data: _Data) -> None:
        """Loss and metrics of the epoch (+ validation), on_epoch_end, the agreement to stop."""
        model = self.model
        logs = epoch_logs(self.strategy.reduce(sums))
        if data.val is not None:
            vx, vy, vl = data.val
            vlogs = self.strategy.on_main(lambda: model.evaluate(vx, vy, batch_size=data.batch_size, lengths=vl,
                                                                 verbose=0, return_dict=True))
            logs.update({f"val_{k}": v for k, v in vlogs.items()})
        for cb in self.cbs:
            cb.on_epoch_end(epoch, logs)
        model.stop_training = self.strategy.any(model.stop_training)

    def _add_metrics(self, sums: Sums, step: StepResult) -> None:
        model = self.model
        for m in model.metric_names:
            s_, c_ = M.batch_sums(m, model.loss_name, step.output.detach(), step.target, step.mask)
            sums[m][0] += s_
            sums[m][1] += c_
