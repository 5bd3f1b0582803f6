"""Fused engine: compiled time loops with a hand-derived backward pass (BPTT).

Forward: the input projection of all steps is ONE matrix product; the recurrence runs in C++
(``csrc/``: the cells' steps in ``cells.h``, one time loop per direction in ``loop_cpu.h``):
per step one GEMM ``h_{t-1} @ W_hh^T`` straight into BLAS and a fused elementwise gate loop
(AVX2 where the machine has it) that also counts saturated units for the taps, with the
thresholds of the cell table (:func:`lstmlab.cells.saturation_thresholds`).  Backward: per step
the gate gradients and one GEMM ``dG_t @ W_hh``; the weight gradients of all steps are a few big
matrix products after the loop; the taps' squared gradient norms come out of the same
elementwise loop.  CUDA tensors take a device-generic route through the same cells
(``loop_generic.h``: per-step ``at::`` ops dispatched to CUDA).

Two operators serve every cell: ``torch.ops.lstmlab_fused.forward`` and ``.backward``; their
fake (meta) implementations below give ``torch.compile`` the shapes of their outputs.

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

from .. import cells
from . import loop
from .taps import StepTaps

_CSRC = Path(__file__).with_name("csrc")
_SOURCES = ("ops.cpp",)
_state: dict = {"ops": None}
# Forces the device-generic (per-step at:: ops) route on the CPU too; used by tests.
FORCE_GENERIC = False
# (sigmoid_low, sigmoid_high, tanh_limit), the order the C++ kernels take them in
_THRESHOLDS = list(cells.saturation_thresholds())
# Blocks of H activations the forward keeps per step for the backward (an RNN reads its output).
_KEPT_ACTS = {"lstm": 4, "gru": 4, "rnn": 0}


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
        _register_fakes()
        _state["ops"] = torch.ops.lstmlab_fused
    return _state["ops"]


def configure(par_threshold: int = -1, blas: int = -1, packed: int = -1, barrier: int = -1,
              small: int = -1) -> dict:
    """Tune / inspect the CPU route (negative = leave as is): rows run in parallel from
    ``par_threshold`` elements per step; ``blas`` 1 calls BLAS directly, 0 goes through
    ``at::mm``; ``packed`` 1 packs a large W_hh once per call for MKL's packed GEMM (float32),
    2 packs always, 0 never; ``barrier`` 1 (default) lets the per-step barrier's waiters sleep on a
    futex after a short spin, 0 spins longer and then yields (the old barrier, kept for A/B timing);
    ``small`` 1 (default) runs every per-step float GEMM in the own SIMD micro-kernel when the CPU
    has AVX2 / AVX-512 (BLAS otherwise), a fixed rule so that every process computes the same floats
    (bit-exact resume in a new process); 3 does so only when it timed faster than BLAS for that shape
    (once per process: results may then differ between processes), 2 always, 0 never.
    Returns the settings."""
    lanes, mode, thr, pack, bar, small_ = load().configure(par_threshold, blas, packed, barrier, small)
    return {"simd_lanes": lanes, "direct_blas": bool(mode), "par_threshold": thr, "packed_gemm": pack,
            "futex_barrier": bool(bar), "small_gemm": small_}


def _fake_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, thresholds, save, taps,
                  generic):
    """Outputs of ``forward`` as the C++ makes them: [out, h_n, c_n, A, C, S, saturation counts]."""
    spec, kept = cells.get(cell), _KEPT_ACTS[cell]
    B, T, H = x.shape[0], x.shape[1], w_hh.shape[1]
    lstm = spec.has_cell_state
    return [x.new_empty(B, T, H), x.new_empty(B, H), x.new_empty(B, H) if lstm else x.new_empty(0),
            x.new_empty(B, T, kept * H) if save and kept else x.new_empty(0),
            x.new_empty(B, T, H) if save and lstm else x.new_empty(0),
            x.new_empty(B, T, H) if save and lengths is not None else x.new_empty(0),
            x.new_empty(spec.n_gates, T, B, dtype=torch.float32) if taps else x.new_empty(0)]


def _fake_backward(cell, gout, ghn, gcn, x, h0, c0, w_ih, w_hh, lengths, rmask, relu, A, C, S, need_dx, taps,
                   generic):
    """Outputs of ``backward``: [dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gh_sq, gc_sq]."""
    lstm = cells.get(cell).has_cell_state
    B, T, G, H = x.shape[0], x.shape[1], w_hh.shape[0], w_hh.shape[1]
    return [x.new_empty(x.shape) if need_dx else x.new_empty(0), x.new_empty(B, H),
            x.new_empty(B, H) if lstm else x.new_empty(0), x.new_empty(w_ih.shape), x.new_empty(w_hh.shape),
            x.new_empty(G), x.new_empty(G), x.new_empty(T, B) if taps else x.new_empty(0),
            x.new_empty(T, B) if taps and lstm else x.new_empty(0)]


def _register_fakes() -> None:
    """Shapes of the operators' outputs without running them (FakeTensor / torch.compile)."""
    torch.library.register_fake("lstmlab_fused::forward", _fake_forward)
    torch.library.register_fake("lstmlab_fused::backward", _fake_backward)


