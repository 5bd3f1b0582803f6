"""``lstmlab train CONFIG.toml --run-dir DIR``: run a config into a resumable run directory.

The run directory holds::

    config.resolved.toml / .json   the config with every default (and data-derived size) filled in
    data_meta.json                 what the data loader said (kind, classes, scaler, baseline, ...)
    vocab.json                     token list of text data (``lstmlab generate`` finds it here)
    checkpoints/last.lstmlab       weights + optimizer + training state, written atomically each epoch
                                   (and every ``train.checkpoint_every`` steps, mid-epoch)
    checkpoints/best.lstmlab       the best epoch by ``train.checkpoint_monitor``
    checkpoints/state.json         epoch, batch within the epoch, best metric, early-stopping counter,
                                   RNG states (per rank under torchrun), gradient-monitor schedule
    metrics.jsonl                  one JSON object per epoch
    gradient_health.jsonl          GradientMonitor records
    tb/                            TensorBoard events (loss and metrics per epoch)
    model.lstmlab                  the final model

``--resume`` continues from ``checkpoints/last.lstmlab`` (epoch and batch position, optimizer
state, RNG states, the epoch's running sums): on CPU a run killed at any moment and resumed ends
with bit-identical weights.  Each epoch's sample order comes from ``(seed, epoch)``.  A
non-finite loss stops the run without touching the last good checkpoint (a mid-epoch checkpoint
is only written once the next step's loss with its weights is finite).  The last line printed is
one JSON object with the final validation and test metrics.

Under ``torchrun`` each rank runs this module; see :mod:`lstmlab.distributed` (the global batch
is ``batch_size * WORLD_SIZE``; only rank 0 writes the run directory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import saving
from .callbacks import Callback
from .config import ConfigError, build_layers, dumps_toml, load_config, resolve_layers

__all__ = ["add_parser", "run", "train", "TrainResult", "RunDirError"]

STATE_VERSION = 1


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (exists without --resume, config changed, ...)."""


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _clean(v: Any) -> Any:
    """JSON-safe: numpy -> python, non-finite floats -> None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    text = json.dumps(_clean(obj), indent=indent)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")

    saving.atomic_write(path, write)


def write_text(path: str | os.PathLike, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    saving.atomic_write(path, write)


def _append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_clean(obj)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _truncate_jsonl(path: Path, keep) -> None:
    """Keep only the lines for which ``keep(record)`` is true (used on resume)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if keep(rec):
            kept.append(json.dumps(rec))
    write_text(path, "".join(k + "\n" for k in kept))


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


def _diff(a: Any, b: Any, path: str) -> str | None:
    """The first key path where two resolved configs differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            d = _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path} ({len(a)} vs {len(b)} entries)"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path} ({a!r} before, {b!r} now)"


# ---------------------------------------------------------------------------------------------
# data and model
# ---------------------------------------------------------------------------------------------
def load_data(cfg: dict, config_path: str | os.PathLike | None = None):
    """``lstmlab.data.load`` for the ``[data]`` section.  Option errors (no file of their own) are
    reported against the config file; data too large for memory name the size options."""
    from .data import load
    from .data.base import DataError

    opts = {k: v for k, v in cfg["data"].items() if k != "source"}
    where = f"{config_path}: " if config_path is not None else ""
    try:
        return load(cfg["data"]["source"], **opts)
    except DataError as exc:
        if exc.path is None and config_path is not None:
            raise ConfigError(f"{where}data: {exc}") from None
        raise
    except (MemoryError, OverflowError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        big = isinstance(exc, (MemoryError, OverflowError)) or "too big" in text or "maximum" in text.lower()
        if not big:
            raise ConfigError(f"{where}data: {text}") from None
        sizes = sorted(((v, k) for k, v in opts.items() if isinstance(v, int) and not isinstance(v, bool)),
                       reverse=True)
        named = ", ".join(f"data.{k} = {v}" for v, k in sizes[:3]) or "the data file"
        raise ConfigError(f"{where}data: the data asked for do not fit in memory ({named}): {text}") from None


def default_loss(meta: dict) -> str:
    return "mse" if meta.get("kind") == "regression" else "sparse_categorical_crossentropy"


def default_metrics(meta: dict) -> list[str]:
    return ["mae"] if meta.get("kind") == "regression" else ["accuracy"]


def build_model(cfg: dict, meta: dict, config_path: str | os.PathLike | None = None):
    """A compiled Sequential for a resolved config and the data's meta."""
    from .model import Sequential

    specs = resolve_layers(cfg["model"], meta, config_path)
    cfg["model"]["layers"] = specs
    model = Sequential(build_layers(specs, config_path), name=cfg["model"].get("name", "sequential"))
    model.to(getattr(torch, cfg["model"].get("dtype", "float32")))
    t = cfg["train"]
    t["loss"] = t["loss"] or default_loss(meta)
    t["metrics"] = list(t["metrics"]) if t["metrics"] is not None else default_metrics(meta)
    try:
        model.compile(loss=t["loss"], optimizer=_optimizer(t), metrics=t["metrics"], clipnorm=t["clipnorm"],
                      clipvalue=t["clipvalue"], global_clipnorm=t["global_clipnorm"])
    except ValueError as exc:
        raise ConfigError(f"{config_path}: train: {exc}" if config_path else f"train: {exc}") from None
    return model


