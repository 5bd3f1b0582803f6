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

Every problem is reported as :class:`ConfigError` naming the file and the key path
(``train.batch_sise: unknown key; did you mean 'batch_size'?``); :func:`load_config` returns a
plain dict with every default filled in (what ``config.resolved.toml`` holds).
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "load_config", "validate", "resolve_layers", "dumps_toml", "TRAIN_DEFAULTS",
           "FILE_OPTIONS"]

# Top-level tables that belong to other commands and are passed over here.
IGNORED_SECTIONS = ("tune",)

# Data-source options that name files; relative paths are resolved against the config's folder.
FILE_OPTIONS = ("path", "val_path", "test_path")

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "adam",
    "optimizer_options": {},
    "learning_rate": None,       # None: the optimizer's default (adam 1e-3)
    "loss": None,                # None: from the data (mse / sparse_categorical_crossentropy)
    "metrics": None,             # None: from the data (mae / accuracy)
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "weight_decay": None,
    "seed": 0,
    "tbptt": None,
    "shuffle": True,
    "checkpoint_monitor": None,  # None: val_loss when there is validation data, else loss
    "early_stopping": None,      # a patience (int) or a table, see EARLY_STOPPING_DEFAULTS
    "monitor": None,             # GradientMonitor options; see MONITOR_DEFAULTS
    "verbose": 1,
    "checkpoint_every": None,    # also write checkpoints/last.lstmlab every N steps (mid-epoch resume)
    "device": "cpu",             # "cpu" or "cuda" (under torchrun: cuda:LOCAL_RANK, NCCL)
}

EARLY_STOPPING_DEFAULTS: dict[str, Any] = {"patience": 5, "monitor": None, "min_delta": 0.0,
                                           "restore_best_weights": True}

# [train.monitor]: ``enabled`` plus any GradientMonitor keyword (checked against its signature
# when the diagnostics module is installed; these are the documented ones).
MONITOR_DEFAULTS: dict[str, Any] = {"enabled": True, "every": None, "on_vanishing": "warn",
                                    "on_exploding": "warn", "on_nan": "stop"}

# expected types: a tuple of python types, "number" (int or float, not bool), "int", "str", ...
_NUMBER = "number"
_TRAIN_TYPES: dict[str, tuple] = {
    "epochs": ("int",), "batch_size": ("int",), "optimizer": ("str",), "optimizer_options": ("table",),
    "learning_rate": (_NUMBER, "none"), "loss": ("str", "none"), "metrics": ("list", "str", "none"),
    "clipnorm": (_NUMBER, "none"), "clipvalue": (_NUMBER, "none"), "global_clipnorm": (_NUMBER, "none"),
    "weight_decay": (_NUMBER, "none"), "seed": ("int",), "tbptt": ("int", "none"), "shuffle": ("bool",),
    "checkpoint_monitor": ("str", "none"), "early_stopping": ("int", "table", "bool", "none"),
    "monitor": ("table", "bool", "none"), "verbose": ("int",), "checkpoint_every": ("int", "none"),
    "device": ("str",),
}
_POSITIVE = {"epochs", "batch_size", "learning_rate", "clipnorm", "clipvalue", "global_clipnorm", "tbptt",
             "checkpoint_every"}
DEVICES = ("cpu", "cuda")


