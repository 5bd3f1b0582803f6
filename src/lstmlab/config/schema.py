"""The config schema: each setting's type, default and constraint written once, and the checks that read it.

A table of settings is a frozen dataclass whose fields are :func:`setting`\\ s (nanoGPT / Equinox style)::

    @dataclass(frozen=True)
    class EarlyStopping:
        patience: int = setting(5, at_least(0, "an integer"))
        min_delta: float = setting(0.0, at_least(0))

* the annotation is the set of accepted TOML types (``float`` also takes an integer; a nested
  dataclass is a sub-table checked with its own schema);
* the default is what a left-out key resolves to;
* the :class:`Check` is the constraint, with the words the error uses (``expected a positive number``).

:meth:`Ctx.check_value` is the one place that refuses a float that is not finite and an integer that
does not fit in 64 bits (the TOML spec), in typed and untyped values alike; :func:`check_tree`
refuses nesting deeper than :data:`MAX_DEPTH` before any recursive code runs.  Every refusal is a
:class:`ConfigError` naming the file and the key path.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Ctx", "Check", "Setting", "setting", "schema", "defaults", "suggest", "show", "printable",
           "join", "type_name", "kinds_from_default", "check_tree", "POSITIVE", "at_least", "one_of", "MAX_DEPTH"]

MAX_DEPTH = 32          # levels of tables and arrays; a real config uses fewer than 8
INT64 = (-2**63, 2**63 - 1)

# TOML value kinds: "int", "number" (int or finite float, not bool), "str", "bool", "table", "list", "none"
TYPE_WORDS = {"int": "an integer", "number": "a number", "str": "a string", "bool": "a boolean",
              "table": "a table", "list": "an array", "none": "nothing"}
_KIND_OF_TYPE = {int: "int", float: "number", str: "str", bool: "bool", dict: "table", list: "list",
                 type(None): "none"}


class ConfigError(ValueError):
    """A bad config: the message names the file, the key path, what was expected and what was got."""


# ---------------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------------
def suggest(word: str, choices) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (difflib), or ``""``."""
    choices = [str(c) for c in choices]
    match = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if not match:
        low = {c.lower(): c for c in choices}
        match = [low[m] for m in difflib.get_close_matches(str(word).lower(), list(low), n=1, cutoff=0.6)]
    return f"; did you mean {match[0]!r}?" if match else ""


def printable(text: str) -> str:
    """``text`` with non-printable characters escaped, so a message stays one readable line."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def join(key: str, name: Any) -> str:
    """The key path ``key.name`` as messages print it: ``name`` bare when TOML allows
    (``batch_size``), else quoted (``"a.b"``, ``""``)."""
    name = str(name)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        name = printable(json.dumps(name, ensure_ascii=False))
    return f"{key}.{name}" if key else name


def type_name(v: Any) -> str:
    """``"an integer"``, ``"a table"``, ...: the TOML type of ``v`` in words."""
    if v is None:
        return "nothing"
    for kind in ("bool", "int", "str", "table", "list"):
        if matches(kind, v):
            return TYPE_WORDS[kind]
    return "a float" if isinstance(v, float) else f"a {type(v).__name__}"


def show(v: Any) -> str:
    """A value as the user wrote it, cut at 60 characters (tables and arrays as JSON)."""
    if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
        return f"an integer of {v.bit_length()} bits"
    try:
        text = json.dumps(v, default=str) if isinstance(v, (dict, list)) else repr(v)
    except (ValueError, RecursionError):  # an integer of thousands of digits, a cycle
        return type_name(v)
    return text if len(text) <= 60 else text[:57] + "..."


def matches(kind: str, v: Any) -> bool:
    """Whether ``v`` is of TOML kind ``kind`` (a ``number`` is an int or a float, never a bool)."""
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "none":
        return v is None
    return isinstance(v, {"str": str, "bool": bool, "table": dict, "list": list}[kind])


# ---------------------------------------------------------------------------------------------
# declaring settings
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """A constraint: ``ok(value)`` and the words after ``expected`` when it fails."""

    want: str
    ok: Callable[[Any], bool]
    choices: tuple = ()  # offered as "did you mean" suggestions


POSITIVE = Check("a positive number", lambda v: v > 0)


def at_least(low: float, what: str = "a number") -> Check:
    """``expected a number >= 0``."""
    return Check(f"{what} >= {low}", lambda v: v >= low)


def one_of(*choices: str) -> Check:
    """``expected one of 'cpu', 'cuda'`` (with a suggestion)."""
    return Check("one of " + ", ".join(map(repr, choices)), lambda v: v in choices, choices)


def setting(default: Any, check: Check | None = None) -> Any:
    """A dataclass field: its default (tables and arrays copied per use) and its constraint."""
    meta = {"check": check}
    if isinstance(default, (dict, list)):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Setting:
    """One key of a table: the TOML kinds it accepts (None: any), its default and constraint."""

    name: str
    kinds: tuple[str, ...] | None
    default: Any = None
    check: Check | None = None
    table: type | None = None  # the dataclass that checks a sub-table

    def fresh_default(self) -> Any:
        return copy.deepcopy(self.default)


def _kinds(annotation: Any) -> tuple[tuple[str, ...], type | None]:
    """``int | EarlyStopping | None`` -> ``(("int", "table", "none"), EarlyStopping)``."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds, table = [], None
    for a in typing.get_args(annotation) if union else (annotation,):
        if dataclasses.is_dataclass(a):
            kinds.append("table")
            table = a
        else:
            kinds.append(_KIND_OF_TYPE[typing.get_origin(a) or a])
    return tuple(kinds), table


