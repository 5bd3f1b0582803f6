"""Safe file writes: the one atomic-write helper, JSON lines, and JSON that never holds NaN.

:func:`atomic_write` is how every file of a run directory is written: the bytes go to a temporary
file with a unique name in the target's folder (``.NAME.XXXXXXXX.tmp``, created with
``O_EXCL | O_NOFOLLOW``, so it never opens an existing file or follows a symlink planted there),
are flushed to disk (``fsync``), and the temporary file is renamed onto the target with
``os.replace`` (which replaces a symlink at the target instead of writing through it).  On any
error the temporary file is removed; a reader sees the old file or the new one, never half of one.
Appends (:func:`append_line`, :func:`open_append`: JSON lines, logs) never follow a symlink.

A write that fails (disk full, read-only, permissions) raises :class:`WriteError`, an ``OSError``
whose message names the file: ``lstmlab train`` turns it into one line and exit code 2.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_write", "append_line", "append_jsonl", "open_append", "read_jsonl", "read_json", "to_json",
           "clean", "WriteError", "TMP_GLOB", "is_temporary"]

TMP_GLOB = ".*.tmp"  # what a write cut short by a crash leaves behind (see :func:`atomic_write`)
_TMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")  # exactly the names :func:`_open_new` makes
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class WriteError(OSError):
    """A file could not be written (disk full, read-only file system, a symlink in the way, ...);
    ``filename`` is the file meant, ``strerror`` why."""

    def __init__(self, path: str | os.PathLike, exc: OSError) -> None:
        why = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno == errno.ELOOP:
            why = "it is a symbolic link; lstmlab does not write through links"
        super().__init__(exc.errno, why, os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror})"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_write` (``.NAME.XXXXXXXX.tmp``)."""
    return _TMP_NAME.fullmatch(name) is not None


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
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
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


def _write_all(fd: int, raw: bytes) -> None:
    """``os.write`` until every byte is out (a short write is not an error), then ``fsync``."""
    view = memoryview(raw)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically (see the module doc); return the path.  Raises
    :class:`WriteError` naming ``path`` when it cannot."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _open_new(path.parent, path.name)
    except OSError as exc:
        raise WriteError(path, exc) from None
    try:
        try:
            _write_all(fd, raw)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from None
        raise
    _fsync_dir(path.parent)
    return path


def _open_for_append(path: str | os.PathLike) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as exc:
        raise WriteError(path, exc) from None


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line and flush it to disk; refuses to write through a symlink (:class:`WriteError`).
    A write that fails half-way is cut back, so the next line does not land on a broken one."""
    fd = _open_for_append(path)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise WriteError(path, exc) from None
    finally:
        os.close(fd)


def append_jsonl(path: str | os.PathLike, obj: dict) -> None:
    """Append ``obj`` as one JSON line (see :func:`append_line`)."""
    append_line(path, json.dumps(clean(obj)))


def open_append(path: str | os.PathLike):
    """A text file opened for appending (a log), never through a symlink; the caller closes it."""
    return os.fdopen(_open_for_append(path), "a", encoding="utf-8")


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