class ConfigError(ValueError):
    """A bad config: the message names the file, the key path, what was expected and what was got."""


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def suggest(word: str, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (difflib), or ``""``."""
    choices = [str(c) for c in choices]
    match = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if not match:
        low = {c.lower(): c for c in choices}
        match = [low[m] for m in difflib.get_close_matches(str(word).lower(), list(low), n=1, cutoff=0.6)]
    return f"; did you mean {match[0]!r}?" if match else ""


def _type_name(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a float"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return type(v).__name__


def _show(v: Any) -> str:
    text = repr(v) if not isinstance(v, (dict, list)) else json.dumps(v, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_WORDS = {"int": "an integer", _NUMBER: "a number", "str": "a string", "bool": "a boolean",
               "table": "a table", "list": "an array", "none": "nothing"}


def _matches(kind: str, v: Any) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == _NUMBER:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "table":
        return isinstance(v, dict)
    if kind == "list":
        return isinstance(v, list)
    if kind == "none":
        return v is None
    return True


class _Ctx:
    """Where we are: the config file (for messages) and its folder (for relative paths)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else Path(path)
        self.base = Path.cwd() if path is None else Path(path).resolve().parent

    def error(self, key: str, msg: str) -> ConfigError:
        where = f"{self.path}: " if self.path is not None else ""
        return ConfigError(f"{where}{key}: {msg}" if key else f"{where}{msg}")

    def check_type(self, key: str, v: Any, kinds: tuple) -> None:
        if not any(_matches(k, v) for k in kinds):
            want = " or ".join(_TYPE_WORDS[k] for k in kinds if k != "none")
            raise self.error(key, f"expected {want}, got {_type_name(v)} {_show(v)}")

    def unknown(self, key: str, name: str, known) -> ConfigError:
        known = list(known)
        return self.error(f"{key}.{name}" if key else name,
                          f"unknown key{suggest(name, known)} (valid keys: {', '.join(known)})")


def _kinds_from_default(default: Any) -> tuple | None:
    """Expected kinds for an option from its default value (None: anything goes)."""
    if default is None or default is inspect.Parameter.empty:
        return None
    if isinstance(default, bool):
        return ("bool",)
    if isinstance(default, int):
        return ("int",)
    if isinstance(default, float):
        return (_NUMBER,)
    if isinstance(default, str):
        return ("str",)
    if isinstance(default, (list, tuple)):
        return ("list", "str")
    return None


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def read_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; a missing file or bad syntax raises ConfigError naming the file/line."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such config file")
    if p.is_dir():
        raise ConfigError(f"{p}: expected a TOML file, got a directory")
    try:
        raw = p.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark (Windows editors): harmless
            raw = raw[3:]
        return tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_config(path: str | os.PathLike, *, check_files: bool = True) -> dict:
    """Read and validate a config file; return the resolved config (defaults filled in)."""
    raw = read_toml(path)
    return validate(raw, path=path, check_files=check_files)


def validate(raw: dict, path: str | os.PathLike | None = None, *, check_files: bool = True) -> dict:
    """Check a parsed config and fill in defaults.  Raises :class:`ConfigError`."""
    ctx = _Ctx(path)
    if not isinstance(raw, dict):
        raise ctx.error("", f"expected a table at the top level, got {_type_name(raw)}")
    sections = ("data", "model", "train")
    for k in raw:
        if k in IGNORED_SECTIONS:
            continue  # read by other commands (``lstmlab tune``); training ignores it
        if k not in sections:
            raise ctx.unknown("", k, sections + IGNORED_SECTIONS)
    if "data" not in raw:
        raise ctx.error("data", 'missing section; add [data] with source = "..." (e.g. "adding")')
    for k in sections:
        if k in raw:
            ctx.check_type(k, raw[k], ("table",))
    out = {"data": _validate_data(ctx, raw["data"], check_files),
           "model": _validate_model(ctx, raw.get("model", {})),
           "train": _validate_train(ctx, raw.get("train", {}))}
    return out


