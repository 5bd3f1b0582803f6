"""The start of a doctor run: the config read and checked, the data loaded once (facts and a
validation batch for :func:`lstmlab.diagnose`), and the *base config* every candidate is made from.

The base config is the user's config with what the doctor needs made explicit: the layer list
(the data's default model when none is given), the learning rate, data file paths made absolute,
the GradientMonitor switched on, and the weights of the best validation epoch kept
(``checkpoint_monitor = "val_loss"``, ``early_stopping`` with ``restore_best_weights``
and a patience no probe reaches, in place of the user's early stopping: the budget decides how
long a run trains), so that a probe's score is the score of the model it delivers.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import FILE_OPTIONS, ConfigError, default_layers, read_toml, resolve_file, validate
from ..run.setup import load_data
from .facts import DataFacts, facts_from_splits, selection_metric
from .study import DoctorError

__all__ = ["Plan", "make_plan", "KEEP_BEST_PATIENCE"]

KEEP_BEST_PATIENCE = 100_000  # epochs: keep the best epoch's weights, never stop early on the doctor's account


@dataclass
class Plan:
    """What every step of a doctor run starts from."""

    config_path: Path
    raw: dict                 # the user's config as read
    base: dict                # the plain candidate's config (see the module doc)
    facts: DataFacts
    metric: str               # selection metric (val_accuracy / val_loss)
    val_batch: tuple          # (x, y, lengths) of up to diagnose_batch validation samples
    cells: tuple[str, ...]    # recurrent cells of the plain model
    clipped: bool


def _absolute_paths(data: dict, config_path: Path) -> None:
    for k in FILE_OPTIONS:
        v = data.get(k)
        if isinstance(v, str) and not Path(v).expanduser().is_absolute():
            data[k] = str(resolve_file(config_path.resolve().parent, v).resolve())


def _train_section(raw_train: dict, resolved: dict, metric: str) -> dict:
    t = copy.deepcopy(raw_train)
    t["learning_rate"] = resolved["learning_rate"]
    t["checkpoint_monitor"] = "val_loss"  # the smoothest signal on a small validation split (accuracy ties)
    # the budget decides how long a run trains; a probe keeps its best validation epoch's weights
    t["early_stopping"] = {"patience": KEEP_BEST_PATIENCE, "restore_best_weights": True}
    mon = t.get("monitor")
    if mon is False or (isinstance(mon, dict) and mon.get("enabled") is False):
        t["monitor"] = {}
    t.pop("checkpoint_every", None)
    if metric == "val_accuracy":
        metrics = resolved["metrics"] or []
        if "accuracy" not in metrics:
            t["metrics"] = list(metrics) + ["accuracy"]
    return t


def _cells(layers: list[dict]) -> tuple[str, ...]:
    names = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}
    out = []
    for s in layers:
        inner = s.get("layer") if s.get("type") == "Bidirectional" else s
        if isinstance(inner, dict) and inner.get("type") in names and names[inner["type"]] not in out:
            out.append(names[inner["type"]])
    return tuple(out)


def _val_batch(splits, n: int) -> tuple:
    v = splits.val
    lengths = None if v.lengths is None else np.asarray(v.lengths[:n])
    return np.asarray(v.x[:n]), np.asarray(v.y[:n]), lengths


def make_plan(config: str | os.PathLike, diagnose_batch: int = 256) -> Plan:
    """Read, check and load; raise ConfigError / DataError / DoctorError with one clear line."""
    path = Path(config)
    raw = read_toml(path)
    cfg = validate(copy.deepcopy(raw), path)
    splits = load_data(cfg, path)
    facts = facts_from_splits(splits)
    if facts.n_train == 0:
        raise ConfigError(f"{path}: data: the training split is empty")
    if facts.n_val == 0:
        raise DoctorError(f"{path}: data: the doctor selects treatments on validation data, and this config has "
                          "none; give a validation split (e.g. data.n_val or data.val_fraction)")
    metric, _ = selection_metric(facts)
    base: dict[str, Any] = {k: copy.deepcopy(v) for k, v in raw.items() if k in ("data", "model", "train")}
    _absolute_paths(base["data"], path)
    model = base.setdefault("model", {})
    model["layers"] = copy.deepcopy(model.get("layers") or default_layers(splits.meta))
    base["train"] = _train_section(raw.get("train", {}), cfg["train"], metric)
    validate(copy.deepcopy(base), path)  # the doctor's additions are valid settings
    t = cfg["train"]
    clipped = any(t.get(k) is not None for k in ("clipnorm", "clipvalue", "global_clipnorm"))
    return Plan(path, raw, base, facts, metric, _val_batch(splits, diagnose_batch), _cells(model["layers"]), clipped)