@functools.cache
def schema(cls: type) -> dict[str, Setting]:
    """The settings declared by a dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kinds, table = _kinds(hints[f.name])
        out[f.name] = Setting(f.name, kinds, default, f.metadata.get("check"), table)
    return out


def defaults(cls: type) -> dict[str, Any]:
    """Key -> default of a dataclass schema (fresh copies)."""
    return {k: s.fresh_default() for k, s in schema(cls).items()}


def kinds_from_default(default: Any) -> tuple[str, ...] | None:
    """The kinds of a signature option, read from its default (None: any value)."""
    if default is None or default is inspect.Parameter.empty:
        return None
    for kind in ("bool", "int", "str"):
        if matches(kind, default):
            return (kind,)
    if isinstance(default, float):
        return ("number",)
    if isinstance(default, (list, tuple)):
        return ("list", "str")
    return None


# ---------------------------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------------------------
def _children(key: str, v: Any):
    if isinstance(v, dict):
        return [(join(key, k), x) for k, x in v.items()]
    if isinstance(v, list):
        return [(f"{key}[{i}]", x) for i, x in enumerate(v)]
    return []


def _first_bad_number(key: str, v: Any) -> tuple[str, str] | None:
    """The key path and complaint of the first NaN, infinity or integer beyond 64 bits inside ``v``."""
    stack = [(key, v)]
    while stack:
        k, x = stack.pop()
        if isinstance(x, float) and not math.isfinite(x):
            return k, f"expected a finite number, got {show(x)}"
        if isinstance(x, int) and not isinstance(x, bool) and not INT64[0] <= x <= INT64[1]:
            return k, f"expected an integer that fits in 64 bits, got {show(x)}"
        stack.extend(reversed(_children(k, x)))
    return None


class Ctx:
    """Where we are: the config file (for messages) and its folder (for relative paths)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = None if path is None else Path(path)
        self.base = Path.cwd() if path is None else Path(path).resolve().parent

    def error(self, key: str, msg: str) -> ConfigError:
        where = f"{self.path}: " if self.path is not None else ""
        return ConfigError(f"{where}{printable(key)}: {msg}" if key else f"{where}{msg}")

    def check_type(self, key: str, v: Any, kinds: tuple[str, ...]) -> None:
        if not any(matches(k, v) for k in kinds):
            want = " or ".join(TYPE_WORDS[k] for k in kinds if k != "none")
            raise self.error(key, f"expected {want}, got {type_name(v)} {show(v)}")

    def unknown(self, key: str, name: str, known) -> ConfigError:
        known = list(known)
        return self.error(join(key, name),
                          f"unknown key{suggest(name, known)} (valid keys: {', '.join(known)})")

    def check_value(self, key: str, v: Any, kinds: tuple[str, ...] | None, check: Check | None = None) -> None:
        """Type, constraint and numbers of one value: every float inside it finite, every integer
        within 64 bits.  A value typed as a table is left to its own schema (or its owner)."""
        if kinds is not None:
            self.check_type(key, v, kinds)
        if v is None:
            return
        if check is not None and not ((not isinstance(v, float) or math.isfinite(v)) and check.ok(v)):
            hint = suggest(v, check.choices) if check.choices else ""
            raise self.error(key, f"expected {check.want}, got {show(v)}{hint}")
        bad = _first_bad_number(key, v) if kinds is None or not isinstance(v, dict) else None
        if bad is not None:
            raise self.error(*bad)

    def choose(self, key: str, v: str, choices, what: str, fold_case: bool = True) -> str:
        """``v`` (lower-cased with ``fold_case``) if it names one of ``choices``; else
        ``unknown <what> 'v'; did you mean ...? (choose from ...)``."""
        name = v.lower() if fold_case else v
        if name in choices:
            return name
        raise self.error(key, f"unknown {what} {v!r}{suggest(v, choices)} (choose from {', '.join(choices)})")

    def check_table(self, key: str, table: dict, settings: dict[str, Setting]) -> dict:
        """Every key known, every value checked; the defaults filled in (a fresh dict, schema order)."""
        for k in table:
            if k not in settings:
                raise self.unknown(key, k, settings)
        out = {}
        for k, s in settings.items():
            if k not in table:
                out[k] = s.fresh_default()
                continue
            v = table[k]
            self.check_value(f"{key}.{k}", v, s.kinds, s.check)
            out[k] = self.check_table(f"{key}.{k}", v, schema(s.table)) if s.table and isinstance(v, dict) else v
        return out


def check_tree(ctx: Ctx, raw: Any) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and TOML dates/times (no setting takes one),
    before anything recursive (messages, validators, the TOML writer) sees the value.  Iterative."""
    stack = [("", raw, 0)]
    while stack:
        key, v, depth = stack.pop()
        if not isinstance(v, (str, int, float, dict, list, type(None))):
            raise ctx.error(key, f"expected a number, a string, a boolean, an array or a table, got "
                                 f"{type_name(v)} {show(v)}")
        kids = _children(key, v)
        if kids and depth >= MAX_DEPTH:
            raise ctx.error(key, f"nested too deep (more than {MAX_DEPTH} levels of tables and arrays)")
        stack.extend((k, x, depth + 1) for k, x in reversed(kids))
