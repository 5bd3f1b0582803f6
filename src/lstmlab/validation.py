"""Input checks that fail early with a message naming the argument, expected and received value."""

from __future__ import annotations

import numpy as np
import torch


class InputError(ValueError):
    """Bad user input; the message names the argument, what was expected and what was received."""


def tracing(*tensors: torch.Tensor) -> bool:
    """Whether torch.compile / torch.export is tracing this call, a torch.func transform (vmap,
    grad, ...) runs it, or any of ``tensors`` is a ``meta`` tensor (shapes only, no values).

    Checks that read tensor *values* (NaN scan, length ranges, token-id ranges) cannot run on the
    fake tensors of a trace, on vmap's batched tensors nor on meta tensors; they are skipped there
    and only there -- plain eager calls always run them.  Shape, rank and dtype checks run in all."""
    if any(t.device.type == "meta" for t in tensors):
        return True
    return torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active()


def describe(x) -> str:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return f"{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:200]


def as_tensor(name: str, x, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert array-likes to a tensor; refuse strings, objects and ragged lists clearly."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except ValueError as exc:
            raise InputError(f"{name}: expected a rectangular numeric array, got a ragged sequence "
                             f"({exc}); pad it and pass lengths") from None
        if arr.dtype == object or arr.dtype.kind in "USV":
            raise InputError(f"{name}: expected numeric data, got an array of dtype {arr.dtype}")
        if arr.dtype == np.float64 and dtype is None:
            arr = arr.astype(np.float32)
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # pandas and np.broadcast_to hand out read-only views: torch warns
            arr = arr.copy()
        t = torch.from_numpy(arr)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t


def check_features(name: str, x: torch.Tensor, *, ndim: tuple[int, ...], float_only: bool = True,
                   last: int | None = None, finite: bool = True) -> torch.Tensor:
    """Check rank, dtype, size of the last axis, emptiness and finiteness of an input tensor."""
    if x.dim() not in ndim:
        want = " or ".join(f"{n}-D" for n in ndim)
        hint = " (batch, time, features)" if 3 in ndim else ""
        raise InputError(f"{name}: expected a {want} tensor{hint}, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise InputError(f"{name}: expected a non-empty array, got shape {tuple(x.shape)}")
    if float_only and not x.is_floating_point():
        raise InputError(f"{name}: expected floating-point data (float32/float64), got dtype {x.dtype}; "
                         "integer token ids need an Embedding layer first")
    if last is not None and x.shape[-1] != last:
        raise InputError(f"{name}: expected {last} features in the last axis (the layer was built "
                         f"for {last}), got shape {tuple(x.shape)}")
    if finite and x.is_floating_point() and not tracing(x) and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise InputError(f"{name}: expected finite values, got NaN/Inf at index {tuple(bad)}")
    return x


def check_lengths(name: str, lengths, batch: int, steps: int) -> torch.Tensor:
    """Lengths as an int64 CPU tensor with 1 <= lengths[b] <= steps."""
    t = as_tensor(name, lengths)
    if t.is_floating_point():
        if not tracing() and not torch.equal(t, t.round()):
            raise InputError(f"{name}: expected integer lengths, got non-integer values")
        t = t.long()
    t = t.to("cpu", torch.int64).reshape(-1)
    if t.numel() != batch:
        raise InputError(f"{name}: expected {batch} lengths (one per sequence), got {t.numel()}")
    if tracing():
        return t
    lo, hi = int(t.min()), int(t.max())
    if lo < 1 or hi > steps:
        raise InputError(f"{name}: expected every length in [1, {steps}], got min {lo}, max {hi}")
    return t


def lengths_from_mask(name: str, mask: torch.Tensor) -> torch.Tensor:
    """Right-padded boolean mask (B, T) -> lengths; refuse masks with holes."""
    m = mask.to(torch.bool)
    if m.dim() != 2:
        raise InputError(f"{name}: expected a 2-D (batch, time) mask, got shape {tuple(mask.shape)}")
    lengths = m.sum(1)
    if tracing():
        return lengths.to(torch.int64)
    steps = m.shape[1]
    prefix = torch.arange(steps, device=m.device).unsqueeze(0) < lengths.unsqueeze(1)
    if not torch.equal(prefix, m):
        raise InputError(f"{name}: expected right-padded sequences (True then False along time), "
                         "got a mask with gaps; move padding to the end")
    if int(lengths.min()) < 1:
        row = int((lengths < 1).nonzero()[0])
        raise InputError(f"{name}: expected at least one valid step per sequence, got none in row {row}")
    return lengths.to("cpu", torch.int64)