def _validate_data(ctx: _Ctx, data: dict, check_files: bool) -> dict:
    from .data import SOURCES
    from .data.registry import REQUIRED, resolve_source

    if "source" not in data:
        raise ctx.error("data.source", f"missing; expected one of {', '.join(SOURCES)}")
    ctx.check_type("data.source", data["source"], ("str",))
    try:
        src = resolve_source(data["source"])
    except ValueError:
        raise ctx.error("data.source", f"unknown source {data['source']!r}{suggest(data['source'], SOURCES)} "
                                       f"(sources: {', '.join(SOURCES)})") from None
    options = src.options
    out: dict[str, Any] = {"source": src.name}
    for k, v in data.items():
        if k == "source":
            continue
        if k not in options:
            raise ctx.unknown("data", k, ["source"] + list(options))
        kinds = _kinds_from_default(options[k])
        if kinds is not None:
            ctx.check_type(f"data.{k}", v, kinds + (("none",) if options[k] is None else ()))
        if k in FILE_OPTIONS and v is not None:
            ctx.check_type(f"data.{k}", v, ("str",))
            v = _resolve_file(ctx, f"data.{k}", v, check_files)
        out[k] = v
    for k, default in options.items():
        if k in out:
            continue
        if default is REQUIRED:
            raise ctx.error(f"data.{k}", f"missing; data source {src.name!r} needs it")
        out[k] = default.copy() if isinstance(default, (list, dict)) else (
            list(default) if isinstance(default, tuple) else default)
    return out


def _resolve_file(ctx: _Ctx, key: str, value: str, check: bool) -> str:
    p = Path(value).expanduser()
    if not p.is_absolute():
        here = ctx.base / p
        p = here if (here.exists() or not (Path.cwd() / p).exists()) else Path.cwd() / p
    if check and not p.exists():
        raise ctx.error(key, f"file not found: {value!r} (looked for {p})")
    return str(p.resolve()) if p.exists() else str(p)


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------
def _layer_params(cls) -> dict[str, Any]:
    """Constructor arguments of a layer class (GRU/SimpleRNN forward **kwargs to RNNLayer)."""
    from .layers import RNNLayer

    params: dict[str, Any] = {}
    for klass in (cls, RNNLayer) if issubclass(cls, RNNLayer) else (cls,):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            params.setdefault(p.name, p.default)
    if issubclass(cls, RNNLayer) and cls.cell != "lstm":
        for k in ("unit_forget_bias", "chrono_max_len", "layer_norm"):
            params.pop(k, None)
    return params


def _validate_layer(ctx: _Ctx, key: str, spec: Any, allow_auto_units: bool) -> dict:
    from .layers import LAYERS

    ctx.check_type(key, spec, ("table",))
    if "type" not in spec:
        raise ctx.error(f"{key}.type", f"missing; expected one of {', '.join(LAYERS)}")
    ctx.check_type(f"{key}.type", spec["type"], ("str",))
    name = spec["type"]
    if name not in LAYERS:
        low = {n.lower(): n for n in LAYERS}
        if name.lower() in low:
            name = low[name.lower()]
        else:
            raise ctx.error(f"{key}.type", f"unknown layer {name!r}{suggest(name, LAYERS)} "
                                           f"(layers: {', '.join(LAYERS)})")
    cls = LAYERS[name]
    params = _layer_params(cls)
    out: dict[str, Any] = {"type": name}
    for k, v in spec.items():
        if k == "type":
            continue
        if k not in params:
            raise ctx.unknown(key, k, ["type"] + list(params))
        if name == "Bidirectional" and k in ("layer", "backward_layer"):
            out[k] = _validate_layer(ctx, f"{key}.{k}", v, False)
            continue
        kinds = _kinds_from_default(params[k])
        if params[k] is inspect.Parameter.empty and k in ("units", "input_dim", "output_dim"):
            kinds = ("int",)
        if params[k] is None and k in ("input_size", "seed", "chrono_max_len"):
            kinds = ("int",)
        if kinds is not None:
            ctx.check_type(f"{key}.{k}", v, kinds + (("none",) if params[k] is None else ()))
        out[k] = v
    for k, default in params.items():
        if k in out:
            continue
        if default is not inspect.Parameter.empty:
            if default is not None and not isinstance(default, (dict, list)):
                out[k] = default  # defaults filled in, so the resolved config says everything
            continue
        if default is inspect.Parameter.empty:
            if k == "units" and name == "Dense" and allow_auto_units:
                continue  # sized from the data when the model is built
            if k == "input_dim" and name == "Embedding":
                continue  # the vocabulary size, from the data
            raise ctx.error(f"{key}.{k}", f"missing; a {name} layer needs it")
    if name == "Bidirectional" and "layer" not in out:
        raise ctx.error(f"{key}.layer", 'missing; e.g. layer = {type = "LSTM", units = 32}')
    return out


