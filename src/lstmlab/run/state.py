"""The training state of a checkpoint, checked before a resume trusts any of it.

A checkpoint's ``train_state`` (the same JSON as ``checkpoints/state.json``) decides where a
resumed run starts, which RNG states it restores and what the gradient monitor remembers.  It is
read from a file, so :func:`check_state` checks every key it uses for type and range, and the
RNG states by loading them into throw-away generators: a wrong value is one
:class:`~lstmlab.run.rundir.RunDirError` naming the file and the key (exit code 2), never a
traceback or a run that trains epochs -4..4.  Unknown keys are ignored.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .rundir import RunDirError

__all__ = ["check_state", "check_rng", "STATUSES", "MAX_COUNT"]

STATUSES = ("running", "completed", "early_stopped", "diverged", "stopped")
MAX_COUNT = 2**53  # epochs, steps, batches: JSON-exact integers
_TORCH_STATE = int(torch.get_rng_state().numel())


class _Bad(Exception):
    """A wrong value: ``key`` (a path inside the state) and what was expected."""

    def __init__(self, key: str, expected: str, got: Any) -> None:
        super().__init__(key, expected, got)
        self.key, self.expected, self.got = key, expected, got


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(state: dict, key: str, low: int, required: bool = False, none: bool = False) -> None:
    if key not in state and not required:
        return
    v = state.get(key)
    if v is None and none:
        return
    if not _is_int(v) or not low <= v <= MAX_COUNT:
        raise _Bad(key, f"an integer >= {low}" + (" or null" if none else ""), v)


def _number(state: dict, key: str, low: float | None = None, none: bool = True) -> None:
    if key not in state:
        return
    v = state[key]
    if v is None and none:
        return
    if not _is_number(v) or (low is not None and v < low):
        bound = f" >= {low}" if low is not None else ""
        raise _Bad(key, f"a finite number{bound}" + (" or null" if none else ""), v)


def _sums(v: Any) -> None:
    if not isinstance(v, dict):
        raise _Bad("epoch_sums", "an object of [sum, count] pairs", v)
    for k, pair in v.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_number(x) for x in pair) and pair[1] >= 0):
            raise _Bad(f"epoch_sums.{k}", "a [sum, count] pair of finite numbers", pair)


def check_rng(rng: Any, key: str = "rng") -> None:
    """Raise :class:`_Bad` unless ``rng`` is what :func:`lstmlab.run.checkpoint.rng_state` writes."""
    if not isinstance(rng, dict):
        raise _Bad(key, "an object with python, numpy and torch states", rng)
    py, npst, tst = rng.get("python"), rng.get("numpy"), rng.get("torch")
    try:
        if not (isinstance(py, list) and len(py) == 3 and py[0] == 3 and isinstance(py[1], list)
                and all(_is_int(x) for x in py[1]) and (py[2] is None or _is_number(py[2]))):
            raise TypeError
        random.Random().setstate((py[0], tuple(py[1]), py[2]))
    except (TypeError, ValueError, OverflowError):
        raise _Bad(f"{key}.python", "a Python random state [version, 625 integers, gauss]", py) from None
    try:
        if not (isinstance(npst, list) and len(npst) == 5 and isinstance(npst[1], list)
                and all(_is_int(x) for x in npst[1]) and all(_is_int(x) for x in npst[2:4]) and _is_number(npst[4])):
            raise TypeError
        keys = np.asarray(npst[1], dtype=np.int64)
        if keys.shape != (624,) or keys.min() < 0 or keys.max() >= 2**32 or not 0 <= npst[2] <= 624 \
                or npst[3] not in (0, 1):  # numpy does not check pos: beyond 624 it would read out of bounds
            raise ValueError
        np.random.RandomState().set_state((npst[0], keys.astype(np.uint32), npst[2], npst[3], npst[4]))
    except (TypeError, ValueError, OverflowError):
        raise _Bad(f"{key}.numpy", "a NumPy MT19937 state [name, 624 integers, pos, has_gauss, gauss]",
                   npst) from None
    for name, value in (("torch", tst), ("cuda", rng.get("cuda"))):
        if name == "cuda" and value is None:
            continue
        if not (isinstance(value, list) and all(_is_int(b) and 0 <= b < 256 for b in value)):
            raise _Bad(f"{key}.{name}", "a list of bytes (integers 0..255)", value)
    if len(tst) != _TORCH_STATE:
        raise _Bad(f"{key}.torch", f"{_TORCH_STATE} bytes", f"{len(tst)} bytes")
    try:
        torch.Generator().set_state(torch.tensor(tst, dtype=torch.uint8))
    except (RuntimeError, ValueError):
        raise _Bad(f"{key}.torch", "a torch CPU generator state", "a state torch refuses") from None


_MONITOR = {"_last_sample": "step", "_snapshot_step": "step", "restores": "count", "_best": "float",
            "_losses": "floats", "_param_norms": "floats", "findings": "strings", "rollback": "object"}


def _monitor_value(key: str, kind: str, v: Any) -> None:
    if kind == "step" and v is not None and not (_is_int(v) and 0 <= v <= MAX_COUNT):
        raise _Bad(key, "an integer >= 0 or null", v)
    if kind == "count" and not (_is_int(v) and 0 <= v <= MAX_COUNT):
        raise _Bad(key, "an integer >= 0", v)
    if kind == "float" and v is not None and not _is_number(v):
        raise _Bad(key, "a finite number or null", v)
    if kind == "floats" and not (isinstance(v, list) and all(x is None or _is_number(x) for x in v)):
        raise _Bad(key, "a list of numbers (null for NaN)", v)
    if kind == "strings" and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        raise _Bad(key, "a list of strings", v)
    if kind == "object" and v is not None and not isinstance(v, dict):
        raise _Bad(key, "an object or null", v)


def _monitor(ms: Any) -> None:
    if ms is None:
        return
    if not isinstance(ms, dict):
        raise _Bad("monitor_state", "an object or null", ms)
    for k, kind in _MONITOR.items():
        if k in ms:
            _monitor_value(f"monitor_state.{k}", kind, ms[k])


def _settings(v: Any) -> None:
    if not isinstance(v, dict):
        raise _Bad("settings", "an object", v)
    for k in ("clipnorm", "clipvalue", "global_clipnorm"):
        x = v.get(k)
        if x is not None and not (_is_number(x) and x > 0):
            raise _Bad(f"settings.{k}", "a positive number or null", x)
    g = v.get("last_grad_norm")
    if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float))):
        raise _Bad("settings.last_grad_norm", "a number or null", g)


def _check(state: Any, n_train: int | None) -> None:
    if not isinstance(state, dict):
        raise _Bad("train_state", "a JSON object", state)
    _int(state, "version", 1, required=True)
    _int(state, "epoch", 0, required=True)
    _int(state, "global_step", 0, required=True)
    for key, low in (("batch", 0), ("wait", 0), ("global_batch", 1), ("world_size", 1)):
        _int(state, key, low)
    _int(state, "best_epoch", 1, none=True)
    _int(state, "diverged_epoch", 1, none=True)
    _number(state, "best")
    _number(state, "time_s", 0.0, none=False)
    _number(state, "partial_time_s", 0.0)
    if state.get("status", "running") not in STATUSES:
        raise _Bad("status", f"one of {', '.join(STATUSES)}", state.get("status"))
    for key in ("monitor", "epoch_verdict"):
        if state.get(key) is not None and not isinstance(state[key], str):
            raise _Bad(key, "a string or null", state[key])
    if state.get("epoch_sums") is not None:
        _sums(state["epoch_sums"])
    batch, per = state.get("batch") or 0, state.get("global_batch") or 1
    if n_train is not None and batch and batch * per >= n_train:
        raise _Bad("batch", f"fewer than the {-(-n_train // per)} batches of {per} in an epoch of {n_train} "
                   "samples", batch)
    if state.get("rng") is not None:
        check_rng(state["rng"])
    ranks = state.get("rng_ranks")
    if ranks is not None:
        if not isinstance(ranks, list):
            raise _Bad("rng_ranks", "a list of RNG states", ranks)
        for i, r in enumerate(ranks):
            check_rng(r, f"rng_ranks[{i}]")
    _monitor(state.get("monitor_state"))
    if state.get("settings") is not None:
        _settings(state["settings"])


def check_state(state: Any, path: str | Path, n_train: int | None = None) -> dict:
    """``state`` when every key a resume uses is of the right type and range (``n_train``: the
    training samples, to check the batch position); else :class:`RunDirError` naming ``path``
    and the key: ``FILE: train_state.KEY: expected ..., got ...``."""
    try:
        _check(state, n_train)
    except _Bad as bad:
        got = repr(bad.got)
        got = got if len(got) <= 80 else got[:77] + "..."
        key = bad.key if bad.key == "train_state" else f"train_state.{bad.key}"
        raise RunDirError(f"{path}: {key}: expected {bad.expected}, got {got}; the checkpoint is damaged "
                          "(resume from another copy or start a new run)") from None
    return state
