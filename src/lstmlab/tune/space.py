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

from ..config import FILE_OPTIONS, SECTIONS, ConfigError, read_toml, resolve_file, validate
from ..config.schema import Check, Ctx, at_least, check_tree, defaults, schema, setting, show, suggest
from ..metrics import higher_is_better

__all__ = ["Param", "TuneSpec", "TuneOptions", "load_tune", "parse_tune", "TUNE_DEFAULTS", "SAMPLERS", "PRUNERS",
           "short_names"]

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
PARAM_TYPES = ("float", "int", "choice")
DIRECTIONS = {"min": "minimize", "max": "maximize", "minimize": "minimize", "maximize": "maximize"}
DEFAULT_N_TRIALS = 20
_POSITIVE_INT = Check("a positive integer", lambda v: v > 0)


@dataclass(frozen=True)
class TuneOptions:
    """The options of ``[tune]``; every other key of the table is a search key."""

    metric: str = setting("val_loss", Check("a logged metric name such as 'val_loss'",
                                            lambda v: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) is not None))
    direction: str | None = setting(None, Check("'minimize' or 'maximize'", lambda v: v.lower() in DIRECTIONS))
    sampler: str = setting("tpe")               # one of SAMPLERS (any case)
    sampler_options: dict = setting({})         # keyword arguments of the optuna sampler
    pruner: str = setting("none")               # one of PRUNERS (any case)
    pruner_options: dict = setting({})          # keyword arguments of the optuna pruner
    n_trials: int | None = setting(None, _POSITIVE_INT)  # None: the grid size (grid), 20 (others) unless a timeout
    timeout: float | None = setting(None, Check("a positive number of seconds", lambda v: v > 0))  # per worker
    seed: int = setting(0)
    study_name: str | None = setting(None)      # None: the config file's stem
    storage: str | None = setting(None)         # None: sqlite file study.db in the run directory
    heartbeat_interval: int = setting(10, _POSITIVE_INT)  # seconds between heartbeats of a running trial
    grace_period: int | None = setting(None, _POSITIVE_INT)  # seconds without heartbeat: dead (2 x interval)
    max_retry: int = setting(3, at_least(0, "an integer"))  # retries of a trial whose worker died


TUNE_DEFAULTS: dict[str, Any] = defaults(TuneOptions)
_PARAM_KEYS = {"float": ("type", "low", "high", "log", "step"), "int": ("type", "low", "high", "log", "step"),
               "choice": ("type", "values")}
_TYPE_ALIASES = {"categorical": "choice", "uniform": "float", "integer": "int", "float": "float",
                 "int": "int", "choice": "choice"}


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
                data[k] = str(resolve_file(self.config_dir, v).resolve())
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
        check_tree(Ctx(None), config)  # before deepcopy recurses into it
        return parse_tune(copy.deepcopy(config), None, overrides)
    return parse_tune(read_toml(config), Path(config), overrides)


def parse_tune(raw: dict, path: Path | None = None, overrides: dict | None = None) -> TuneSpec:
    """Check a parsed config with a ``[tune]`` table; raise :class:`ConfigError` naming the key."""
    ctx = Ctx(path)
    if not isinstance(raw, dict):
        raise ctx.error("", "expected a table at the top level")
    check_tree(ctx, raw)
    if "tune" not in raw:
        raise ctx.error("tune", 'missing section; add [tune] with the search space, e.g. '
                                '"train.learning_rate" = {type = "float", low = 1e-4, high = 1e-2, log = true}')
    tune = raw.pop("tune")
    if not isinstance(tune, dict):
        raise ctx.error("tune", f"expected a table, got {show(tune)}")
    base = raw
    validate(copy.deepcopy(base), path)  # the config itself, errors as lstmlab train reports them
    options, specs = _split(ctx, tune, overrides or {})
    if not specs:
        raise ctx.error("tune", "no search space; declare at least one key, e.g. "
                                '"train.learning_rate" = {type = "float", low = 1e-4, high = 1e-2, log = true}')
    params = [_parse_param(ctx, key, spec) for key, spec in specs]
    _check_overlap(ctx, params)
    for p in params:  # every declared value must make a valid config
        _check_values(ctx, base, p)
    spec = TuneSpec(base=base, params=params, options=options, path=path)
    if spec.grid:
        for p in params:
            try:
                p.grid_values()
            except ValueError as exc:
                raise ctx.error(_qkey(p.key), str(exc)) from None
        if spec.grid_size() > 100_000:
            raise ctx.error("tune.sampler", f"the grid has {spec.grid_size():,} points; use random or tpe")
    return spec


