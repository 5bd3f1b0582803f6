"""What one call of the GPU engine is: shapes, dtypes, tiles, kernel switches; and the kernels to run.

CUDA tensors run the compiled kernels of :mod:`.kernels`; CPU tensors run the same source in
Triton's interpreter (a second import of that file, see :func:`kernels`).  Under ``torch.autocast``
the GEMMs and the saved gates / hidden states use the autocast dtype; the LSTM cell state, the
gradient carries and the taps' sums stay float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
import triton.language as tl

from ... import cells

_KERNELS: dict[str, object] = {}


def kernels(device: torch.device):
    """The kernel module for ``device``: compiled for CUDA, the Triton interpreter otherwise.

    The interpreted copy is a second import of ``kernels.py`` made while ``TRITON_INTERPRET=1``
    is set (Triton reads it when a kernel is decorated); the variable is restored right after,
    so nothing else in the process sees it.
    """
    key = "cuda" if device.type == "cuda" else "interpreted"
    if key not in _KERNELS:
        if key == "cuda":
            from . import kernels as mod
        else:
            spec = importlib.util.spec_from_file_location(
                "lstmlab.engine.gpu._kernels_interpreted", Path(__file__).with_name("kernels.py"))
            mod = importlib.util.module_from_spec(spec)
            old = os.environ.get("TRITON_INTERPRET")
            os.environ["TRITON_INTERPRET"] = "1"
            try:
                spec.loader.exec_module(mod)
            finally:
                if old is None:
                    os.environ.pop("TRITON_INTERPRET", None)
                else:
                    os.environ["TRITON_INTERPRET"] = old
        _KERNELS[key] = mod
    return _KERNELS[key]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype in force for ``device``'s type, or None when autocast is off there."""
    try:
        on = torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        on = torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()
    if not on:
        return None
    try:
        return torch.get_autocast_dtype(device.type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_gpu_dtype() if device.type == "cuda" else torch.get_autocast_cpu_dtype()


@dataclass
class Plan:
    """Shapes, dtypes, tiles and kernel switches of one call."""

    cell: cells.Cell  # the call's row of the cell table
    batch: int
    steps: int
    hidden: int
    io: torch.dtype  # GEMMs, gates, hidden states
    acc: torch.dtype  # cell state, carries, taps sums
    lens: torch.Tensor | None  # (B,) int32 on the device, None when every sequence is full
    rmask: torch.Tensor | None  # (B, H) in io dtype
    relu: bool
    taps: bool
    block_b: int
    block_h: int

    @property
    def grid(self) -> tuple[int, int]:
        return triton.cdiv(self.batch, self.block_b), triton.cdiv(self.hidden, self.block_h)

    @property
    def n_gates(self) -> int:
        return self.cell.n_gates

    def flags(self) -> dict:
        acc = tl.float64 if self.acc == torch.float64 else tl.float32
        return dict(HAS_LEN=self.lens is not None, HAS_RMASK=self.rmask is not None, TAPS=self.taps, ACC=acc,
                    BLOCK_B=self.block_b, BLOCK_H=self.block_h)


def make_plan(cell: cells.Cell, x: torch.Tensor, hidden: int, lengths: torch.Tensor | None, rmask: torch.Tensor | None,
              relu: bool, taps: bool) -> Plan:
    batch, steps, _ = x.shape
    io = autocast_dtype(x.device) or x.dtype
    acc = torch.float64 if x.dtype == torch.float64 and io == torch.float64 else torch.float32
    lens = None
    if lengths is not None and not bool((lengths == steps).all()):
        lens = lengths.to(device=x.device, dtype=torch.int32)
    block_h = min(triton.next_power_of_2(hidden), 128)
    block_b = min(triton.next_power_of_2(batch), max(1, 1024 // block_h))
    rm = None if rmask is None else rmask.to(io).contiguous()
    return Plan(cell, batch, steps, hidden, io, acc, lens, rm, relu, taps, block_b, block_h)
