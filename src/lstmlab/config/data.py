"""``[data]``: a source and its options, typed by the loader's own signature (its defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import SOURCES
from ..data.registry import REQUIRED, resolve_source
from .schema import Ctx, kinds_from_default, printable, show, suggest

__all__ = ["FILE_OPTIONS", "validate_data", "resolve_file"]

# Data-source options that name files; relative paths are resolved against the config's folder.
FILE_OPTIONS = ("path", "val_path", "test_path")


def validate_data(ctx: Ctx, data: dict, check_files: bool) -> dict:
    """The ``[data]`` table with the source's name normalised and its defaults filled in."""
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
        kinds = kinds_from_default(options[k])
        if k in FILE_OPTIONS:
            kinds = ("str", "none")
        elif kinds is not None and options[k] is None:
            kinds += ("none",)
        ctx.check_value(f"data.{k}", v, kinds)
        out[k] = _checked_file(ctx, f"data.{k}", v, check_files) if k in FILE_OPTIONS and v is not None else v
    for k, default in options.items():
        if k in out:
            continue
        if default is REQUIRED:
            raise ctx.error(f"data.{k}", f"missing; data source {src.name!r} needs it")
        out[k] = default.copy() if isinstance(default, (list, dict)) else (
            list(default) if isinstance(default, tuple) else default)
    return out


def resolve_file(base: Path, value: str) -> Path:
    """A data file named in a config: relative to the config's folder ``base`` (or, when only
    there, the working directory).  Raises ValueError/OSError/RuntimeError for impossible names."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        here = base / p
        p = here if (here.exists() or not (Path.cwd() / p).exists()) else Path.cwd() / p
    return p.resolve() if p.exists() else p


def _checked_file(ctx: Ctx, key: str, value: str, check: bool) -> str:
    try:
        if "\x00" in value:
            raise ValueError("it holds a NUL character")
        p = resolve_file(ctx.base, value)
        found = p.exists()
    except (ValueError, OSError, RuntimeError) as exc:  # NUL, a name too long, an unknown ~user
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ctx.error(key, f"expected a file name, got {show(value)} ({reason})") from None
    if check and not found:
        raise ctx.error(key, f"file not found: {value!r} (looked for {printable(str(p))})")
    return str(p)