def _split(ctx: Ctx, tune: dict, overrides: dict) -> tuple[dict, list[tuple[str, Any]]]:
    """The checked options (``overrides`` win) and the search keys of a ``[tune]`` table."""
    given: dict[str, Any] = {}
    specs: list[tuple[str, Any]] = []
    for k, v in tune.items():
        if k in TUNE_DEFAULTS:
            given[k] = v
        elif k in ("space", "params") and isinstance(v, dict):
            specs.extend(_flatten(v, ""))
        elif isinstance(v, dict) and (k.split(".")[0].split("[")[0] in SECTIONS):
            specs.extend(_flatten(v, k))
        else:
            raise ctx.error(_qkey(k), f"unknown key{suggest(k, TUNE_DEFAULTS)} (options: "
                                      f"{', '.join(TUNE_DEFAULTS)}; a search key is a dotted path into [data], "
                                      "[model] or [train] with a "
                                      'table such as {type = "choice", values = [32, 64]})')
    for k, v in overrides.items():
        if k not in TUNE_DEFAULTS:
            raise ConfigError(f"tune option {k!r}: unknown{suggest(k, TUNE_DEFAULTS)}")
        if v is not None:
            given[k] = v
    o = ctx.check_table("tune", given, schema(TuneOptions))
    for k in ("sampler_options", "pruner_options"):
        ctx.check_value(f"tune.{k}", o[k], None)  # finite numbers inside
    o["sampler"] = ctx.choose("tune.sampler", o["sampler"], SAMPLERS, "sampler")
    o["pruner"] = ctx.choose("tune.pruner", o["pruner"], PRUNERS, "pruner")
    if o["direction"] is None:
        m = o["metric"]
        o["direction"] = "maximize" if higher_is_better(m) else "minimize"
    o["direction"] = DIRECTIONS[o["direction"].lower()]
    return o, specs


def _check_overlap(ctx: Ctx, params: list[Param]) -> None:
    """No key searched twice, none inside another searched key."""
    for i, p in enumerate(params):
        for q in params[:i]:
            if p.path == q.path:
                raise ctx.error(_qkey(p.key), f"the same config key as {_qkey(q.key)}")
            short, long_ = sorted((p, q), key=lambda x: len(x.path))
            if long_.path[:len(short.path)] == short.path:
                raise ctx.error(_qkey(long_.key), f"lies inside {_qkey(short.key)}, which is searched too")


def _flatten(table: dict, prefix: str) -> list[tuple[str, Any]]:
    """Search keys from a (possibly nested) table: a table with ``type`` ends a key path."""
    if "type" in table or not table:
        return [(prefix, table)]
    out: list[tuple[str, Any]] = []
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        out.extend(_flatten(v, key) if isinstance(v, dict) else [(key, v)])
    return out


