"""How a recurrent layer meets torch's modes: compile / export tracing and autocast.

The layer asks :func:`plan` which engine to run and whether that engine must run in float32:

* **Tracing** (``torch.compile``, ``torch.export``): ``engine="auto"`` keeps its eager choice
  when the fused engine's custom operators can be traced (they have fake kernels); otherwise,
  and always under ``torch.export``, it takes torch's own kernels (``native``), whose ``aten.lstm``
  / ``gru`` / ``rnn`` ops every exporter knows.  One gap of torch is bridged: AOT autograd cannot
  differentiate the CPU ``aten.lstm`` kernel when its input needs no gradient (a model's first
  LSTM), so that layer runs ``loop`` while compiled for training.  ``engine="reference"`` is
  NumPy: eager only, so a trace refuses it with a clear error.
* **Autocast**: ``native`` and ``loop`` are torch ops and follow autocast's casts;
  ``engine="auto"`` takes ``native`` when it can.  The engines without reduced-precision kernels
  (``fused``, ``reference``; or ``auto`` when taps, recurrent dropout or layer norm rule
  ``native`` out) run their time loop in float32 with autocast off.  Either change is said once
  per process (a ``UserWarning``).
* **torch.func transforms** (``grad``, ``vmap``, ...): ``engine="auto"`` takes ``loop`` (plain torch
  ops: every transform applies; torch's RNN ops have no vmap rule); ``fused`` is refused with a
  clear error (its autograd.Function has no functorch rules).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from .. import cells
from .. import engine as engines
from ..engine import native
from ..validation import tracing

_NOTED: set[str] = set()


class Plan(NamedTuple):
    """What one call runs: the engine name and whether it runs in float32 with autocast off."""

    engine: str
    float32: bool


def note_once(key: str, message: str) -> None:
    """A UserWarning the first time ``key`` comes up in this process."""
    if key not in _NOTED:
        _NOTED.add(key)
        warnings.warn(f"lstmlab: {message}", UserWarning, stacklevel=4)


def fused_traceable() -> bool:
    """Whether the fused engine is built and its operators have fake (meta) kernels (the time-loop
    operators; a settings operator such as ``configure`` needs none)."""
    if engines.fused_module() is None:
        return False
    try:
        from torch._library import simple_registry

        names = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("lstmlab_fused::")]
        return any(simple_registry.singleton.find(n).fake_impl.kernel is not None for n in names)
    except (AttributeError, ImportError, RuntimeError):  # private API moved: assume not traceable
        return False


def _native_ok(spec: cells.Cell, activation: str, taps: bool, rmask: bool, layer_norm: bool) -> bool:
    return not (taps or rmask or layer_norm) and native.kernel(spec, activation) is not None


def _aot_lstm_gap(engine: str, spec: cells.Cell, x: torch.Tensor) -> bool:
    """torch's CPU (oneDNN) LSTM kernel cannot be differentiated by AOT autograd when its input needs no
    gradient (the backward graph saves a None): true for the first LSTM of a model trained compiled."""
    return engine == "native" and spec is cells.LSTM and x.device.type == "cpu" and torch.is_grad_enabled() \
        and not x.requires_grad and not torch.compiler.is_exporting()


def _traced(engine: str, spec: cells.Cell, activation: str, ok_native: bool, x: torch.Tensor) -> str:
    if engine == "reference":
        raise RuntimeError(f"engine='reference' runs in NumPy and is eager-only: torch.compile / torch.export "
                           f"cannot trace it; use engine='native', 'loop' or 'auto' for the {spec.layer} layer")
    if engine == "auto" and torch.compiler.is_exporting():
        engine = "native" if ok_native else "loop"
    elif engine == "auto" and not fused_traceable():
        engine = "native" if ok_native else "loop"
    if _aot_lstm_gap(engine, spec, x):
        note_once("aot-lstm", "torch.compile cannot differentiate torch's CPU LSTM kernel when its input needs no "
                              "gradient; that LSTM runs on engine='loop' (the same equations) while compiled")
        return "loop"
    return engine


def autocast_on(x: torch.Tensor) -> bool:
    """Whether torch.autocast is active for ``x``'s device (never for ``meta`` tensors: no autocast there)."""
    return x.device.type != "meta" and torch.is_autocast_enabled(x.device.type)


def plan(engine: str, spec: cells.Cell, activation: str, x: torch.Tensor, *, taps: bool, rmask: bool,
         layer_norm: bool) -> Plan:
    """The engine for one call of a ``spec`` layer on ``x`` (see the module docstring)."""
    ok_native = _native_ok(spec, activation, taps, rmask, layer_norm)
    if torch._C._are_functorch_transforms_active():  # the fused autograd.Function has no functorch rules
        if engine == "fused":
            raise RuntimeError("engine='fused' does not support torch.func transforms (grad, vmap, ...); "
                               "use engine='native', 'loop' or 'auto'")
        engine = "loop" if engine == "auto" else engine  # torch's RNN ops have no vmap batching rule
    elif tracing():
        engine = _traced(engine, spec, activation, ok_native, x)
    if not autocast_on(x):
        return Plan(engine, False)
    if engine in ("native", "loop"):
        return Plan(engine, False)
    if engine == "auto" and ok_native:
        note_once("autocast-native", "under torch.autocast, recurrent layers with engine='auto' run on torch's "
                                     "native kernels (the fused engine has no reduced-precision kernels)")
        return Plan("native", False)
    note_once(f"autocast-float32-{engine}", f"under torch.autocast, engine={engine!r} (with taps, recurrent "
                                            "dropout or layer norm, or by choice) runs its time loop in float32")
    return Plan(engine, True)
