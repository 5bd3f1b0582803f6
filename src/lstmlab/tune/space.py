"""The ``[tune]`` table: search space, objective, sampler, pruner and budget, checked up front.

Example::

    [tune]
    metric = "val_loss"            # any logged metric: val_* / test_* (final evaluation) or a train metric
    direction = "minimize"         # default: maximize for accuracy-like metrics, else minimize
    sampler = "grid"               # grid | random | tpe
    pruner = "none"                # none | median | hyperband (from per-epoch validation scores)
    n_trials = 12                  # in total, over all workers (grid: default = the grid size)
    timeout = 600                  # seconds per worker; a running trial is never cut short
    seed = 0
    "model.layers.0.units" = {type = "choice", values = [16, 64]}
    "train.learning_rate" = {type = "float", low = 1e-4, high = 1e-2, log = true}
    "train.batch_size" = {type = "int", low = 16, high = 64, step = 16}

A search key is a dotted path into ``[data]``, ``[model]`` or ``[train]``; list items are
numbered from 0 (``model.layers.0.units`` or ``model.layers[0].units``).  Every declared value is
checked against the config schema before the first trial, and every problem is reported as a
:class:`~lstmlab.config.ConfigError` naming the file and the key path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import FILE_OPTIONS, ConfigError, read_toml, suggest, validate

__all__ = ["Param", "TuneSpec", "load_tune", "parse_tune", "TUNE_DEFAULTS", "SAMPLERS", "PRUNERS",
           "short_names"]

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
PARAM_TYPES = ("float", "int", "choice")
SECTIONS = ("data", "model", "train")

TUNE_DEFAULTS: dict[str, Any] = {
    "metric": "val_loss",
    "direction": None,           # None: from the metric's name
    "sampler": "tpe",
    "sampler_options": {},       # keyword arguments of the optuna sampler
    "pruner": "none",
    "pruner_options": {},        # keyword arguments of the optuna pruner
    "n_trials": None,            # None: the grid size (grid), 20 (others) unless a timeout is given
    "timeout": None,
    "seed": 0,
    "study_name": None,          # None: the config file's stem
    "storage": None,             # None: sqlite file study.db in the run directory
    "heartbeat_interval": 10,    # seconds between heartbeats of a running trial
    "grace_period": None,        # seconds without heartbeat before a trial counts as dead (2 x interval)
    "max_retry": 3,              # retries of a trial whose worker died
}
DEFAULT_N_TRIALS = 20
_OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "metric": ("str",), "direction": ("str",), "sampler": ("str",), "sampler_options": ("table",),
    "pruner": ("str",), "pruner_options": ("table",), "n_trials": ("int",), "timeout": ("number",),
    "seed": ("int",), "study_name": ("str",), "storage": ("str",), "heartbeat_interval": ("int",),
    "grace_period": ("int",), "max_retry": ("int",),
}
_PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
               "choice": ("type", "values")}
_TYPE_ALIASES = {"categorical": "choice", "uniform": "float", "integer": "int", "float": "float",
                 "int": "int", "choice": "choice"}
_KIND_WORDS = {"int": "an integer", "number": "a number", "str": "a string", "table": "a table",
               "bool": "a boolean", "list": "an array"}


def _is(kind: str, v: Any) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return isinstance(v, {"str": str, "table": dict, "bool": bool, "list": list}[kind])


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (dict, list)) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _qkey(key: str) -> str:
    """``tune."model.layers.0.units"`` for messages (the key as written in TOML)."""
    return f"tune.{json.dumps(key)}" if not re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"tune.{key}"


def parse_path(key: str) -> tuple[str | int, ...]:
    """``"model.layers[0].units"`` / ``"model.layers.0.units"`` -> ``("model", "layers", 0, "units")``."""
    tokens: list[str | int] = []
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if not m or (not m.group(1) and not m.group(2)):
            raise ValueError(f"cannot read {part!r}")
        if m.group(1):
            tokens.append(int(m.group(1)) if m.group(1).isdigit() else m.group(1))
        tokens.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return tuple(tokens)


def _path_text(path: tuple) -> str:
    out = ""
    for t in path:
        out += f"[{t}]" if isinstance(t, int) else (f".{t}" if out else t)
    return out


def set_path(cfg: dict, path: tuple, value: Any) -> None:
    """Set ``value`` at ``path`` in a raw config (tables are created; list indices must exist)."""
    node: Any = cfg
    for i, tok in enumerate(path[:-1]):
        here = _path_text(path[: i + 1])
        nxt = path[i + 1]
        if isinstance(tok, int):
            if not isinstance(node, list):
                raise ValueError(f"{_path_text(path[:i])} is not an array, so [{tok}] cannot index it")
            if tok >= len(node):
                raise ValueError(f"{_path_text(path[:i])} has {len(node)} entries; index {tok} is out of "
                                 "range")
            node = node[tok]
        else:
            if not isinstance(node, dict):
                raise ValueError(f"{_path_text(path[:i])} is not a table")
            if tok not in node:
                if isinstance(nxt, int):
                    raise ValueError(f"{here} is not set in the config; declare it to tune its entries")
                node[tok] = {}
            node = node[tok]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ValueError(f"{_path_text(path[:-1])} has no entry [{last}]")
        node[last] = value
    else:
        if not isinstance(node, dict):
            raise ValueError(f"{_path_text(path[:-1])} is not a table")
        node[last] = value


@dataclass
class Param:
    """One search dimension: a config key path and its distribution."""

    key: str
    path: tuple
    kind: str                      # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    values: list = field(default_factory=list)
    encoded: bool = False          # choice values are tables/arrays, stored as JSON strings

    def choices(self) -> list:
        """The categorical choices as optuna stores them (JSON strings for tables/arrays)."""
        return [json.dumps(v, sort_keys=True) for v in self.values] if self.encoded else list(self.values)

    def grid_values(self) -> list:
        """The finite set of values a grid visits (ints with step, floats only with a step)."""
        if self.kind == "choice":
            return self.choices()
        step = self.step if self.step is not None else (1 if self.kind == "int" else None)
        if step is None or self.log:
            raise ValueError("the grid sampler needs a finite set of values; give a step (without log) "
                             'or use type = "choice"')
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        vals = [self.low + i * step for i in range(n)]
        return [int(v) for v in vals] if self.kind == "int" else [float(round(v, 12)) for v in vals]

    def suggest(self, trial, grid: bool = False) -> Any:
        """Ask an optuna trial for this parameter; return the config value."""
        if grid or self.kind == "choice":
            choices = self.grid_values() if grid else self.choices()
            return self.decode(trial.suggest_categorical(self.key, choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def decode(self, v: Any) -> Any:
        return json.loads(v) if self.encoded and isinstance(v, str) else v

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"type": self.kind}
        if self.kind == "choice":
            d["values"] = self.values
        else:
            d.update({"low": self.low, "high": self.high})
            if self.log:
                d["log"] = True
            if self.step is not None:
                d["step"] = self.step
        return d


@dataclass
class TuneSpec:
    """A checked ``[tune]`` table plus the config it searches around."""

    base: dict                     # the raw config without [tune]
    params: list[Param]
    options: dict
    path: Path | None = None       # the config file (None: a dict)

    @property
    def config_dir(self) -> Path:
        return self.path.resolve().parent if self.path is not None else Path.cwd()

    @property
    def metric(self) -> str:
        return self.options["metric"]

    @property
    def direction(self) -> str:
        return self.options["direction"]

    @property
    def grid(self) -> bool:
        return self.options["sampler"] == "grid"

    def grid_space(self) -> dict[str, list]:
        return {p.key: p.grid_values() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid_space().values()) if self.params else 1

    def budget(self) -> int | None:
        """Trials to finish in total (None: until the timeout)."""
        n = self.options["n_trials"]
        if self.grid:
            return min(n, self.grid_size()) if n is not None else self.grid_size()
        if n is None:
            return None if self.options["timeout"] is not None else DEFAULT_N_TRIALS
        return n

    def config_for(self, values: dict[str, Any]) -> dict:
        """The raw config with ``values`` (key -> value) applied and data file paths made absolute."""
        cfg = copy.deepcopy(self.base)
        by_key = {p.key: p for p in self.params}
        for key, v in values.items():
            set_path(cfg, by_key[key].path if key in by_key else parse_path(key), copy.deepcopy(v))
        data = cfg.get("data", {})
        for k in FILE_OPTIONS:
            v = data.get(k)
            if isinstance(v, str) and not Path(v).expanduser().is_absolute():
                here = self.config_dir / Path(v).expanduser()
                there = Path.cwd() / Path(v).expanduser()
                data[k] = str((here if here.exists() or not there.exists() else there).resolve())
        return cfg

    def signature(self) -> dict:
        """What workers joining one study must agree on (not the budget, storage or timeout)."""
        keep = ("metric", "direction", "sampler", "sampler_options", "pruner", "pruner_options", "seed")
        base = json.dumps(self.base, sort_keys=True, default=str)
        return {"space": {p.key: p.to_dict() for p in self.params},
                **{k: self.options[k] for k in keep},
                "base_sha1": hashlib.sha1(base.encode()).hexdigest()[:12]}


def short_names(keys: list[str]) -> dict[str, str]:
    """The shortest unique dotted suffix of each key: ``model.layers.0.units`` -> ``units``."""
    parts = {k: k.replace("[", ".").replace("]", "").split(".") for k in keys}
    out = {}
    for k, p in parts.items():
        for n in range(1, len(p) + 1):
            name = ".".join(p[-n:])
            if sum(1 for q in parts.values() if ".".join(q[-n:]) == name) == 1:
                out[k] = name
                break
        else:
            out[k] = k
    return out


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
def load_tune(config: str | os.PathLike | dict, overrides: dict | None = None) -> TuneSpec:
    """Read a config file (or a parsed dict) with a ``[tune]`` table; ``overrides`` replace options."""
    if isinstance(config, dict):
        return parse_tune(copy.deepcopy(config), None, overrides)
    return parse_tune(read_toml(config), Path(config), overrides)


def parse_tune(raw: dict, path: Path | None = None, overrides: dict | None = None) -> TuneSpec:
    """Check a parsed config with a ``[tune]`` table; raise :class:`ConfigError` naming the key."""
    where = f"{path}: " if path is not None else ""

    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{where}{key}: {msg}")

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}expected a table at the top level")
    if "tune" not in raw:
        raise err("tune", 'missing section; add [tune] with the search space, e.g. '
                          '"train.learning_rate" = {type = "float", low = 1e-4, high = 1e-2, log = true}')
    tune = raw.pop("tune")
    if not isinstance(tune, dict):
        raise err("tune", f"expected a table, got {_show(tune)}")
    base = raw
    validate(copy.deepcopy(base), path)  # the config itself, errors as lstmlab train reports them

    options = dict(TUNE_DEFAULTS)
    specs: list[tuple[str, Any]] = []
    for k, v in tune.items():
        if k in TUNE_DEFAULTS:
            options[k] = v
        elif k in ("space", "params") and isinstance(v, dict):
            specs.extend(_flatten(v, ""))
        elif isinstance(v, dict) and (k.split(".")[0].split("[")[0] in SECTIONS):
            specs.extend(_flatten(v, k))
        else:
            raise err(_qkey(k), f"unknown key{suggest(k, TUNE_DEFAULTS)} (options: "
                                f"{', '.join(TUNE_DEFAULTS)}; a search key is a dotted path into [data], "
                                "[model] or [train] with a "
                                'table such as {type = "choice", values = [32, 64]})')
    for k, v in (overrides or {}).items():
        if k not in TUNE_DEFAULTS:
            raise ConfigError(f"tune option {k!r}: unknown{suggest(k, TUNE_DEFAULTS)}")
        if v is not None:
            options[k] = v
    _check_options(options, err)
    if not specs:
        raise err("tune", "no search space; declare at least one key, e.g. "
                          '"train.learning_rate" = {type = "float", low = 1e-4, high = 1e-2, log = true}')
    params = [_parse_param(key, spec, err) for key, spec in specs]
    for i, p in enumerate(params):
        for q in params[:i]:
            if p.path == q.path:
                raise err(_qkey(p.key), f"the same config key as {_qkey(q.key)}")
            short, long_ = sorted((p, q), key=lambda x: len(x.path))
            if long_.path[:len(short.path)] == short.path:
                raise err(_qkey(long_.key), f"lies inside {_qkey(short.key)}, which is searched too")
    for p in params:  # every declared value must make a valid config
        _check_values(base, p, path, err)
    if options["direction"] is None:
        m = options["metric"]
        options["direction"] = "maximize" if ("acc" in m or m.endswith("r2")) else "minimize"
    spec = TuneSpec(base=base, params=params, options=options, path=path)
    if spec.grid:
        for p in params:
            try:
                p.grid_values()
            except ValueError as exc:
                raise err(_qkey(p.key), str(exc)) from None
        if spec.grid_size() > 100_000:
            raise err("tune.sampler", f"the grid has {spec.grid_size():,} points; use random or tpe")
    return spec


def _flatten(table: dict, prefix: str) -> list[tuple[str, Any]]:
    """Search keys from a (possibly nested) table: a table with ``type`` ends a key path."""
    if "type" in table or not table:
        return [(prefix, table)]
    out: list[tuple[str, Any]] = []
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        out.extend(_flatten(v, key) if isinstance(v, dict) else [(key, v)])
    return out


def _check_options(o: dict, err) -> None:
    for k, kinds in _OPTION_KINDS.items():
        v = o[k]
        if v is None:
            continue
        if not any(_is(kind, v) for kind in kinds):
            raise err(f"tune.{k}", f"expected {' or '.join(_KIND_WORDS[x] for x in kinds)}, got {_show(v)}")
    o["sampler"] = o["sampler"].lower()
    if o["sampler"] not in SAMPLERS:
        raise err("tune.sampler", f"unknown sampler {o['sampler']!r}{suggest(o['sampler'], SAMPLERS)} "
                                  f"(choose from {', '.join(SAMPLERS)})")
    o["pruner"] = o["pruner"].lower()
    if o["pruner"] not in PRUNERS:
        raise err("tune.pruner", f"unknown pruner {o['pruner']!r}{suggest(o['pruner'], PRUNERS)} "
                                 f"(choose from {', '.join(PRUNERS)})")
    if o["direction"] is not None:
        d = {"min": "minimize", "max": "maximize"}.get(o["direction"].lower(), o["direction"].lower())
        if d not in ("minimize", "maximize"):
            raise err("tune.direction", f"expected 'minimize' or 'maximize', got {o['direction']!r}")
        o["direction"] = d
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", o["metric"]):
        raise err("tune.metric", f"expected a logged metric name such as 'val_loss', got {o['metric']!r}")
    for k in ("n_trials", "heartbeat_interval", "grace_period"):
        if o[k] is not None and o[k] < 1:
            raise err(f"tune.{k}", f"expected a positive integer, got {o[k]}")
    if o["timeout"] is not None and o["timeout"] <= 0:
        raise err("tune.timeout", f"expected a positive number of seconds, got {o['timeout']}")
    if o["max_retry"] < 0:
        raise err("tune.max_retry", f"expected an integer >= 0, got {o['max_retry']}")


def _parse_param(key: str, spec: Any, err) -> Param:
    q = _qkey(key)
    try:
        path = parse_path(key)
    except ValueError as exc:
        raise err(q, f"not a key path ({exc}); write e.g. model.layers.0.units") from None
    if not path or path[0] not in SECTIONS:
        raise err(q, f"a search key starts with data., model. or train.{suggest(str(path[0]), SECTIONS)}")
    if len(path) < 2:
        raise err(q, f"name a key inside [{path[0]}], e.g. {path[0]}.<key>")
    if not isinstance(spec, dict):
        raise err(q, f'expected a table such as {{type = "choice", values = [...]}}, got {_show(spec)}')
    if "type" not in spec:
        raise err(f"{q}.type", f"missing; expected one of {', '.join(PARAM_TYPES)}")
    t = spec["type"]
    if not isinstance(t, str) or t.lower() not in _TYPE_ALIASES:
        raise err(f"{q}.type", f"unknown type {_show(t)}{suggest(str(t), PARAM_TYPES)} "
                               f"(choose from {', '.join(PARAM_TYPES)})")
    kind = _TYPE_ALIASES[t.lower()]
    for k in spec:
        if k not in _PARAM_KEYS[kind]:
            raise err(f"{q}.{k}", f"unknown key for a {kind} parameter{suggest(k, _PARAM_KEYS[kind])} "
                                  f"(keys: {', '.join(_PARAM_KEYS[kind])})")
    p = Param(key=key, path=path, kind=kind)
    if kind == "choice":
        vals = spec.get("values")
        if not isinstance(vals, list) or not vals:
            raise err(f"{q}.values", f"expected a non-empty array, got {_show(vals)}")
        texts = [json.dumps(v, sort_keys=True) for v in vals]
        dup = next((v for i, v in enumerate(vals) if texts[i] in texts[:i]), None)
        if dup is not None:
            raise err(f"{q}.values", f"{_show(dup)} is listed twice")
        p.values = list(vals)
        p.encoded = any(isinstance(v, (dict, list)) for v in vals)
        return p
    num = "int" if kind == "int" else "number"
    for k in ("low", "high"):
        if k not in spec:
            raise err(f"{q}.{k}", f"missing; a {kind} parameter needs low and high")
        if not _is(num, spec[k]):
            raise err(f"{q}.{k}", f"expected {_KIND_WORDS[num]}, got {_show(spec[k])}")
    p.low, p.high = spec["low"], spec["high"]
    bad = p.low > p.high if kind == "int" else p.low >= p.high
    if bad:
        raise err(f"{q}.high", f"expected a value above low ({p.low}), got {p.high}")
    p.log = spec.get("log", False)
    if not isinstance(p.log, bool):
        raise err(f"{q}.log", f"expected a boolean, got {_show(p.log)}")
    if p.log and p.low <= 0:
        raise err(f"{q}.low", f"a log scale needs low > 0, got {p.low}")
    if "step" in spec:
        if not _is(num, spec["step"]) or spec["step"] <= 0:
            raise err(f"{q}.step", f"expected a positive {'integer' if kind == 'int' else 'number'}, "
                                   f"got {_show(spec['step'])}")
        if p.log:
            raise err(f"{q}.step", "cannot be combined with log = true")
        p.step = spec["step"]
    return p


def _check_values(base: dict, p: Param, path: Path | None, err) -> None:
    """Apply each declared value (or both bounds) to the config and validate it."""
    probes = p.values if p.kind == "choice" else [p.low, p.high]
    for v in probes:
        cfg = copy.deepcopy(base)
        try:
            set_path(cfg, p.path, copy.deepcopy(v))
        except ValueError as exc:
            raise err(_qkey(p.key), str(exc)) from None
        try:
            validate(cfg, path)
        except ConfigError as exc:
            msg = str(exc)
            if path is not None and msg.startswith(f"{path}: "):
                msg = msg[len(f"{path}: "):]
            raise err(_qkey(p.key), f"with {_show(v)}: {msg}") from None
