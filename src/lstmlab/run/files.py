"""Safe file writes: the one atomic-write helper, JSON lines, and JSON that never holds NaN.

:func:`atomic_write` is how every file of a run directory is written: the bytes go to a temporary
file with a unique name in the target's folder (``.NAME.XXXXXXXX.tmp``, created with
``O_EXCL | O_NOFOLLOW``, so it never opens an existing file or follows a symlink planted there),
are flushed to disk (``fsync``), and the temporary file is renamed onto the target with
``os.replace`` (which replaces a symlink at the target instead of writing through it).  On any
error the temporary file is removed; a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "append_line", "append_jsonl", "read_jsonl", "read_json", "to_json", "clean",
           "TMP_GLOB"]

TMP_GLOB = ".*.tmp"  # what a write cut short by a crash leaves behind (see :func:`atomic_write`)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def clean(v: Any) -> Any:
    """JSON-safe: numpy -> python, non-finite floats -> None."""
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return clean(v.tolist())
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def to_json(obj: Any, indent: int | None = 1) -> str:
    """``obj`` as JSON text (see :func:`clean`), ending in a newline."""
    return json.dumps(clean(obj), indent=indent) + "\n"


def _open_new(folder: Path, name: str) -> tuple[int, Path]:
    """Create a fresh temporary file next to the target; never reuse or follow an existing entry."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: could not create a temporary file for {name}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (see the module doc); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    fd, tmp = _open_new(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk; refuses to write through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line.rstrip("\n") + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def append_jsonl(path: str | os.PathLike, obj: dict) -> None:
    """Append ``obj`` as one JSON line (see :func:`append_line`)."""
    append_line(path, json.dumps(clean(obj)))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a ``.jsonl`` file, skipping blank or broken lines (a line cut short by a
    kill); [] when the file is missing."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            rows.append(rec)
    return rows


def read_json(path: str | os.PathLike) -> Any:
    """The parsed JSON of ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def keep_jsonl(path: str | os.PathLike, keep: Callable[[dict], bool]) -> None:
    """Rewrite a ``.jsonl`` file (atomically) with only the records for which ``keep`` is true."""
    p = Path(path)
    if not p.exists():
        return
    kept: Iterable[str] = (json.dumps(rec) for rec in read_jsonl(p) if keep(rec))
    atomic_write(p, "".join(k + "\n" for k in kept))
