"""``engine="auto"`` decides by measurement: a short timing on first use, cached on disk.

Like ``torch.backends.cudnn.benchmark``: the first time a layer asks ``auto`` for a kernel
without taps on the CPU, the candidates (the fused engine and torch's own kernel) each run a
few forward (+ backward, when training) passes on random tensors of that layer's shape,
interleaved, and the faster one is remembered.  The choice is stored per

    machine:  CPU model + torch version (+ lstmlab's kernel revision)
    entry:    cell, dtype, shape bucket (powers of two of B, I, H, T), threads, taps, train/infer

in a JSON file: ``$LSTMLAB_AUTOTUNE_CACHE`` if set, else ``$XDG_CACHE_HOME/lstmlab/autotune.json``
(default ``~/.cache/lstmlab/autotune.json``).  Delete the file to measure again.
``LSTMLAB_AUTOTUNE=0`` switches timing and the file off (``auto`` then keeps its fixed rule).

The first decision for an entry is written and then kept: every later process on this machine
runs the same kernel, so a run killed and resumed in a new process (or ``lstmlab train best.toml``
after ``lstmlab doctor``) computes the same floats.  A timing taken while the machine is
oversubscribed (1-minute load average above 1.5x the usable cores) is written too, marked
``"busy": true``: under contention torch's OpenMP kernels slow down far more than the fused
engine, so delete the file on a quiet machine to measure again.

Decision rule (:func:`decide`): the fused kernel is chosen only when its median AND its minimum
are at least :data:`MARGIN` below torch's; on a tie or any doubt, torch's kernel.  So ``auto``
without taps is never knowingly slower than ``native``.  Writes are atomic (temporary file +
``os.replace``); a corrupt or unreadable file is ignored with one warning and rewritten.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

MARGIN = 0.03  # fused must beat torch by 3 % (median and minimum) to be chosen
REPEATS = 15  # at most this many timed runs of each candidate, interleaved, after one warm-up run each
BUDGET_S = 1.0  # stop adding repeats (at least 3) once the timing took this long
MAX_STEPS = 64  # timing runs use at most this many time steps (the per-step cost decides)
REVISION = 1  # bump when the kernels change enough to invalidate old measurements
NATIVE, FUSED = "native", "fused"

# The clock of the timing loop (tests set a fake one).  None: per-thread CPU time when torch runs
# one thread (robust to other processes on the machine), else wall-clock time.
TIMER: Callable[[], float] | None = None

_memo: dict = {"entries": None, "path": None, "warned": False}


def enabled() -> bool:
    """False when ``LSTMLAB_AUTOTUNE`` is ``0`` / ``off`` / ``false`` / ``no``."""
    return os.environ.get("LSTMLAB_AUTOTUNE", "1").strip().lower() not in ("0", "off", "false", "no")


def cache_path() -> Path:
    """Where the measurements live (see the module docstring)."""
    env = os.environ.get("LSTMLAB_AUTOTUNE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstmlab" / "autotune.json"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def machine_key() -> str:
    """Top-level key of the cache file: measurements from another CPU or torch never apply."""
    return f"{cpu_model()} | torch {torch.__version__} | rev {REVISION}"


def bucket(n: int) -> int:
    """The power of two at or above ``n`` (shapes in one bucket share a measurement)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def entry_key(cell: str, dtype: torch.dtype, shape: tuple, threads: int, taps: bool, train: bool) -> str:
    """Key of one decision; ``shape`` is (B, T, I, H)."""
    b, t, i, h = (bucket(v) for v in shape)
    t = min(t, MAX_STEPS)
    return (f"{cell}|{str(dtype).replace('torch.', '')}|B{b} T{t} I{i} H{h}|threads {threads}"
            f"|taps {int(taps)}|{'train' if train else 'infer'}")


def decide(times: dict[str, list[float]]) -> str:
    """``fused`` only if its median and minimum are both MARGIN below ``native``'s, else ``native``."""
    f, n = times.get(FUSED), times.get(NATIVE)
    if not f or not n:
        return NATIVE if n else FUSED
    limit = 1.0 - MARGIN
    if statistics.median(f) <= limit * statistics.median(n) and min(f) <= limit * min(n):
        return FUSED
    return NATIVE


def measure(candidates: dict[str, Callable[[], None]]) -> dict[str, list[float]]:
    """Seconds per run of each candidate: one warm-up each, then interleaved rounds until REPEATS
    or, after at least 3, until the timing took BUDGET_S."""
    clock = TIMER or (time.thread_time if torch.get_num_threads() == 1 else time.perf_counter)
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    start = clock()
    for rnd in range(REPEATS):
        for name, fn in candidates.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
        if rnd >= 2 and clock() - start > BUDGET_S:
            break
    return times


def busy() -> bool:
    """Whether the machine is oversubscribed now (1-minute load average > 1.5 x usable cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        return os.getloadavg()[0] > 1.5 * cores
    except (AttributeError, OSError):
        return False


def _warn(msg: str) -> None:
    if not _memo["warned"]:
        _memo["warned"] = True
        warnings.warn(f"lstmlab autotune: {msg}", RuntimeWarning, stacklevel=4)


def _read(path: Path) -> dict:
    """All machines' entries of the file; {} (with one warning) when it is missing-but-broken."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _warn(f"ignoring unreadable cache {path} ({type(exc).__name__}); it will be rewritten")
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        _warn(f"ignoring cache {path}: expected a JSON object of objects; it will be rewritten")
        return {}
    return data


def _write(path: Path, data: dict) -> None:
    """Atomic: a temporary file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autotune-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        _warn(f"cannot write the cache {path} ({exc}); measurements stay in memory")


def _entries() -> dict:
    """This machine's entries (read once per process and per cache path)."""
    path = cache_path()
    if _memo["entries"] is None or _memo["path"] != path:
        _memo["entries"] = dict(_read(path).get(machine_key(), {}))
        _memo["path"] = path
    return _memo["entries"]


def choose(key: str, candidates: Callable[[], dict[str, Callable[[], None]]]) -> str:
    """The cached decision for ``key``, or measure ``candidates()`` (name -> one run), decide,
    store on disk (kept from then on, so every process agrees) and return it."""
    entries = _entries()
    hit = entries.get(key)
    if isinstance(hit, dict) and hit.get("choice") in (FUSED, NATIVE):
        return hit["choice"]
    times = measure(candidates())
    choice = decide(times)
    entries[key] = {"choice": choice, **{f"{n}_median_ms": round(1e3 * statistics.median(v), 4)
                                         for n, v in times.items()}}
    if busy():
        entries[key]["busy"] = True  # timed under contention: delete the file to measure again
    path = _memo["path"]
    data = _read(path)  # merge: another process may have added entries meanwhile
    data.setdefault(machine_key(), {})[key] = entries[key]
    _write(path, data)
    return choice


def reset() -> None:
    """Forget what this process read (tests; after deleting the file)."""
    _memo.update(entries=None, path=None, warned=False)
