"""The exclusive lock of a run directory: one lstmlab process at a time works in it.

:class:`RunLock` holds ``fcntl.flock(LOCK_EX)`` on a lock file inside the directory for as long
as a ``train`` or ``tune`` runs.  The kernel releases a flock when the process ends, however it
ends (``kill -9`` included), so a lock is never left stale; the file itself stays (removing a
lock file while others may hold it open is what makes lock files race).  While held, the file
says who holds it (pid, host, command, start time) so a second process can name the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, the rest works
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LockBusy", "holder", "describe", "this_command"]

_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_MAX_HOLDER = 4096  # bytes of holder information read back (it is ours; a bigger file is not)


class LockBusy(Exception):
    """The lock is held by another process; ``holder`` is what its file says (maybe ``{}``)."""

    def __init__(self, path: Path, info: dict) -> None:
        super().__init__(f"{path}: held by {describe(info)}")
        self.path, self.holder = path, info


def this_command() -> str:
    """This process's command line, as a user would type it (``lstmlab train ...``)."""
    argv = list(sys.argv) or ["python"]
    first = Path(argv[0]).name
    if first in ("__main__.py", "lstmlab") or argv[0].endswith(os.path.join("lstmlab", "__main__.py")):
        first = "lstmlab"
    return shlex.join([first, *argv[1:]])[:500]


def describe(info: dict) -> str:
    """``pid 123 on host 'h' (lstmlab train ...), started 2024-05-01 12:00:00 UTC`` (what is known)."""
    if not isinstance(info, dict) or not info:
        return "another process (it has not said who it is yet)"
    parts = [f"pid {info.get('pid', '?')} on host {str(info.get('host', '?'))!r}"]
    if info.get("command"):
        parts.append(f"({str(info['command'])[:200]!r})")
    if info.get("started"):
        parts.append(f"started {str(info['started'])[:40]}")
    return " ".join(parts)


def _read_info(fd: int) -> dict:
    try:
        raw = os.pread(fd, _MAX_HOLDER, 0)
        info = json.loads(raw.decode("utf-8", errors="replace")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(path: str | os.PathLike) -> dict | None:
    """Who holds the lock at ``path`` (a dict, maybe empty), or None when nobody does.  Read only:
    the file is neither created nor changed."""
    try:
        fd = os.open(path, os.O_RDONLY | _FLAGS)
    except FileNotFoundError:
        return None
    try:
        if not _try_lock(fd):
            return _read_info(fd)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """An exclusive, non-blocking lock on ``path`` (created if missing); a context manager."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self, kind: str) -> RunLock:
        """Take the lock and write who holds it; :class:`LockBusy` when another process has it."""
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _FLAGS, 0o666)
            if not _try_lock(fd):
                info = _read_info(fd)
                os.close(fd)
                raise LockBusy(self.path, info)
            try:  # the file we locked is still the one at the path (nobody replaced it meanwhile)
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise LockBusy(self.path, {})
        self.fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": this_command(), "kind": kind,
                "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        with contextlib.suppress(OSError):  # who holds it is information; the lock is what counts
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        return self

    def release(self) -> None:
        """Forget the holder and release the lock (idempotent)."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