def _optimizer(t: dict):
    from . import optim

    opts = dict(t.get("optimizer_options") or {})
    if t.get("weight_decay") is not None:
        opts["weight_decay"] = t["weight_decay"]
    return optim.Optimizer(t["optimizer"], t["learning_rate"], opts)


def _tensors(part) -> tuple:
    x = torch.from_numpy(np.ascontiguousarray(part.x))
    y = torch.from_numpy(np.ascontiguousarray(part.y))
    lengths = None if part.lengths is None else torch.from_numpy(part.lengths)
    return x, y, lengths


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def save_checkpoint(model, path: Path, state: dict | None = None) -> None:
    """Weights, optimizer state and (in the metadata) the training state, in one atomic write."""
    from safetensors.torch import save_file

    tensors, meta = saving.pack(model, include_optimizer=True)
    if state is not None:
        meta["train_state"] = json.dumps(_clean(state))
    saving.atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_checkpoint(path: Path) -> tuple[dict, dict | None, dict | None]:
    """(model state_dict, optimizer state or None, training state or None) of a checkpoint."""
    tensors, meta = saving.read(path)
    state = json.loads(meta["train_state"]) if "train_state" in meta else None
    return saving.model_state(tensors), saving.optimizer_state(tensors, meta), state


def _finite_params(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class RunRecorder(Callback):
    """Per epoch: metrics.jsonl, TensorBoard, checkpoints (last, best), state.json, early stopping,
    divergence guard.  Also copies GradientMonitor records to gradient_health.jsonl."""

    def __init__(self, run_dir: Path, cfg: dict, state: dict, monitor_name: str, writer=None,
                 monitor_cb=None, out=print, main: bool = True) -> None:
        self.main = main  # only rank 0 writes the run directory; the other ranks keep the same state
        self.extra: dict[str, Any] = {}  # per-rank RNG states and monitor state, set by the loop
        self.carry_s = 0.0  # seconds of a partial epoch before a resume
        self.run_dir = run_dir
        self.cfg = cfg
        self.state = state
        self.monitor_name = monitor_name
        self.writer = writer
        self.monitor_cb = monitor_cb
        self.out = out
        es = cfg["train"]["early_stopping"]
        self.patience = None if es is None else es["patience"]
        self.min_delta = 0.0 if es is None else abs(es["min_delta"])
        self.mode = "max" if ("acc" in monitor_name or monitor_name.endswith("r2")) else "min"
        self.t0 = time.time()
        self.n_records = self.n_events = 0
        self.batch_losses: list[float] = []

    def on_train_begin(self, logs=None):
        hist = self.model.history
        self.n_records = len(hist.records) if hist is not None else 0
        self.n_events = len(hist.events) if hist is not None else 0

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.time() - self.carry_s
        self.carry_s = 0.0

    def on_batch_end(self, batch, logs=None):
        self.batch_losses.append(float((logs or {}).get("loss", float("nan"))))

    def _better(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def _flush_health(self, epoch: int) -> list[dict]:
        hist = self.model.history
        records = list(hist.records[self.n_records:]) if hist is not None else []
        self.n_records += len(records)
        events = list(hist.events[self.n_events:]) if hist is not None else []
        self.n_events += len(events)
        if not self.main:
            return records
        path = self.run_dir / "gradient_health.jsonl"
        for rec in records:
            rec = rec.to_dict() if hasattr(rec, "to_dict") else (rec.summary() if hasattr(rec, "summary")
                                                                  else dict(rec))
            _append_jsonl(path, {"epoch": epoch + 1, **rec})
        for ev in events:
            _append_jsonl(path, {"epoch": epoch + 1, **(ev if isinstance(ev, dict) else {"event": str(ev)})})
        return records

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        st = self.state
        elapsed = time.time() - self.t0
        finite = all(math.isfinite(v) for v in logs.values() if isinstance(v, float)) and \
            _finite_params(self.model)
        records = self._flush_health(epoch)
        last_verdict = None
        for rec in records:
            v = rec.get("verdict") if isinstance(rec, dict) else getattr(rec, "verdict", None)
            last_verdict = v or last_verdict
        row = {"epoch": epoch + 1, **logs, "time_s": round(elapsed, 3), "global_step": self.model.global_step,
               "lr": self.model.optimizer.param_groups[0]["lr"] if self.model.optimizer else None,
               "grad_norm": getattr(self.model, "last_grad_norm", None)}
        if last_verdict:
            row["gradient_verdict"] = last_verdict
        if not finite:
            st["status"] = "diverged"
            st["diverged_epoch"] = epoch + 1
            self.model.stop_training = True
            row["diverged"] = True
            if not self.main:
                return
            _append_jsonl(self.run_dir / "metrics.jsonl", row)
            last = self.run_dir / "checkpoints" / "last.lstmlab"
            kept = (f"The last good checkpoint (epoch {st['epoch']}"
                    + (f", batch {st['batch']}" if st.get("batch") else "") + f") is kept in {last.parent}."
                    if last.exists() else "No checkpoint had been written yet.")
            self.out(f"epoch {epoch + 1}: the loss or the weights became NaN/Inf; stopping. {kept}",
                     file=sys.stderr)
            return
        value = logs.get(self.monitor_name)
        improved = value is not None and math.isfinite(value) and self._better(value, st.get("best"))
        st["epoch"] = epoch + 1
        st["global_step"] = self.model.global_step
        if improved:
            st["best"], st["best_epoch"], st["wait"] = float(value), epoch + 1, 0
        else:
            st["wait"] = st.get("wait", 0) + 1
        if self.patience is not None and st["wait"] > self.patience:
            st["status"] = "early_stopped"
            self.model.stop_training = True
        elif epoch + 1 >= self.cfg["train"]["epochs"]:
            st["status"] = "completed"
        else:
            st["status"] = "running"
        st["rng"] = rng_state()
        st.update(self.extra)
        st["batch"] = 0  # the next epoch starts at its first batch
        st.pop("epoch_sums", None)
        st.pop("partial_time_s", None)
        st["time_s"] = st.get("time_s", 0.0) + elapsed
        if not self.main:
            return
        ckpt = self.run_dir / "checkpoints"
        public = {k: v for k, v in st.items() if not k.startswith("_")}
        if improved:
            save_checkpoint(self.model, ckpt / "best.lstmlab", public)
        save_checkpoint(self.model, ckpt / "last.lstmlab", public)
        write_json(ckpt / "state.json", public, indent=None)
        _append_jsonl(self.run_dir / "metrics.jsonl", row)
        if self.writer is not None:
            for k, v in logs.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    tag = f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"
                    self.writer.add_scalar(tag, v, epoch + 1)
            for rec in records:
                summ = rec if isinstance(rec, dict) else {}
                for k in ("decay", "grad_norm", "param_norm", "saturation"):
                    v = summ.get(k)
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        step = summ.get("step") or self.model.global_step
                        self.writer.add_scalar(f"gradients/{k}", v, step)
            self.writer.flush()
        if self.cfg["train"].get("verbose", 1):
            shown = " - ".join(f"{k}: {v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))
            mark = " *" if improved else ""
            grad = f" - gradients: {last_verdict}" if last_verdict else ""
            total = self.cfg["train"]["epochs"]
            self.out(f"epoch {epoch + 1}/{total} - {elapsed:.1f}s - {shown}{grad}{mark}", flush=True)
        if st["status"] == "early_stopped":
            self.out(f"early stopping: {self.monitor_name} has not improved for {st['wait']} epochs "
                     f"(best {st['best']:.4g} at epoch {st['best_epoch']})", flush=True)


    def snapshot_partial(self, epoch: int, batch: int, sums: dict[str, list[float]]) -> dict | None:
        """A mid-epoch checkpoint held in memory (``[train] checkpoint_every``): weights, optimizer,
        RNG states, the data position (``epoch`` epochs done, ``batch`` batches of the next one) and
        the epoch's running sums, so that a resume continues exactly.  None when the weights or the
        running loss are not finite.  :meth:`commit_partial` writes it once the next step's loss
        (computed with these weights) is finite too, so a diverging run never overwrites its last
        good checkpoint with weights that only produce NaN."""
        flat = [v for pair in sums.values() for v in pair]
        if not (all(math.isfinite(v) for v in flat) and _finite_params(self.model)):
            return None
        part = {"epoch": epoch, "batch": batch, "global_step": self.model.global_step,
                "epoch_sums": {k: list(v) for k, v in sums.items()}, "partial_time_s": time.time() - self.t0,
                "rng": rng_state(), **self.extra}
        snap: dict[str, Any] = {"state": part}
        if self.main:
            snap["tensors"], snap["meta"] = saving.pack(self.model, include_optimizer=True)
        return snap

    def commit_partial(self, snap: dict) -> None:
        """Write a :meth:`snapshot_partial` to ``checkpoints/last.lstmlab`` (atomically) and state.json."""
        part = snap["state"]
        self.state.update(part)
        if not self.main:
            return
        from safetensors.torch import save_file

        self._flush_health(part["epoch"])
        public = {k: v for k, v in self.state.items() if not k.startswith("_")}
        meta = dict(snap["meta"], train_state=json.dumps(_clean(public)))
        ckpt = self.run_dir / "checkpoints"
        saving.atomic_write(ckpt / "last.lstmlab", lambda tmp: save_file(snap["tensors"], tmp, metadata=meta))
        write_json(ckpt / "state.json", public, indent=None)


# ---------------------------------------------------------------------------------------------
# the training loop (single process or one rank of a torchrun job)
# ---------------------------------------------------------------------------------------------
_MONITOR_FIELDS = ("_last_sample", "_best", "_losses", "_param_norms", "findings", "restores",
                   "_snapshot_step")


def monitor_state(mon) -> dict | None:
    """What a GradientMonitor must remember across a resume (its sampling schedule above all:
    a sampled step may run on another engine, so the schedule is part of the exact replay)."""
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


def set_monitor_state(mon, saved: dict | None) -> None:
    """Restore :func:`monitor_state` into a monitor after its ``on_train_begin``."""
    if mon is None or not saved:
        return
    for k, v in saved.items():
        if k not in _MONITOR_FIELDS or not hasattr(mon, k):
            continue
        if k == "_best":
            v = math.inf if v is None else float(v)
        elif k in ("_losses", "_param_norms"):
            v = [math.nan if x is None else float(x) for x in v]
        elif k == "findings":
            v = set(v)
        setattr(mon, k, v)


def _fresh_sums(metric_names: list[str]) -> dict[str, list[float]]:
    return {"loss": [0.0, 0.0]} | {m: [0.0, 0.0] for m in metric_names}


def _reduce_sums(ctx, sums: dict[str, list[float]]) -> dict[str, list[float]]:
    keys = list(sums)
    flat = ctx.all_sum([v for k in keys for v in sums[k]])
    return {k: [flat[2 * i], flat[2 * i + 1]] for i, k in enumerate(keys)}


def fit_loop(model, x, y, lengths, val, t: dict, ctx, monitor_cb, recorder: RunRecorder, *,
             start_epoch: int = 0, start_batch: int = 0, partial: dict | None = None,
             monitor_saved: dict | None = None) -> None:
    """``Sequential.fit`` for ``lstmlab train``: the same steps (``_train_step`` / ``_tbptt_step``,
    callbacks, metric sums), plus what a resumable, data-parallel run needs: each epoch's order
    from ``(seed, epoch)``, global batches sharded over the ranks, gradients all-reduced right
    after backward, metrics reduced, a start in the middle of an epoch and ``checkpoint_every``.

    ``x``/``y``/``lengths`` are checked tensors (``y`` prepared for the loss); ``val`` is
    ``(vx, vy, vlengths)`` or None."""
    from . import distributed
    from . import metrics as M
    from .callbacks import History

    device = model._device()
    history = History()
    model.history = history
    sync = distributed.GradientSync(ctx) if ctx.enabled else None
    cbs = [history] + ([sync] if sync is not None else []) \
        + [c for c in (monitor_cb, recorder) if c is not None]
    for cb in cbs:
        cb.set_model(model)
    model.stop_training = False
    for cb in cbs:
        cb.on_train_begin({})
    set_monitor_state(monitor_cb, monitor_saved)
    n, world = x.shape[0], ctx.world
    every = t.get("checkpoint_every")
    last_ckpt = model.global_step
    for epoch in range(start_epoch, t["epochs"]):
        for cb in cbs:
            cb.on_epoch_begin(epoch, {})
        model.train()
        batches = distributed.global_batches(distributed.epoch_order(n, t["seed"], epoch, t["shuffle"]),
                                             t["batch_size"], world)
        first = start_batch if epoch == start_epoch else 0
        sums = _fresh_sums(model.metric_names)
        pending = None  # a mid-epoch snapshot waiting for the next step's loss
        if epoch == start_epoch and partial and ctx.main:
            sums.update({k: [float(a), float(b)] for k, (a, b) in partial.items() if k in sums})
        for b in range(first, len(batches)):
            idx, real = distributed.shard(batches[b], ctx.rank, world)
            if sync is not None:
                sync.real = real
            for cb in cbs:
                cb.on_batch_begin(b, {})
            xb, yb = x[idx].to(device), y[idx].to(device)
            lb = None if lengths is None else lengths[idx]
            if t["tbptt"] is not None:
                loss_v, out, yb2, mask = model._tbptt_step(xb, yb, lb, t["tbptt"], cbs)
            else:
                loss_v, out, yb2, mask = model._train_step(xb, yb, lb, cbs)
            size = float(xb.shape[0]) if real else 0.0
            if model.skip_step:  # a vetoed step does not count towards the epoch
                logs = {"loss": loss_v, "size": int(size), "skipped": True}
            else:
                if sync is not None and t["tbptt"] is None:
                    # the loss of the whole global batch, counted once (on rank 0)
                    glob = float(len(batches[b])) if ctx.main else 0.0
                    sums["loss"][0] += sync.last_loss * glob if glob else 0.0
                    sums["loss"][1] += glob
                elif size:
                    sums["loss"][0] += loss_v * size
                    sums["loss"][1] += size
                if real:
                    for m in model.metric_names:
                        s_, c_ = M.batch_sums(m, model.loss_name, out.detach(), yb2, mask)
                        sums[m][0] += s_
                        sums[m][1] += c_
                logs = {"loss": loss_v, "size": int(size)}
            for cb in cbs:
                cb.on_batch_end(b, logs)
            if pending is not None:  # the previous snapshot's weights gave a finite loss: keep it
                step_loss = sync.last_loss if sync is not None and t["tbptt"] is None else loss_v
                if math.isfinite(step_loss) and not model.skip_step:
                    recorder.commit_partial(pending)
                pending = None
            model.stop_training = ctx.any(model.stop_training)
            if model.stop_training:
                break
            if every and model.global_step - last_ckpt >= every and b + 1 < len(batches):
                last_ckpt = model.global_step
                recorder.extra = _extra_state(ctx, monitor_cb, t["batch_size"] * world)
                pending = recorder.snapshot_partial(epoch, b + 1, _reduce_sums(ctx, sums))
        total = _reduce_sums(ctx, sums)
        logs = {k: M.finish(k, *v) if k != "loss" else v[0] / max(v[1], 1) for k, v in total.items()}
        if val is not None:
            vlogs = None
            if ctx.main:
                vlogs = model.evaluate(val[0], val[1], batch_size=t["batch_size"], lengths=val[2], verbose=0,
                                       return_dict=True)
            vlogs = ctx.broadcast(vlogs)
            logs.update({f"val_{k}": v for k, v in vlogs.items()})
        recorder.extra = _extra_state(ctx, monitor_cb, t["batch_size"] * world)
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        model.stop_training = ctx.any(model.stop_training)
        if model.stop_training:
            break
    for cb in cbs:
        cb.on_train_end({})


def _extra_state(ctx, monitor_cb, global_batch: int) -> dict:
    """Per-rank RNG states (gathered to every rank), the monitor's state and the global batch size
    (what a batch index means), for a checkpoint."""
    extra: dict[str, Any] = {"monitor_state": monitor_state(monitor_cb), "global_batch": global_batch}
    if ctx.enabled:
        extra["rng_ranks"] = ctx.gather(rng_state())
        extra["world_size"] = ctx.world
    return extra


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
class TrainResult(dict):
    """The final JSON object (also returned by :func:`train`)."""


_SIZE_KEYS = ("units", "output_dim", "input_dim")
_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _largest_size(specs: list[dict], prefix: str = "model.layers") -> tuple[str | None, int | None]:
    """The key path and value of the largest layer size in the specs (for error messages)."""
    best: tuple[str | None, int | None] = (None, None)
    for i, spec in enumerate(specs or []):
        inner = [(f"{prefix}[{i}]", spec)]
        for sub in ("layer", "backward_layer"):
            if isinstance(spec.get(sub), dict):
                inner.append((f"{prefix}[{i}].{sub}", spec[sub]))
        for path, sp in inner:
            for k in _SIZE_KEYS:
                v = sp.get(k)
                if isinstance(v, int) and not isinstance(v, bool) and (best[1] is None or v > best[1]):
                    best = (f"{path}.{k}", v)
    return best


def estimate_params(specs: list[dict], n_in: int) -> int:
    """Approximate parameter count of resolved layer specs on ``n_in`` input features (LSTM/GRU/
    SimpleRNN/Bidirectional/Dense/Embedding; other layers count 0 and keep the width)."""
    total, width = 0, int(n_in)
    for spec in specs:
        kind = spec.get("type")
        if kind == "Embedding":
            total += int(spec.get("input_dim") or 0) * int(spec["output_dim"])
            width = int(spec["output_dim"])
        elif kind in _GATES:
            u = int(spec["units"])
            total += _GATES[kind] * u * (width + u + 2)
            width = u
        elif kind == "Bidirectional":
            inner = spec["layer"]
            u = int(inner["units"])
            total += 2 * _GATES.get(inner.get("type"), 4) * u * (width + u + 2)
            width = 2 * u if spec.get("merge_mode", "concat") == "concat" else u
        elif kind == "Dense":
            u = int(spec["units"])
            total += width * u + u
            width = u
    return total


def _available_bytes() -> int | None:
    """Memory this process can still get: MemAvailable (free + reclaimable cache), capped by a cgroup
    v2 limit when there is one; None when unknown (not Linux)."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def _check_model_size(cfg: dict, meta: dict, config_path) -> None:
    """Refuse a model whose weights, gradients and optimizer state would not fit in memory."""
    n_in = int(meta.get("n_features") or 1)
    n = estimate_params(cfg["model"]["layers"], n_in)
    itemsize = 8 if cfg["model"].get("dtype") == "float64" else 4
    need = 4 * n * itemsize  # weights, gradients, two Adam moments
    avail = _available_bytes()
    if avail is not None and need > avail:
        key, value = _largest_size(cfg["model"]["layers"])
        raise ConfigError(f"{config_path}: {key or 'model.layers'}: {value} makes a model of about {n:.3g} "
                          f"parameters ({need / 2**30:.3g} GiB with gradients and optimizer state), "
                          "more than "
                          f"the {avail / 2**30:.3g} GiB of memory available")


def _monitor_callback(cfg: dict, steps_per_epoch: int, config_path=None):
    mon = cfg["train"]["monitor"]
    if not mon or not mon.get("enabled", True):
        return None
    try:
        from .diagnostics import GradientMonitor
    except ImportError:
        warnings.warn("lstmlab.diagnostics is not available; gradient_health.jsonl stays empty", stacklevel=2)
        return None
    if mon.get("every") is None:
        mon["every"] = max(1, math.ceil(steps_per_epoch / 4))
    kwargs = {k: v for k, v in mon.items() if k != "enabled" and v is not None}
    try:
        return GradientMonitor(**kwargs)
    except (TypeError, ValueError) as exc:
        where = f"{config_path}: " if config_path is not None else ""
        raise ConfigError(f"{where}train.monitor: {exc}") from None


def _final_metrics(model, splits, cfg: dict, batch_size: int) -> dict:
    meta = splits.meta
    out: dict[str, Any] = {}
    for name in ("val", "test"):
        part = getattr(splits, name)
        if len(part) == 0:
            out[name] = None
            continue
        x, y, lengths = _tensors(part)
        res = model.evaluate(x, y, batch_size=batch_size, lengths=lengths, return_dict=True)
        if meta.get("kind") == "language_model":
            res["bits_per_char"] = res["loss"] / math.log(2)
        scaler = meta.get("scaler")
        if meta.get("kind") == "regression" and scaler is not None and hasattr(scaler, "inverse_transform") \
                and getattr(scaler, "method", "none") != "none":
            pred = scaler.inverse_transform(model.predict(x, batch_size=batch_size, lengths=lengths))
            true = scaler.inverse_transform(part.y)
            res["rmse_original_units"] = float(np.sqrt(np.mean((pred - true) ** 2)))
            res["mae_original_units"] = float(np.mean(np.abs(pred - true)))
        out[name] = res
    return out


def _baseline(meta: dict) -> dict | None:
    b = meta.get("baseline")
    if not isinstance(b, dict):
        return None
    b = {k: v for k, v in b.items() if isinstance(v, (int, float, str)) and k != "note"}
    if "persistence_test_mse" in b:
        b["persistence_test_rmse"] = math.sqrt(b["persistence_test_mse"])
    return b or None


def train(config: str | os.PathLike | None, run_dir: str | os.PathLike, resume: bool = False,
          out=print) -> TrainResult:
    """Train the config into ``run_dir`` (see the module doc); return the final metrics.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank calls this; see :mod:`lstmlab.distributed`."""
    from . import distributed

    ctx = distributed.from_env()
    try:
        if ctx.main:
            return _train(ctx, config, run_dir, resume, out)
        with warnings.catch_warnings():  # rank 0 speaks for the job
            warnings.simplefilter("ignore")
            return _train(ctx, config, run_dir, resume, lambda *a, **k: None)
    finally:
        ctx.close()


class _Setup:
    """Everything checked before training starts (on every rank)."""

    cfg: dict
    config_path: Path
    splits: Any
    model: Any
    monitor_cb: Any
    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None
    val: tuple | None
    checkpoint: tuple | None = None  # (weights, optimizer state, training state) on resume (rank 0)


def _setup(ctx, config, run_dir: Path, resume: bool) -> _Setup:
    """Read and check the config, the run directory (rank 0), the data and the model; raise the
    user's error before anything is written or any rank starts training."""
    from . import losses as L

    su = _Setup()
    ckpt_dir = run_dir / "checkpoints"
    state_path = ckpt_dir / "state.json"
    stored_cfg = run_dir / "config.resolved.json"
    if config is None:
        if not resume:
            raise ConfigError("CONFIG: missing; give a config file (or --resume with a run dir)")
        if not stored_cfg.exists():
            raise RunDirError(f"{run_dir}: no config.resolved.json to resume from; give the config file")
        su.config_path = stored_cfg
        su.cfg = _validate_stored(stored_cfg)
    else:
        su.config_path = Path(config)
        su.cfg = load_config(su.config_path)
    cfg, config_path = su.cfg, su.config_path
    if ctx.main:
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: --run-dir exists and is not a directory")
        has_run = (ckpt_dir / "last.lstmlab").exists() or state_path.exists()
        if has_run and not resume:
            raise RunDirError(f"{run_dir}: already holds a run (checkpoints/last.lstmlab); pass --resume to "
                              "continue it or choose another --run-dir")
        if resume and not has_run:
            raise RunDirError(f"{run_dir}: nothing to resume (no checkpoints/last.lstmlab)")
    t = cfg["train"]
    ctx.use_device(t["device"])
    seed_everything(t["seed"])
    su.splits = splits = load_data(cfg, config_path)
    meta = splits.meta
    if len(splits.train) == 0:
        raise ConfigError(f"{config_path}: data: the training split is empty")
    su.model = model = build_model(cfg, meta, config_path)
    if resume and ctx.main and stored_cfg.exists():
        try:
            before = json.loads(stored_cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{stored_cfg}: unreadable ({exc}); cannot check the config") from None
        for section in ("data", "model"):
            d = _diff(before.get(section), cfg[section], section)
            if d:
                raise RunDirError(f"{run_dir}: was started with a different config: {d}; resume with the "
                                  "same [data] and [model] or choose another --run-dir")
    if t["early_stopping"] is not None and t["early_stopping"].get("monitor"):
        if t["checkpoint_monitor"] and t["checkpoint_monitor"] != t["early_stopping"]["monitor"]:
            raise ConfigError(f"{config_path}: train.early_stopping.monitor: expected the same metric as "
                              f"train.checkpoint_monitor ({t['checkpoint_monitor']!r}), got "
                              f"{t['early_stopping']['monitor']!r}")
        t["checkpoint_monitor"] = t["early_stopping"]["monitor"]
    has_val = len(splits.val) > 0
    if t["checkpoint_monitor"] is None:
        t["checkpoint_monitor"] = "val_loss" if has_val else "loss"
    known = ["loss"] + t["metrics"]
    known += [f"val_{k}" for k in known] if has_val else []
    if t["checkpoint_monitor"] not in known:
        from .config import suggest

        raise ConfigError(f"{config_path}: train.checkpoint_monitor: {t['checkpoint_monitor']!r} is not "
                          f"logged{suggest(t['checkpoint_monitor'], known)} (logged: {', '.join(known)})")
    if t["early_stopping"] is not None:
        t["early_stopping"]["monitor"] = t["checkpoint_monitor"]

    x, y, lengths = _tensors(splits.train)
    steps_per_epoch = math.ceil(len(splits.train) / (t["batch_size"] * ctx.world))
    su.monitor_cb = _monitor_callback(cfg, steps_per_epoch, config_path)

    # the model's weights and the training tensors, checked as fit checks them ------------------
    x, y, lengths = model._check_xy(x, y, lengths)
    _check_model_size(cfg, meta, config_path)
    try:
        model.build(x[:2], None if lengths is None else lengths[:2])
        # lazy weights
        model.to(device=ctx.device, dtype=getattr(torch, cfg["model"].get("dtype", "float32")))
        model._ensure_optimizer()
    except (RuntimeError, MemoryError, OverflowError, TypeError) as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        key, value = _largest_size(cfg["model"]["layers"])
        raise ConfigError(f"{config_path}: {key or 'model.layers'}: cannot build the model"
                          f"{f' with {value}' if key else ''} ({text})") from None
    if x.is_floating_point() and x.dtype != model._dtype():
        x = x.to(model._dtype())
    with torch.no_grad():
        model.eval()
        probe = model(x[:2].to(ctx.device), lengths=None if lengths is None else lengths[:2],
                      logits=model._logit_mode())
        model.train()
        y = L.prepare_target(model.loss_name, y, (x.shape[0],) + tuple(probe.shape[1:]))
    if t["tbptt"] is not None and lengths is not None:
        raise ConfigError(f"{config_path}: train.tbptt: variable-length sequences (lengths/mask) are not "
                          "supported with truncated BPTT; remove tbptt or use equal-length data")
    su.x, su.y, su.lengths = x, y, lengths
    su.val = None
    if has_val:
        vx, vy, vl = _tensors(splits.val)
        vx, vy, vl = model._check_xy(vx, vy, vl, prefix="validation_data ")
        su.val = (vx, vy, vl)
    if resume and ctx.main:
        last = ckpt_dir / "last.lstmlab"
        weights, opt_state, saved = read_checkpoint(last)
        if saved is None and state_path.exists():
            saved = json.loads(state_path.read_text())
        if saved is None:
            raise RunDirError(f"{last}: holds no training state; cannot resume")
        _load_weights(model, weights, opt_state, t, last)  # checked here, loaded again on every rank
        su.checkpoint = (weights, opt_state, saved)
    return su


def _load_weights(model, weights: dict, opt_state: dict | None, t: dict, path: Path) -> None:
    try:
        model.load_state_dict(weights)
        if opt_state is not None:
            model.optimizer.load_state_dict(opt_state)
            for group in model.optimizer.param_groups:  # [train] changes apply on resume
                group["lr"] = t["learning_rate"]
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RunDirError(f"{path}: does not match the model of the config "
                          f"({str(exc).splitlines()[0]})") from None


def _rank_seed(seed: int, rank: int) -> int:
    return (int(seed) + 104_729 * int(rank)) % 2**32


def _train(ctx, config, run_dir, resume: bool, out) -> TrainResult:
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    state_path = ckpt_dir / "state.json"
    stored_cfg = run_dir / "config.resolved.json"
    try:
        su: _Setup | None = _setup(ctx, config, run_dir, resume)
        err = None
    except Exception as exc:  # noqa: BLE001 - every rank must learn that one rank gave up
        su, err = None, exc
    err = ctx.agree(err)
    if err is not None:
        raise err
    assert su is not None
    cfg, config_path, splits, model, monitor_cb = su.cfg, su.config_path, su.splits, su.model, su.monitor_cb
    meta, t = splits.meta, cfg["train"]

    # the run directory (rank 0) ------------------------------------------------------------------
    if ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)
        for stale in [*run_dir.glob(".*.tmp"), *ckpt_dir.glob(".*.tmp")]:  # writes cut short by a crash
            stale.unlink(missing_ok=True)
        write_json(stored_cfg, cfg)
        write_text(run_dir / "config.resolved.toml",
                   dumps_toml(cfg, header=f"resolved from {config_path} by lstmlab train; "
                                          "None values omitted"))
        write_json(run_dir / "data_meta.json", {k: v for k, v in splits.meta_dict().items()
                                                if k not in ("vocab", "times")})
        vocab = meta.get("vocab")
        if vocab is not None:
            write_json(run_dir / "vocab.json", {"tokens": list(vocab), "char_level": bool(vocab.char_level),
                                                "kind": meta.get("kind"), "seq_len": meta.get("seq_len"),
                                                "max_len": meta.get("max_len"), "source": meta.get("source")})

    state: dict[str, Any] = {"version": STATE_VERSION, "epoch": 0, "global_step": 0, "best": None,
                             "best_epoch": None, "wait": 0, "status": "running",
                             "monitor": t["checkpoint_monitor"], "time_s": 0.0, "batch": 0}
    if resume:
        weights, opt_state, saved = ctx.broadcast(su.checkpoint)
        if not ctx.main:
            _load_weights(model, weights, opt_state, t, ckpt_dir / "last.lstmlab")
        state.update(saved)
        model.global_step = int(state.get("global_step", 0))
        ranks = state.get("rng_ranks")
        if ctx.enabled and isinstance(ranks, list) and len(ranks) == ctx.world:
            set_rng_state(ranks[ctx.rank])
        elif state.get("rng") and ctx.main:
            set_rng_state(state["rng"])
        elif ctx.enabled:  # resumed on another number of ranks: fresh per-rank streams
            seed_everything(_rank_seed(t["seed"] + model.global_step, ctx.rank))
        state.pop("rng_ranks", None)
        done, gs = int(state["epoch"]), model.global_step
        if ctx.main:
            _truncate_jsonl(run_dir / "metrics.jsonl", lambda r: int(r.get("epoch", 0)) <= done)
            _truncate_jsonl(run_dir / "gradient_health.jsonl",
                            lambda r: int(r["step"]) < gs if isinstance(r.get("step"), int)
                            else int(r.get("epoch", 0)) <= done)
        if state.get("status") == "diverged":
            state["status"] = "running"
    else:
        ctx.broadcast_params(model)
        if ctx.enabled:  # dropout masks differ between ranks; the data order does not
            seed_everything(_rank_seed(t["seed"], ctx.rank))
        if ctx.main:
            for name in ("metrics.jsonl", "gradient_health.jsonl"):
                (run_dir / name).unlink(missing_ok=True)
            (run_dir / "metrics.jsonl").touch()
            (run_dir / "gradient_health.jsonl").touch()
    start, start_batch = int(state["epoch"]), int(state.get("batch") or 0)
    partial = state.get("epoch_sums") if start_batch else None
    global_batch = t["batch_size"] * ctx.world
    if start_batch and state.get("global_batch") and int(state["global_batch"]) != global_batch:
        done_samples = start_batch * int(state["global_batch"])
        start_batch = done_samples // global_batch  # re-runs at most one global batch's worth of samples
        warnings.warn(f"the checkpoint is {done_samples} samples into epoch {start + 1} with global batches of "
                      f"{state['global_batch']}; now {global_batch} (batch_size x ranks): continuing at batch "
                      f"{start_batch}, which is not an exact replay", stacklevel=2)

    writer = _tensorboard(run_dir / "tb", purge_step=start + 1 if resume else None) if ctx.main else None
    recorder = RunRecorder(run_dir, cfg, state, t["checkpoint_monitor"], writer, monitor_cb, out,
                           main=ctx.main)
    recorder.carry_s = float(state.get("partial_time_s") or 0.0) if start_batch else 0.0
    verbose = t.get("verbose", 1)
    if verbose:
        out(splits.summary(), flush=True)
        where = (f"resuming in epoch {start + 1} after batch {start_batch} (step {model.global_step})"
                 if start_batch else f"resuming after epoch {start}") if resume else "starting"
        par = f"; {ctx.world} ranks, global batch {t['batch_size'] * ctx.world}" if ctx.enabled else ""
        out(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; run dir {run_dir}; "
            + where + par, flush=True)
    stopped_early = state.get("status") == "early_stopped"
    if start < t["epochs"] and not stopped_early:
        try:
            fit_loop(model, su.x, su.y, su.lengths, su.val, t, ctx, monitor_cb, recorder, start_epoch=start,
                     start_batch=start_batch, partial=partial, monitor_saved=state.get("monitor_state"))
        finally:
            if writer is not None:
                writer.close()
    elif writer is not None:
        writer.close()
        if verbose:
            out(f"nothing to train: the run already finished after epoch {start} ({state.get('status')})")

    # final model (rank 0) ------------------------------------------------------------------------
    status = state.get("status", "completed")
    if status == "running":
        status = state["status"] = "completed" if state["epoch"] >= t["epochs"] else "stopped"
    result = TrainResult({"run_dir": str(run_dir), "status": status, "epochs": state["epoch"],
                          "best_epoch": state.get("best_epoch"), "monitor": t["checkpoint_monitor"],
                          "best": state.get("best"), "val": None, "test": None,
                          "baseline": _baseline(meta), "time_s": round(state.get("time_s", 0.0), 2)})
    if status == "diverged":
        result["diverged_epoch"] = state.get("diverged_epoch")
    if ctx.enabled:
        result["world_size"] = ctx.world
    if not ctx.main:
        ctx.barrier()
        return result
    if status == "diverged" and (ckpt_dir / "last.lstmlab").exists():
        model.load_state_dict(read_checkpoint(ckpt_dir / "last.lstmlab")[0])
    elif t["early_stopping"] is not None and t["early_stopping"]["restore_best_weights"] \
            and (ckpt_dir / "best.lstmlab").exists():
        model.load_state_dict(read_checkpoint(ckpt_dir / "best.lstmlab")[0])
    if _finite_params(model):
        model.save(run_dir / "model.lstmlab")
    write_json(state_path, {k: v for k, v in state.items() if not k.startswith("_")}, indent=None)
    metrics = _final_metrics(model, splits, cfg, t["batch_size"]) if _finite_params(model) else {}
    result["val"], result["test"] = metrics.get("val"), metrics.get("test")
    write_json(run_dir / "result.json", result)
    ctx.barrier()
    return result


def _validate_stored(path: Path) -> dict:
    """Re-validate a stored config.resolved.json (paths in it are absolute)."""
    from .config import validate

    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    raw = _drop_none(raw)
    return validate(raw, path)


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d


def _tensorboard(log_dir: Path, purge_step: int | None = None):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed; no events under tb/ (pip install tensorboard)",
                      stacklevel=2)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab train``."""
    p = subparsers.add_parser("train", help="train a model from a TOML config into a run directory",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example configs: examples/configs/*.toml")
    p.add_argument("config", nargs="?", help="TOML config ([data], [model], [train])")
    p.add_argument("--run-dir", required=True, help="directory for checkpoints, metrics and events")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def _print(*a, **k) -> None:
    print(*a, **k)


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab train``: 0 ok, 1 diverged, 2 bad input."""
    from .validation import InputError

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"lstmlab train: warning: {str(message).strip().splitlines()[0]}", file=sys.stderr)

    from .distributed import env_rank

    main_rank = env_rank() == 0  # under torchrun only rank 0 speaks; the others just exit alike
    try:
        with warnings.catch_warnings():
            if not getattr(args, "debug", False):
                warnings.showwarning = one_line
            result = train(args.config, args.run_dir, resume=args.resume, out=_print)
    except (ConfigError, RunDirError, InputError, ValueError, FileNotFoundError, KeyError, OSError) as exc:
        if getattr(args, "debug", False):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if main_rank:
            print(f"lstmlab train: error: {msg}", file=sys.stderr)
        return 2
    if main_rank:
        try:  # the self-contained HTML page of the run; a report problem never fails the training
            from .report import write_report

            print(f"lstmlab train: wrote {write_report(args.run_dir)}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"lstmlab train: warning: report not written ({type(exc).__name__}: {exc})", file=sys.stderr)
        print(json.dumps(_clean(dict(result))), flush=True)
    return 1 if result["status"] == "diverged" else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lstmlab")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train"] + list(sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
