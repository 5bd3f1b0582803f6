"""Reading a config file (one clear error for anything tomllib refuses) and writing a resolved one."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

from .schema import MAX_DEPTH, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_toml", "dumps_toml", "tomllib"]


def read_toml(path: str | os.PathLike) -> dict:
    """Parse a TOML file; a missing file, bad syntax or nesting too deep for the parser raises
    ConfigError naming the file (and the line, where tomllib says it)."""
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
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(f"{p}: invalid TOML: arrays or inline tables nested too deep (a config may nest "
                          f"{MAX_DEPTH} levels)") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_string(k)


def _toml_string(s: str) -> str:
    """A TOML basic string (JSON's escapes, plus DEL, which TOML wants escaped too)."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


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
        return _toml_string(v)
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
                lines.extend(f"    {_toml_value(x)}," for x in v)
                lines.append("]")
            else:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subs:
            table(f"{name}.{_toml_key(k)}", v)

    for name, d in cfg.items():
        table(name, d)
    return "\n".join(lines).lstrip("\n") + "\n"
