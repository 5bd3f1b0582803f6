"""What a resume restores beyond weights and RNG: the training settings the run changed on its
own, and the gradient monitor's rollback snapshot.

A run changes its own settings while it trains: ``GradientMonitor(on_nan="fix")`` rolls the
weights back and halves every learning rate, ``on_exploding="fix"`` switches gradient clipping
on, ``on_param_growth="fix"`` sets a weight decay.  A checkpoint keeps all of it: the learning
rates and weight decays in the optimizer's parameter groups, the clipping in the training state's
``settings``, and the monitor's last good snapshot (what a later rollback goes back to) as
``rollback/...`` tensors with its optimizer bookkeeping in ``monitor_state.rollback``.  A resume
with the run's own config restores them, so it replays the uninterrupted run exactly.  A config
whose ``[train]`` learning rate, weight decay, optimizer or clipping differs from the one the run
started with is an explicit change: it wins, with a warning naming the key.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import saving
from .rundir import RunDirError
from .state import check_state

__all__ = ["Resume", "read_resume", "train_settings", "apply_settings", "pack_rollback", "config_changes",
           "load_weights", "CONTROLLED"]

ROLLBACK = "rollback/"
CLIP = ("clipnorm", "clipvalue", "global_clipnorm")
CONTROLLED = ("learning_rate", "weight_decay", "optimizer", "optimizer_options") + CLIP
"""``[train]`` keys whose change on resume overrides what the checkpoint holds."""


@dataclass
class Resume:
    """A checkpoint read for a resume (rank 0 reads it; the other ranks get it broadcast)."""

    weights: dict[str, torch.Tensor]
    optimizer: dict | None
    state: dict
    rollback: dict | None = None  # the monitor's snapshot: {"model": ..., "optimizer": ...}
    changed: dict[str, tuple] = field(default_factory=dict)  # [train] key -> (when started, now)


# ---------------------------------------------------------------------------------------------
# settings a run changes on its own
# ---------------------------------------------------------------------------------------------
def train_settings(model) -> dict:
    """The model's clipping (which ``on_exploding="fix"`` may have switched on) and last gradient norm."""
    out = {k: getattr(model, k, None) for k in CLIP}
    out["last_grad_norm"] = getattr(model, "last_grad_norm", None)
    return out


def apply_settings(model, settings: dict | None, changed: dict) -> None:
    """Restore :func:`train_settings`; a clipping key the config changed keeps the config's value."""
    for k, v in (settings or {}).items():
        if k in CLIP and k not in changed:
            setattr(model, k, None if v is None else float(v))
        elif k == "last_grad_norm":
            model.last_grad_norm = None if v is None else float(v)


def config_changes(before: dict | None, now: dict) -> dict[str, tuple]:
    """``[train]`` keys of :data:`CONTROLLED` that differ from the config the run started with."""
    if not isinstance(before, dict) or not isinstance(before.get("train"), dict):
        return {}
    old, new = before["train"], now["train"]
    return {k: (old.get(k), new.get(k)) for k in CONTROLLED if old.get(k) != new.get(k)}


def _config_wins(opt, fresh: list[dict], changed: dict) -> None:
    """Put the config's values back into the parameter groups for the keys it changed."""
    for group, cfg_group in zip(opt.param_groups, fresh):
        for k, v in cfg_group.items():
            if k == "params":
                continue
            key = {"lr": "learning_rate", "weight_decay": "weight_decay"}.get(k)
            if (key is not None and key in changed) or (key is None and changed.keys() & {"optimizer",
                                                                                         "optimizer_options"}):
                group[k] = v


def _warn_changes(changed: dict) -> None:
    for k, (old, new) in changed.items():
        warnings.warn(f"train.{k}: {new!r} in the config, {old!r} when the run started: the config's value "
                      "applies from here on (the checkpoint's is dropped)", stacklevel=3)


def param_groups(model) -> list[dict]:
    """A copy of the optimizer's parameter groups (what the config set, before a checkpoint is loaded)."""
    opt = getattr(model, "optimizer", None)
    return [] if opt is None else [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]


def _check_optimizer_shapes(model, path: Path) -> None:
    """Every per-parameter state tensor has its parameter's shape (torch checks only at the next step)."""
    opt = model.optimizer
    for i, p in enumerate(q for g in opt.param_groups for q in g["params"]):
        for name, t in opt.state.get(p, {}).items():
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape != p.shape:
                raise RunDirError(f"{path}: optimizer state {i}.{name}: expected shape {tuple(p.shape)}, got "
                                  f"{tuple(t.shape)}")


