"""Setup of a run, config -> data -> model: everything ``lstmlab train`` checks before it writes a
file or a rank starts training, so a user error is one message naming the key or the file."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import optim
from ..config import ConfigError, build_layers, load_config, resolve_layers, suggest, validate
from ..data import DataError, load
from ..diagnostics import GradientMonitor
from ..ensemble import Ensemble
from ..model import Sequential
from .checkpoint import seed_everything
from .memory import check_model_size, largest_size
from .resume import Resume, config_changes, load_weights, param_groups, read_resume, try_rollback
from .rundir import RunDir, RunDirError

__all__ = ["Setup", "setup", "load_data", "build_model", "default_loss", "default_metrics", "tensors"]


# ---------------------------------------------------------------------------------------------
# data and model
# ---------------------------------------------------------------------------------------------
def load_data(cfg: dict, config_path: str | os.PathLike | None = None):
    """``lstmlab.data.load`` for the ``[data]`` section.  Option errors (no file of their own) are
    reported against the config file; data too large for memory name the size options."""
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


def build_model(cfg: dict, meta: dict, config_path: str | os.PathLike | None = None) -> Sequential:
    """A compiled Sequential for a resolved config and the data's meta."""
    specs = resolve_layers(cfg["model"], meta, config_path)
    cfg["model"]["layers"] = specs
    layers = build_layers(specs, config_path)
    ens = cfg["model"].get("ensemble")
    if ens is not None:
        try:
            layers = [Ensemble(layers, **ens)]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{config_path}: model.ensemble: {exc}" if config_path else f"model.ensemble: {exc}") \
                from None
    model = Sequential(layers, name=cfg["model"].get("name", "sequential"))
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


def _optimizer(t: dict) -> optim.Optimizer:
    opts = dict(t.get("optimizer_options") or {})
    if t.get("weight_decay") is not None:
        opts["weight_decay"] = t["weight_decay"]
    return optim.Optimizer(t["optimizer"], t["learning_rate"], opts)


