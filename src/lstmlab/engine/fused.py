"""Fused engine: compiled time loops with a hand-derived backward pass (BPTT).

Forward: the input projection of all steps is ONE matrix product; the recurrence runs in C++
(``csrc/fused.cpp``): per step one GEMM ``h_{t-1} @ W_hh^T`` straight into BLAS and a fused
elementwise gate loop (AVX2 where the machine has it) that also counts saturated units for the
taps.  Backward: per step the gate gradients and one GEMM ``dG_t @ W_hh``; the weight
gradients of all steps are a few big matrix products after the loop; the taps' squared
gradient norms come out of the same elementwise loop.  CUDA tensors take a device-generic
route through the same C++ code (per-step ``at::`` ops dispatched to CUDA).

The extension is compiled on first use with ``torch.utils.cpp_extension.load`` (cached under
``$TORCH_EXTENSIONS_DIR``, or ``$LSTMLAB_BUILD_DIR`` if set).  :func:`load` raises when that
fails; :func:`lstmlab.engine.fused_module` then falls back to the loop engine.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

from . import loop
from .taps import GATES, StepTaps

_CSRC = Path(__file__).with_name("csrc")
_SOURCES = ("fused.cpp",)
_state: dict = {"ops": None}
# Forces the device-generic (per-step at:: ops) route on the CPU too; used by tests.
FORCE_GENERIC = False


def _cpu_flags() -> list[str]:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    if not {"avx2", "fma"} <= flags:
        return []
    return ["-mavx2", "-mfma"] + (["-mavx512f"] if "avx512f" in flags and not os.environ.get(
        "LSTMLAB_NO_AVX512") else [])


def load():
    """Build (first call, cached on disk) or load the compiled extension; raise if impossible."""
    if _state["ops"] is None:
        from torch.utils import cpp_extension

        # OpenMP: the same runtime as torch's (libgomp is found by its soname, already loaded)
        _omp = ["-fopenmp"] if sys.platform.startswith("linux") else []
        build_dir = os.environ.get("LSTMLAB_BUILD_DIR")
        if build_dir:
            os.makedirs(build_dir, exist_ok=True)
        cpp_extension.load(
            name="lstmlab_fused_ext",
            sources=[str(_CSRC / s) for s in _SOURCES],
            extra_cflags=["-O3", "-std=c++17", *_cpu_flags(), *_omp],
            extra_ldflags=_omp,
            extra_include_paths=[str(_CSRC)],
            build_directory=build_dir,
            is_python_module=False,
            verbose=bool(os.environ.get("LSTMLAB_BUILD_VERBOSE")),
        )
        _state["ops"] = torch.ops.lstmlab_fused
    return _state["ops"]


def configure(par_threshold: int = -1, blas: int = -1, packed: int = -1) -> dict:
    """Tune / inspect the CPU route (negative = leave as is): rows run in parallel from
    ``par_threshold`` elements per step; ``blas`` 1 calls BLAS directly, 0 goes through
    ``at::mm``; ``packed`` 1 packs a large W_hh once per call for MKL's packed GEMM (float32),
    2 packs always, 0 never.
    Returns the settings."""
    lanes, mode, thr, pack = load().configure(par_threshold, blas, packed)
    return {"simd_lanes": lanes, "direct_blas": bool(mode), "par_threshold": thr, "packed_gemm": pack}


def _supported(x: torch.Tensor) -> bool:
    return x.dtype in (torch.float32, torch.float64)


def _none(t: torch.Tensor) -> torch.Tensor | None:
    return t if t.numel() else None


def _set_saturation(taps: StepTaps, cell: str, sat: torch.Tensor, units: int) -> None:
    taps.units = units
    taps.saturated = {name: sat[k] for k, name in enumerate(GATES[cell])}


def _set_grads(taps: StepTaps, gh: torch.Tensor, gc: torch.Tensor | None) -> None:
    taps.grad_h_sq = gh
    taps.grad_c_sq = gc
    taps.filled_backward = True


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps):
        gen = FORCE_GENERIC
        out, h_n, c_n, A, C, S, sat = load().lstm_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask,
                                                      True, taps is not None, gen)
        if taps is not None:
            _set_saturation(taps, "lstm", sat, h0.shape[-1])
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, rmask, A, C, S if S.numel() else out)
        ctx.lengths, ctx.taps, ctx.generic = lengths, taps, gen
        return out, h_n, c_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, ghn, gcn):
        x, h0, c0, w_ih, w_hh, rmask, A, C, S = ctx.saved_tensors
        taps = ctx.taps
        dx, dh0, dc0, dw_ih, dw_hh, db, gh, gc = load().lstm_bwd(
            gout, ghn, gcn, x, h0, c0, w_ih, w_hh, ctx.lengths, rmask, A, C, S, ctx.needs_input_grad[0],
            taps is not None, ctx.generic)
        if taps is not None:
            _set_grads(taps, gh, gc)
        return _none(dx), dh0, dc0, dw_ih, dw_hh, db, db.clone(), None, None, None


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps):
        gen = FORCE_GENERIC
        out, h_n, A, S, sat = load().gru_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, True,
                                             taps is not None, gen)
        if taps is not None:
            _set_saturation(taps, "gru", sat, h0.shape[-1])
        ctx.save_for_backward(x, h0, w_ih, w_hh, rmask, A, S if S.numel() else out)
        ctx.lengths, ctx.taps, ctx.generic = lengths, taps, gen
        return out, h_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, ghn):
        x, h0, w_ih, w_hh, rmask, A, S = ctx.saved_tensors
        taps = ctx.taps
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh, gh = load().gru_bwd(
            gout, ghn, x, h0, w_ih, w_hh, ctx.lengths, rmask, A, S, ctx.needs_input_grad[0],
            taps is not None, ctx.generic)
        if taps is not None:
            _set_grads(taps, gh, None)
        return _none(dx), dh0, dw_ih, dw_hh, db_ih, db_hh, None, None, None


class _RNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, taps):
        gen = FORCE_GENERIC
        out, h_n, S, sat = load().rnn_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, True,
                                          taps is not None, gen)
        if taps is not None:
            _set_saturation(taps, "rnn", sat, h0.shape[-1])
        ctx.save_for_backward(x, h0, w_ih, w_hh, rmask, out, S if S.numel() else out)
        ctx.lengths, ctx.taps, ctx.generic, ctx.relu = lengths, taps, gen, relu
        return out, h_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, ghn):
        x, h0, w_ih, w_hh, rmask, out, S = ctx.saved_tensors
        taps = ctx.taps
        dx, dh0, dw_ih, dw_hh, db, gh = load().rnn_bwd(
            gout, ghn, x, h0, w_ih, w_hh, ctx.lengths, rmask, out, S, ctx.relu, ctx.needs_input_grad[0],
            taps is not None, ctx.generic)
        if taps is not None:
            _set_grads(taps, gh, None)
        return _none(dx), dh0, dw_ih, dw_hh, db, db.clone(), None, None, None, None


def _prep(x, lengths, rmask, *states):
    x = x.contiguous()
    if lengths is not None:
        lengths = lengths.to("cpu", torch.int64)
        if bool((lengths == x.shape[1]).all()):
            lengths = None
    states = tuple(s.to(x.dtype) for s in states)
    if rmask is not None:
        rmask = rmask.to(x.dtype).contiguous()
    return x, lengths, rmask, states


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """LSTM over a (B, T, I) batch (gate order i, f, g, o); see :mod:`lstmlab.engine`."""
    if not _supported(x):
        return loop.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    x, lengths, rmask, (h0, c0) = _prep(x, lengths, rmask, h0, c0)
    if _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return _LSTM.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    out, h_n, c_n, _, _, _, sat = load().lstm_fwd(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, False,
                                                  taps is not None, FORCE_GENERIC)
    if taps is not None:
        _set_saturation(taps, "lstm", sat, h0.shape[-1])
    return out, h_n, c_n


def gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """GRU over a (B, T, I) batch, torch.nn.GRU equations (gate order r, z, n)."""
    if not _supported(x):
        return loop.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    x, lengths, rmask, (h0,) = _prep(x, lengths, rmask, h0)
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        return _GRU.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    out, h_n, _, _, sat = load().gru_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, False,
                                         taps is not None, FORCE_GENERIC)
    if taps is not None:
        _set_saturation(taps, "gru", sat, h0.shape[-1])
    return out, h_n


def rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None):
    """Elman RNN over a (B, T, I) batch, ``activation`` "tanh" or "relu"."""
    if activation not in ("tanh", "relu") or not _supported(x):
        return loop.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation, taps)
    relu = activation == "relu"
    x, lengths, rmask, (h0,) = _prep(x, lengths, rmask, h0)
    if _needs_grad(x, h0, w_ih, w_hh, b_ih, b_hh):
        return _RNN.apply(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, taps)
    out, h_n, _, sat = load().rnn_fwd(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, False,
                                      taps is not None, FORCE_GENERIC)
    if taps is not None:
        _set_saturation(taps, "rnn", sat, h0.shape[-1])
    return out, h_n