def _validate_model(ctx: _Ctx, model: dict) -> dict:
    for k in model:
        if k not in ("layers", "name", "dtype"):
            raise ctx.unknown("model", k, ("layers", "name", "dtype"))
    layers = model.get("layers")
    out: dict[str, Any] = {"name": model.get("name", "sequential"), "dtype": model.get("dtype", "float32")}
    ctx.check_type("model.name", out["name"], ("str",))
    ctx.check_type("model.dtype", out["dtype"], ("str",))
    if out["dtype"] not in ("float32", "float64"):
        raise ctx.error("model.dtype", f"expected 'float32' or 'float64', got {out['dtype']!r}")
    if layers is None:
        out["layers"] = None  # a default model is chosen from the data
        return out
    ctx.check_type("model.layers", layers, ("list",))
    if not layers:
        raise ctx.error("model.layers", "expected at least one layer, got an empty array")
    out["layers"] = [_validate_layer(ctx, f"model.layers[{i}]", spec, i == len(layers) - 1)
                     for i, spec in enumerate(layers)]
    for i, spec in enumerate(out["layers"][1:], start=1):
        if spec["type"] == "Embedding":
            raise ctx.error(f"model.layers[{i}].type", "an Embedding layer must come first")
    return out


# ---------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------
def _monitor_params() -> dict[str, Any] | None:
    try:
        from .diagnostics import GradientMonitor
    except ImportError:
        return None
    params = {}
    for p in inspect.signature(GradientMonitor.__init__).parameters.values():
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            params[p.name] = None if p.default is inspect.Parameter.empty else p.default
    return params


