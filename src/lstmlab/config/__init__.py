"""Training configs: a TOML file with ``[data]``, ``[model]`` and ``[train]``, checked up front.

Example::

    [data]
    source = "adding"          # a task, packaged set or file kind (see lstmlab.data.SOURCES)
    length = 100               # ... plus that source's options

    [model]
    layers = [{type = "LSTM", units = 64}, {type = "Dense"}]   # last Dense sized from the data

    [train]
    epochs = 10
    batch_size = 64
    learning_rate = 2e-3
    clipnorm = 1.0
    [train.monitor]            # lstmlab.GradientMonitor
    every = 50

Each setting's type, default and constraint is written once: ``[train]`` in the dataclasses of
:mod:`.training`, ``[data]`` options in the loader's signature, layer arguments in the layer's
constructor, ``[train.monitor]`` in GradientMonitor's; :mod:`.schema` holds the checks that read them.
Every problem is reported as :class:`ConfigError` naming the file and the key path
(``train.batch_sise: unknown key; did you mean 'batch_size'?``); :func:`load_config` returns a
plain dict with every default filled in (what ``config.resolved.toml`` holds).
"""

from __future__ import annotations

import os

from .data import FILE_OPTIONS, resolve_file, validate_data
from .model import build_layers, default_layers, resolve_layers, validate_model
from .schema import MAX_DEPTH, ConfigError, Ctx, check_tree, suggest, type_name
from .tomlio import dumps_toml, read_toml, tomllib
from .training import (
    DEVICES,
    EARLY_STOPPING_DEFAULTS,
    TRAIN_DEFAULTS,
    EarlyStopping,
    Train,
    monitor_settings,
    validate_train,
)

__all__ = ["ConfigError", "load_config", "validate", "read_toml", "resolve_layers", "build_layers",
           "default_layers", "dumps_toml", "suggest", "resolve_file", "TRAIN_DEFAULTS", "EARLY_STOPPING_DEFAULTS",
           "FILE_OPTIONS", "DEVICES", "SECTIONS", "IGNORED_SECTIONS", "MAX_DEPTH", "Train", "EarlyStopping",
           "monitor_settings", "tomllib"]

SECTIONS = ("data", "model", "train")
# Top-level tables that belong to other commands and are passed over here.
IGNORED_SECTIONS = ("tune",)


def load_config(path: str | os.PathLike, *, check_files: bool = True) -> dict:
    """Read and validate a config file; return the resolved config (defaults filled in)."""
    return validate(read_toml(path), path=path, check_files=check_files)


def validate(raw: dict, path: str | os.PathLike | None = None, *, check_files: bool = True) -> dict:
    """Check a parsed config and fill in defaults.  Raises :class:`ConfigError` naming the key path."""
    ctx = Ctx(path)
    if not isinstance(raw, dict):
        raise ctx.error("", f"expected a table at the top level, got {type_name(raw)}")
    check_tree(ctx, raw)
    for k in raw:
        if k not in SECTIONS + IGNORED_SECTIONS:
            raise ctx.unknown("", k, SECTIONS + IGNORED_SECTIONS)
    if "data" not in raw:
        raise ctx.error("data", 'missing section; add [data] with source = "..." (e.g. "adding")')
    for k in SECTIONS:
        if k in raw:
            ctx.check_type(k, raw[k], ("table",))
    return {"data": validate_data(ctx, raw["data"], check_files),
            "model": validate_model(ctx, raw.get("model", {})),
            "train": validate_train(ctx, raw.get("train", {}))}