def load_weights(model, res: Resume, path: Path, fresh: list[dict] | None = None, say: bool = False) -> None:
    """Weights and optimizer state of a checkpoint into ``model``: the checkpoint's learning rates and
    weight decays unless the config changed them (``fresh``: the config's parameter groups)."""
    fresh = param_groups(model) if fresh is None else fresh
    try:
        model.load_state_dict(res.weights)
        if res.optimizer is not None:
            model.optimizer.load_state_dict(res.optimizer)
            _config_wins(model.optimizer, fresh, res.changed)
            _check_optimizer_shapes(model, path)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        if isinstance(exc, RunDirError):
            raise
        raise RunDirError(f"{path}: does not match the model of the config ({saving.first_line(exc)})") from None
    if say:
        _warn_changes(res.changed)


# ---------------------------------------------------------------------------------------------
# the monitor's rollback snapshot
# ---------------------------------------------------------------------------------------------
def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().clone()


def pack_rollback(snapshot: dict | None) -> tuple[dict[str, torch.Tensor], dict | None]:
    """``(tensors, info)`` of a ``model.get_state()`` snapshot: tensors under ``rollback/``, the
    optimizer's groups and other values as JSON (``monitor_state.rollback``); ``({}, None)`` for none."""
    if snapshot is None:
        return {}, None
    tensors = {f"{ROLLBACK}model/{k}": _cpu(v) for k, v in snapshot["model"].items()}
    opt = snapshot.get("optimizer")
    if opt is None:
        return tensors, {"optimizer": None}
    other: dict[str, dict] = {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{ROLLBACK}optimizer/{idx}/{k}"] = _cpu(v)
            else:
                other.setdefault(str(idx), {})[k] = saving._jsonable(v)
    return tensors, {"optimizer": {"param_groups": saving._jsonable(opt["param_groups"]), "other": other}}


def _unpack_rollback(tensors: dict[str, torch.Tensor], info: dict) -> dict:
    model = {k[len(ROLLBACK) + 6:]: v for k, v in tensors.items() if k.startswith(f"{ROLLBACK}model/")}
    opt_info = info.get("optimizer")
    if opt_info is None:
        return {"model": model, "optimizer": None}
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith(f"{ROLLBACK}optimizer/"):
            _, _, idx, name = key.split("/", 3)
            state.setdefault(int(idx), {})[name] = v
    for idx, extra in opt_info["other"].items():
        state.setdefault(int(idx), {}).update(saving._unjson(extra))
    return {"model": model, "optimizer": {"state": state, "param_groups": saving._unjson(opt_info["param_groups"])}}


def try_rollback(model, rollback: dict | None, path: Path) -> None:
    """Load the rollback snapshot once (the real weights are loaded after it): a snapshot that does
    not fit the model is refused now, not at the NaN that would need it."""
    if rollback is None:
        return
    try:
        model.set_state(copy.deepcopy(rollback))
        if model.optimizer is not None and rollback.get("optimizer") is not None:
            _check_optimizer_shapes(model, path)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        if isinstance(exc, RunDirError):
            raise
        raise RunDirError(f"{path}: train_state.monitor_state.rollback: does not match the model "
                          f"({saving.first_line(exc)})") from None


# ---------------------------------------------------------------------------------------------
# reading a checkpoint for a resume
# ---------------------------------------------------------------------------------------------
def _train_state(meta: dict, path: Path, fallback: Path) -> Any:
    if "train_state" in meta:
        text, where = meta["train_state"], f"{path}: train_state"
    elif fallback.exists():
        text, where = fallback.read_text(encoding="utf-8", errors="replace"), str(fallback)
    else:
        raise RunDirError(f"{path}: holds no training state; cannot resume")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RunDirError(f"{where}: not valid JSON ({type(exc).__name__}: {saving.first_line(exc)})") from None


def read_resume(path: Path, state_json: Path, n_train: int | None = None) -> Resume:
    """The checkpoint at ``path`` (``state_json``: the training state when the file has none), every
    part checked (:func:`lstmlab.run.state.check_state`); :class:`RunDirError` naming file and key."""
    tensors, meta = saving.read(path)
    where = str(path) if "train_state" in meta else str(state_json)
    state = check_state(_train_state(meta, path, state_json), where, n_train)
    try:
        opt = saving.optimizer_state(tensors, meta, str(path))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        if isinstance(exc, saving.ModelFileError):
            raise
        raise RunDirError(f"{path}: optimizer: unreadable ({saving.first_line(exc)})") from None
    info = (state.get("monitor_state") or {}).get("rollback")
    rollback = None
    if info is not None:
        try:
            rollback = _unpack_rollback(tensors, info)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunDirError(f"{where}: train_state.monitor_state.rollback: unreadable "
                              f"({saving.first_line(exc)})") from None
    return Resume(saving.model_state(tensors), opt, state, rollback)