def _validate_train(ctx: _Ctx, train: dict) -> dict:
    from . import losses, metrics, optim

    out = dict(TRAIN_DEFAULTS)
    for k, v in train.items():
        if k not in TRAIN_DEFAULTS:
            raise ctx.unknown("train", k, TRAIN_DEFAULTS)
        if k in ("early_stopping", "monitor") and isinstance(v, dict):
            continue
        ctx.check_type(f"train.{k}", v, _TRAIN_TYPES[k])
        if k in _POSITIVE and v is not None and not (v > 0 and math.isfinite(v)):
            raise ctx.error(f"train.{k}", f"expected a positive number, got {_show(v)}")
        if k == "weight_decay" and v is not None and not (v >= 0 and math.isfinite(v)):
            raise ctx.error("train.weight_decay", f"expected a number >= 0, got {_show(v)}")
        out[k] = v
    if out["device"] not in DEVICES:
        raise ctx.error("train.device", f"expected one of {', '.join(map(repr, DEVICES))}, "
                        f"got {_show(out['device'])}{suggest(out['device'], DEVICES)}")
    if out["optimizer"].lower() not in optim.OPTIMIZERS:
        raise ctx.error("train.optimizer", f"unknown optimizer {out['optimizer']!r}"
                        f"{suggest(out['optimizer'], optim.OPTIMIZERS)} (choose from "
                        f"{', '.join(optim.OPTIMIZERS)})")
    out["optimizer"] = out["optimizer"].lower()
    try:
        optim.Optimizer(out["optimizer"], out["learning_rate"], dict(out["optimizer_options"]))
    except ValueError as exc:
        raise ctx.error("train.optimizer_options", str(exc)) from None
    if out["learning_rate"] is None:
        out["learning_rate"] = optim.DEFAULT_LR[out["optimizer"]]
    if out["loss"] is not None and out["loss"] not in losses.LOSSES:
        raise ctx.error("train.loss", f"unknown loss {out['loss']!r}{suggest(out['loss'], losses.LOSSES)} "
                                      f"(choose from {', '.join(losses.LOSSES)})")
    if isinstance(out["metrics"], str):
        out["metrics"] = [out["metrics"]]
    for i, m in enumerate(out["metrics"] or []):
        if not isinstance(m, str) or m not in metrics.METRICS:
            raise ctx.error(f"train.metrics[{i}]", f"unknown metric {_show(m)}"
                            f"{suggest(str(m), metrics.METRICS)} (choose from {', '.join(metrics.METRICS)})")
    # early stopping: an int patience, true (defaults) or a table
    es = train.get("early_stopping")
    if es is None or es is False:
        out["early_stopping"] = None
    else:
        table = {"patience": es} if isinstance(es, int) and not isinstance(es, bool) else (
            {} if es is True else es)
        if isinstance(es, int) and not isinstance(es, bool) and es < 0:
            raise ctx.error("train.early_stopping", f"expected a patience >= 0, got {es}")
        res = dict(EARLY_STOPPING_DEFAULTS)
        types = {"patience": ("int",), "monitor": ("str", "none"), "min_delta": (_NUMBER,),
                 "restore_best_weights": ("bool",)}
        for k, v in table.items():
            if k not in res:
                raise ctx.unknown("train.early_stopping", k, res)
            ctx.check_type(f"train.early_stopping.{k}", v, types[k])
            res[k] = v
        if res["patience"] < 0:
            raise ctx.error("train.early_stopping.patience",
                            f"expected an integer >= 0, got {res['patience']}")
        out["early_stopping"] = res
    # gradient monitor
    mon = train.get("monitor")
    if mon is False:
        out["monitor"] = dict(MONITOR_DEFAULTS, enabled=False)
    else:
        table = {} if mon in (None, True) else mon
        known = _monitor_params()
        res = dict(MONITOR_DEFAULTS)
        if known is not None:  # the installed GradientMonitor's own defaults
            res = {"enabled": True} | {k: v for k, v in known.items() if _json_ok(v) and k != "log_dir"}
            res["every"] = None  # chosen from the number of steps per epoch
            known.pop("log_dir", None)
        valid = ["enabled"] + ([k for k in known] if known is not None else list(MONITOR_DEFAULTS)[1:])
        for k, v in table.items():
            if k not in valid:
                raise ctx.unknown("train.monitor", k, valid)
            if k == "enabled":
                ctx.check_type("train.monitor.enabled", v, ("bool",))
            elif k == "every":
                ctx.check_type("train.monitor.every", v, ("int",))
                if v < 1:
                    raise ctx.error("train.monitor.every", f"expected a positive integer, got {v}")
            elif k.startswith("on_"):
                ctx.check_type(f"train.monitor.{k}", v, ("str",))
            res[k] = v
        out["monitor"] = res
    return out