def tensors(part) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x, y, lengths)`` of a data split as tensors (sharing the arrays' memory)."""
    x = torch.from_numpy(np.ascontiguousarray(part.x))
    y = torch.from_numpy(np.ascontiguousarray(part.y))
    lengths = None if part.lengths is None else torch.from_numpy(part.lengths)
    return x, y, lengths


def monitor_callback(cfg: dict, steps_per_epoch: int, config_path=None) -> GradientMonitor | None:
    """The ``[train.monitor]`` GradientMonitor (sampling 4 times an epoch unless ``every`` is set)."""
    mon = cfg["train"]["monitor"]
    if not mon or not mon.get("enabled", True):
        return None
    if mon.get("every") is None:
        mon["every"] = max(1, math.ceil(steps_per_epoch / 4))
    kwargs = {k: v for k, v in mon.items() if k != "enabled" and v is not None}
    try:
        return GradientMonitor(**kwargs)
    except (TypeError, ValueError) as exc:
        where = f"{config_path}: " if config_path is not None else ""
        raise ConfigError(f"{where}train.monitor: {exc}") from None


# ---------------------------------------------------------------------------------------------
# the whole setup
# ---------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """Everything checked before training starts (on every rank)."""

    cfg: dict
    config_path: Path
    splits: Any = None
    model: Sequential | None = None
    monitor: GradientMonitor | None = None
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    val: tuple | None = None
    checkpoint: Resume | None = None  # on resume (rank 0; broadcast to the others)
    checkpoint_stat: os.stat_result | None = None  # of checkpoints/last.lstmlab as it was read
    before: dict | None = None  # the config the run started with (config.resolved.json), on resume


def setup(ctx, config, rd: RunDir, resume: bool) -> Setup:
    """Read and check the config, the run directory (rank 0), the data and the model; raise the
    user's error before anything is written or any rank starts training."""
    if ctx.main:  # first: the stored config of a --resume is a run file (a planted pipe would block)
        _check_run_dir(rd, resume)
    su = _read_config(config, rd, resume)
    cfg, config_path = su.cfg, su.config_path
    t = cfg["train"]
    ctx.use_device(t["device"])
    seed_everything(t["seed"])
    su.splits = splits = load_data(cfg, config_path)
    if len(splits.train) == 0:
        raise ConfigError(f"{config_path}: data: the training split is empty")
    su.model = build_model(cfg, splits.meta, config_path)
    if resume and ctx.main:
        su.before = _check_same_config(rd, cfg)
    _resolve_monitor(t, config_path, has_val=len(splits.val) > 0)
    steps_per_epoch = math.ceil(len(splits.train) / (t["batch_size"] * ctx.world))
    su.monitor = monitor_callback(cfg, steps_per_epoch, config_path)
    _prepare_tensors(su, ctx)
    if resume and ctx.main:
        su.checkpoint_stat = _stat(rd.last)
        su.checkpoint = _read_last(rd, su, int(su.x.shape[0]))
    return su


def _read_config(config, rd: RunDir, resume: bool) -> Setup:
    if config is not None:
        return Setup(load_config(Path(config)), Path(config))
    if not resume:
        raise ConfigError("CONFIG: missing; give a config file (or --resume with a run dir)")
    if not rd.config_json.exists():
        raise RunDirError(f"{rd.root}: no {rd.CONFIG_JSON} to resume from; give the config file")
    return Setup(validate_stored(rd.config_json), rd.config_json)


def _check_run_dir(rd: RunDir, resume: bool) -> None:
    rd.check("train")
    check_run(rd, resume)


def check_run(rd: RunDir, resume: bool) -> None:
    """A run to resume is there with --resume, and none without (again once the lock is held)."""
    has_run = rd.has_run()
    if has_run and not resume:
        raise RunDirError(f"{rd.root}: already holds a run ({rd.CHECKPOINTS}/{rd.LAST}); pass --resume to "
                          "continue it or choose another --run-dir")
    if resume and not has_run:
        raise RunDirError(f"{rd.root}: nothing to resume (no {rd.CHECKPOINTS}/{rd.LAST})")


def _check_same_config(rd: RunDir, cfg: dict) -> dict | None:
    """A resume must use the [data] and [model] of the run it continues; returns that run's config."""
    if not rd.config_json.exists():
        return None
    try:
        before = json.loads(rd.config_json.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RunDirError(f"{rd.config_json}: unreadable ({type(exc).__name__}); cannot check the config") from None
    if not isinstance(before, dict):
        raise RunDirError(f"{rd.config_json}: expected a JSON object, got {type(before).__name__}")
    for section in ("data", "model"):
        d = _diff(before.get(section), cfg[section], section)
        if d:
            raise RunDirError(f"{rd.root}: was started with a different config: {d}; resume with the "
                              "same [data] and [model] or choose another --run-dir")
    return before


def _resolve_monitor(t: dict, config_path, has_val: bool) -> None:
    """``train.checkpoint_monitor`` (and the early-stopping monitor): one logged metric."""
    es = t["early_stopping"]
    if es is not None and es.get("monitor"):
        if t["checkpoint_monitor"] and t["checkpoint_monitor"] != es["monitor"]:
            raise ConfigError(f"{config_path}: train.early_stopping.monitor: expected the same metric as "
                              f"train.checkpoint_monitor ({t['checkpoint_monitor']!r}), got {es['monitor']!r}")
        t["checkpoint_monitor"] = es["monitor"]
    if t["checkpoint_monitor"] is None:
        t["checkpoint_monitor"] = "val_loss" if has_val else "loss"
    known = ["loss"] + t["metrics"]
    known += [f"val_{k}" for k in known] if has_val else []
    if t["checkpoint_monitor"] not in known:
        raise ConfigError(f"{config_path}: train.checkpoint_monitor: {t['checkpoint_monitor']!r} is not "
                          f"logged{suggest(t['checkpoint_monitor'], known)} (logged: {', '.join(known)})")
    if es is not None:
        es["monitor"] = t["checkpoint_monitor"]


def _prepare_tensors(su: Setup, ctx) -> None:
    """The training and validation tensors, checked as ``fit`` checks them; the model built."""
    cfg, config_path, model = su.cfg, su.config_path, su.model
    t = cfg["train"]
    x, y, lengths = model.check_inputs(*tensors(su.splits.train))
    check_model_size(cfg, su.splits.meta, config_path)
    try:
        model.build(x[:2], None if lengths is None else lengths[:2])  # lazy weights
        model.to(device=ctx.device, dtype=getattr(torch, cfg["model"].get("dtype", "float32")))
    except (RuntimeError, MemoryError, OverflowError, TypeError) as exc:
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        key, value = largest_size(cfg["model"]["layers"])
        raise ConfigError(f"{config_path}: {key or 'model.layers'}: cannot build the model"
                          f"{f' with {value}' if key else ''} ({text})") from None
    x, y = model.prepare_training(x, y, lengths)
    if t["tbptt"] is not None and lengths is not None:
        raise ConfigError(f"{config_path}: train.tbptt: variable-length sequences (lengths/mask) are not "
                          "supported with truncated BPTT; remove tbptt or use equal-length data")
    su.x, su.y, su.lengths = x, y, lengths
    if len(su.splits.val) > 0:
        su.val = model.check_inputs(*tensors(su.splits.val), prefix="validation_data ")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def same_checkpoint(rd: RunDir, before: os.stat_result | None) -> bool:
    """Whether ``checkpoints/last.lstmlab`` is still the file that was read (every write replaces it)."""
    now = _stat(rd.last)
    if before is None or now is None:
        return before is None and now is None
    return (before.st_ino, before.st_mtime_ns, before.st_size) == (now.st_ino, now.st_mtime_ns, now.st_size)


def _read_last(rd: RunDir, su: Setup, n_train: int) -> Resume:
    """The last checkpoint, every part checked, loaded into the model (again on every rank later)."""
    model = su.model
    res = read_resume(rd.last, rd.state, n_train)
    res.changed = config_changes(su.before, su.cfg)
    fresh = param_groups(model)
    try_rollback(model, res.rollback, rd.last)
    load_weights(model, res, rd.last, fresh, say=True)
    return res


# ---------------------------------------------------------------------------------------------
# stored configs
# ---------------------------------------------------------------------------------------------
def validate_stored(path: Path) -> dict:
    """Re-validate a stored config.resolved.json (paths in it are absolute)."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from None
    return validate(_drop_none(raw), path)


def _drop_none(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d


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