def _supported(x: torch.Tensor) -> bool:
    return x.dtype in (torch.float32, torch.float64)


def _none(t: torch.Tensor) -> torch.Tensor | None:
    return t if t.numel() else None


def _set_saturation(taps: StepTaps, cell: str, sat: torch.Tensor, units: int) -> None:
    taps.units = units
    taps.saturated = {name: sat[k] for k, name in enumerate(cells.get(cell).gates)}


def _set_grads(taps: StepTaps, gh: torch.Tensor, gc: torch.Tensor | None) -> None:
    taps.grad_h_sq = gh
    taps.grad_c_sq = gc
    taps.filled_backward = True


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _Layer(torch.autograd.Function):
    """One direction of one layer of any cell (``c0`` None unless LSTM): C++ forward and BPTT."""

    @staticmethod
    def forward(ctx, cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, taps):
        gen = FORCE_GENERIC
        out, h_n, c_n, A, C, S, sat = load().forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu,
                                                     _THRESHOLDS, True, taps is not None, gen)
        if taps is not None:
            _set_saturation(taps, cell, sat, h0.shape[-1])
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, lengths, rmask, A if A.numel() else out, C,
                              S if S.numel() else out)
        ctx.cell, ctx.relu, ctx.taps, ctx.generic = cell, relu, taps, gen
        return out, h_n, c_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, ghn, gcn):
        x, h0, c0, w_ih, w_hh, lengths, rmask, A, C, S = ctx.saved_tensors
        taps = ctx.taps
        dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, gh, gc = load().backward(
            ctx.cell, gout, ghn, gcn if c0 is not None else None, x, h0, c0, w_ih, w_hh, lengths, rmask, ctx.relu,
            A, C, S, ctx.needs_input_grad[1], taps is not None, ctx.generic)
        if taps is not None:
            _set_grads(taps, gh, _none(gc))
        return None, _none(dx), dh0, _none(dc0), dw_ih, dw_hh, db_ih, db_hh, None, None, None, None


def _prep(x, lengths, rmask, h0, c0):
    x = x.contiguous()
    if lengths is not None:
        lengths = lengths.to("cpu", torch.int64)
        # no padded step: the faster kernels (a value test, skipped while torch.compile traces)
        if not torch.compiler.is_compiling() and bool((lengths == x.shape[1]).all()):
            lengths = None
    h0 = h0.to(x.dtype)
    c0 = None if c0 is None else c0.to(x.dtype)
    if rmask is not None:
        rmask = rmask.to(x.dtype).contiguous()
    return x, lengths, rmask, h0, c0


def _run(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, taps):
    """(out, h_n, c_n) of one layer direction; c_n is empty unless LSTM."""
    x, lengths, rmask, h0, c0 = _prep(x, lengths, rmask, h0, c0)
    if _needs_grad(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return _Layer.apply(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu, taps)
    out, h_n, c_n, _, _, _, sat = load().forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, relu,
                                                 _THRESHOLDS, False, taps is not None, FORCE_GENERIC)
    if taps is not None:
        _set_saturation(taps, cell, sat, h0.shape[-1])
    return out, h_n, c_n


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """LSTM over a (B, T, I) batch (gate order i, f, g, o); see :mod:`lstmlab.engine`."""
    if not _supported(x):
        return loop.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    return _run("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, False, taps)


def gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None):
    """GRU over a (B, T, I) batch, torch.nn.GRU equations (gate order r, z, n)."""
    if not _supported(x):
        return loop.gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps)
    out, h_n, _ = _run("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, rmask, False, taps)
    return out, h_n


def rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None):
    """Elman RNN over a (B, T, I) batch, ``activation`` "tanh" or "relu"."""
    if activation not in ("tanh", "relu") or not _supported(x):
        return loop.rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation, taps)
    out, h_n, _ = _run("rnn", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, rmask, activation == "relu", taps)
    return out, h_n