def _json_ok(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


# ---------------------------------------------------------------------------------------------
# layers from a resolved config + data
# ---------------------------------------------------------------------------------------------
def default_layers(meta: dict) -> list[dict]:
    """A sensible model when ``[model] layers`` is not given: (Embedding), LSTM(64), Dense."""
    layers: list[dict] = []
    if meta.get("input_type") == "tokens":
        layers.append({"type": "Embedding", "output_dim": 32,
                       "mask_zero": meta.get("kind") != "language_model"})
    layers.append({"type": "LSTM", "units": 64, "return_sequences": meta.get("target") == "per_step"})
    layers.append({"type": "Dense"})
    return layers


def resolve_layers(model_cfg: dict, meta: dict, path: str | os.PathLike | None = None) -> list[dict]:
    """Layer specs with sizes taken from the data: Embedding ``input_dim`` = vocabulary size, a
    final Dense without ``units`` = number of classes (softmax) or outputs (linear)."""
    ctx = _Ctx(path)
    specs = [dict(s) for s in (model_cfg.get("layers") or default_layers(meta))]
    kind = meta.get("kind")
    tokens = meta.get("input_type") == "tokens"
    if tokens and specs[0]["type"] != "Embedding":
        vocab = meta.get("vocab_size") or len(meta.get("vocab") or [])
        raise ctx.error("model.layers[0]", f"the data are token ids (vocabulary of {vocab}); start the model "
                        'with an Embedding layer, e.g. {type = "Embedding", output_dim = 32}')
    if not tokens and specs[0]["type"] == "Embedding":
        raise ctx.error("model.layers[0]", f"an Embedding layer needs token ids, but data source "
                        f"{meta.get('name')!r} gives feature vectors; remove it")
    if specs[0]["type"] == "Embedding" and "input_dim" not in specs[0]:
        specs[0]["input_dim"] = int(meta.get("vocab_size") or len(meta["vocab"]))
    last = specs[-1]
    n_out = meta.get("n_classes") if kind in ("classification", "language_model") else meta.get("n_outputs")
    if last["type"] == "Dense" and "units" not in last:
        if not n_out:
            raise ctx.error(f"model.layers[{len(specs) - 1}].units", "missing, and the data do not say how "
                            "many outputs they need; give units")
        last["units"] = int(n_out)
        if kind in ("classification", "language_model") and "activation" not in last:
            last["activation"] = "softmax"
    elif last["type"] != "Dense":
        raise ctx.error(f"model.layers[{len(specs) - 1}]", f"expected the last layer to be a Dense output "
                        f"layer, got {last['type']}; add {{type = \"Dense\"}}")
    if n_out and last.get("units") != n_out and kind in ("classification", "language_model"):
        raise ctx.error(f"model.layers[{len(specs) - 1}].units", f"expected {n_out} (the number of classes "
                        f"of {meta.get('name')!r}), got {last.get('units')}")
    # per-step targets need a sequence out of the last recurrent layer
    per_step = meta.get("target") == "per_step"
    rec = [i for i, s in enumerate(specs) if s["type"] in ("LSTM", "GRU", "SimpleRNN", "Bidirectional")]
    if rec:
        i = rec[-1]
        spec = specs[i] if specs[i]["type"] != "Bidirectional" else specs[i]["layer"]
        rs = bool(spec.get("return_sequences", False))
        if per_step and not rs:
            raise ctx.error(f"model.layers[{i}].return_sequences", "the data have one target per time step; "
                            "set return_sequences = true on the last recurrent layer")
        pooled = any(s["type"] == "Attention" for s in specs[i + 1:])  # Attention pools the sequence
        if not per_step and rs and not pooled:
            raise ctx.error(f"model.layers[{i}].return_sequences", "the data have one target per sequence; "
                            "the last recurrent layer needs return_sequences = false (or add an Attention layer)")
    return specs


def build_layers(specs: list[dict], path: str | os.PathLike | None = None) -> list:
    """Instantiate layers; constructor errors are reported with the layer's key path."""
    ctx = _Ctx(path)
    layers = []
    for i, spec in enumerate(specs):
        try:
            layers.append(_build_layer(spec))
        except (ValueError, TypeError) as exc:
            raise ctx.error(f"model.layers[{i}]", str(exc)) from None
    return layers


def _build_layer(spec: dict):
    from .layers import Bidirectional, deserialize

    cfg = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] == "Bidirectional":
        layer = _build_layer(cfg.pop("layer"))
        backward = cfg.pop("backward_layer", None)
        back = None if backward is None else _build_layer(backward)
        return Bidirectional(layer, backward_layer=back, **cfg)
    return deserialize({"class_name": spec["type"], "config": cfg})


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps_toml(cfg: dict, header: str = "") -> str:
    """A small TOML writer for resolved configs (``None`` values are left out: TOML has no null)."""
    lines = [f"# {line}" for line in header.splitlines()] if header else []

    def table(name: str, d: dict) -> None:
        lines.append(f"\n[{name}]")
        subs = []
        for k, v in d.items():
            if v is None:
                continue
            if isinstance(v, dict) and v:
                subs.append((k, v))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                lines.append(f"{_toml_key(k)} = [")
                for x in v:
                    lines.append(f"    {_toml_value(x)},")
                lines.append("]")
            else:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            table(f"{name}.{_toml_key(k)}", v)

    for name, d in cfg.items():
        table(name, d)
    return "\n".join(lines).lstrip("\n") + "\n"