def _parse_param(ctx: Ctx, key: str, spec: Any) -> Param:
    """One search key and its table: the key path, the distribution kind, then its values."""
    q = _qkey(key)
    try:
        path = parse_path(key)
    except ValueError as exc:
        raise ctx.error(q, f"not a key path ({exc}); write e.g. model.layers.0.units") from None
    if not path or path[0] not in SECTIONS:
        raise ctx.error(q, f"a search key starts with data., model. or train.{suggest(str(path[0]), SECTIONS)}")
    if len(path) < 2:
        raise ctx.error(q, f"name a key inside [{path[0]}], e.g. {path[0]}.<key>")
    if not isinstance(spec, dict):
        raise ctx.error(q, f'expected a table such as {{type = "choice", values = [...]}}, got {show(spec)}')
    if "type" not in spec:
        raise ctx.error(f"{q}.type", f"missing; expected one of {', '.join(PARAM_TYPES)}")
    t = spec["type"]
    if not isinstance(t, str) or t.lower() not in _TYPE_ALIASES:
        raise ctx.error(f"{q}.type", f"unknown type {show(t)}{suggest(str(t), PARAM_TYPES)} "
                                     f"(choose from {', '.join(PARAM_TYPES)})")
    kind = _TYPE_ALIASES[t.lower()]
    for k in spec:
        if k not in _PARAM_KEYS[kind]:
            raise ctx.error(f"{q}.{k}", f"unknown key for a {kind} parameter{suggest(k, _PARAM_KEYS[kind])} "
                                        f"(keys: {', '.join(_PARAM_KEYS[kind])})")
    p = Param(key=key, path=path, kind=kind)
    if kind == "choice":
        _parse_choice(ctx, q, spec, p)
    else:
        _parse_range(ctx, q, spec, p)
    return p


def _parse_choice(ctx: Ctx, q: str, spec: dict, p: Param) -> None:
    vals = spec.get("values")
    if not isinstance(vals, list) or not vals:
        raise ctx.error(f"{q}.values", f"expected a non-empty array, got {show(vals)}")
    texts = [json.dumps(v, sort_keys=True) for v in vals]
    dup = next((v for i, v in enumerate(vals) if texts[i] in texts[:i]), None)
    if dup is not None:
        raise ctx.error(f"{q}.values", f"{show(dup)} is listed twice")
    p.values = list(vals)
    p.encoded = any(isinstance(v, (dict, list)) for v in vals)


def _parse_range(ctx: Ctx, q: str, spec: dict, p: Param) -> None:
    num = ("int",) if p.kind == "int" else ("number",)
    for k in ("low", "high"):
        if k not in spec:
            raise ctx.error(f"{q}.{k}", f"missing; a {p.kind} parameter needs low and high")
        ctx.check_value(f"{q}.{k}", spec[k], num)
    p.low, p.high = spec["low"], spec["high"]
    if p.low > p.high if p.kind == "int" else p.low >= p.high:
        raise ctx.error(f"{q}.high", f"expected a value above low ({p.low}), got {p.high}")
    p.log = spec.get("log", False)
    ctx.check_type(f"{q}.log", p.log, ("bool",))
    if p.log and p.low <= 0:
        raise ctx.error(f"{q}.low", f"a log scale needs low > 0, got {p.low}")
    if "step" in spec:
        positive = Check(f"a positive {'integer' if p.kind == 'int' else 'number'}", lambda v: v > 0)
        ctx.check_value(f"{q}.step", spec["step"], num, positive)
        if p.log:
            raise ctx.error(f"{q}.step", "cannot be combined with log = true")
        p.step = spec["step"]


def _check_values(ctx: Ctx, base: dict, p: Param) -> None:
    """Apply each declared value (or both bounds) to the config and validate it."""
    probes = p.values if p.kind == "choice" else [p.low, p.high]
    for v in probes:
        cfg = copy.deepcopy(base)
        try:
            set_path(cfg, p.path, copy.deepcopy(v))
        except ValueError as exc:
            raise ctx.error(_qkey(p.key), str(exc)) from None
        try:
            validate(cfg, ctx.path)
        except ConfigError as exc:
            msg = str(exc)
            if ctx.path is not None and msg.startswith(f"{ctx.path}: "):
                msg = msg[len(f"{ctx.path}: "):]
            raise ctx.error(_qkey(p.key), f"with {show(v)}: {msg}") from None
