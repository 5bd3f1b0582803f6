"""Layer-normalised LSTM engine (CPU): the loop engine's equations with a compiled time loop.

``LN_ih(x W_ih^T + b_ih)`` does not depend on the recurrence: torch computes it (and its
gradient) for all steps at once, as one op.  The rest -- per step the recurrent GEMM,
``LN_hh``, the gates, ``LN_c`` and the new states -- runs in C++ (``csrc/lnlstm.cpp``) without
an autograd graph; its backward is hand-derived BPTT, with ``dW_hh`` and the normalisation
parameters' gradients as big products after the loop.  Taps: the squared gradient norms come
out of the backward loop, the saturation counts from the saved gate activations.

Semantics are those of :func:`lstmlab.engine.loop.lstm` with ``layer_norm=(ln_ih, ln_hh, ln_c)``
(``torch.nn.LayerNorm`` modules with affine parameters).  Anything else -- another dtype or
device, LayerNorm modules without parameters, torch.compile tracing -- runs on the loop engine.
The extension is compiled on first use, next to the fused engine's (``$LSTMLAB_BUILD_DIR``).
"""

from __future__ import annotations

import os

import torch

from .. import cells
from . import fused, loop
from .taps import StepTaps, saturation_counts

_state: dict = {"ops": None}


def load():
    """Build (first call, cached on disk) or load the extension; raise if impossible."""
    if _state["ops"] is None:
        from torch.utils import cpp_extension

        build_dir = os.environ.get("LSTMLAB_BUILD_DIR")
        if build_dir:
            build_dir = os.path.join(build_dir, "lnlstm")
            os.makedirs(build_dir, exist_ok=True)
        cpp_extension.load(
            name="lstmlab_lnlstm_ext",
            sources=[str(fused._CSRC / "lnlstm.cpp")],
            extra_cflags=["-O3", "-std=c++17", *fused._cpu_flags()],
            extra_include_paths=[str(fused._CSRC)],
            build_directory=build_dir,
            is_python_module=False,
            verbose=bool(os.environ.get("LSTMLAB_BUILD_VERBOSE")),
        )
        _state["ops"] = torch.ops.lstmlab_ln
    return _state["ops"]


def available() -> bool:
    """Whether the extension builds / loads here (False, never raising, when it cannot)."""
    if "ok" not in _state:  # one try per process
        try:
            load()
            _state["ok"] = True
        except Exception:  # noqa: BLE001 - any build failure means: use the loop engine
            _state["ok"] = False
    return _state["ok"]


def _params(layer_norm) -> tuple | None:
    """(w_hh-side weight, bias, eps, cell-side weight, bias, eps) of the LN modules, or None if unsupported."""
    mods = tuple(layer_norm)
    if not all(isinstance(m, torch.nn.LayerNorm) and m.weight is not None and m.bias is not None for m in mods):
        return None
    _, ln_hh, ln_c = mods
    return ln_hh.weight, ln_hh.bias, float(ln_hh.eps), ln_c.weight, ln_c.bias, float(ln_c.eps)


def _saturation(taps: StepTaps, A: torch.Tensor, lengths: torch.Tensor | None, units: int) -> None:
    """Saturated units per gate, (T, B), from the saved activations A (B, T, 4H)."""
    acts = A.detach().view(A.shape[0], A.shape[1], 4, units).permute(2, 1, 0, 3)
    mask = None if lengths is None else loop.step_mask(lengths, A.shape[0], A.shape[1], A)[..., 0]
    taps.units = units
    taps.saturated = saturation_counts(cells.LSTM, dict(zip(cells.LSTM.gates, acts, strict=True)), mask)


class _Recurrence(torch.autograd.Function):
    """The time loop after LN_ih: (xn, h0, c0, W_hh, b_hh, LN_hh and LN_c parameters) -> (out, h_n, c_n)."""

    @staticmethod
    def forward(ctx, xn, h0, c0, w_hh, b_hh, g_hh, be_hh, g_c, be_c, eps_hh, eps_c, lengths, rmask, taps):
        out, h_n, c_n, A, RN, rr, C, CN, rc, S = load().forward(xn, h0, c0, w_hh, b_hh, g_hh, be_hh, g_c, be_c,
                                                                eps_hh, eps_c, lengths, rmask)
        if taps is not None:
            _saturation(taps, A, lengths, h0.shape[-1])
        ctx.save_for_backward(h0, c0, w_hh, g_hh, g_c, be_c, lengths, rmask, A, RN, rr, C, CN, rc, S)
        ctx.taps = taps
        return out, h_n, c_n

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gout, ghn, gcn):
        h0, c0, w_hh, g_hh, g_c, be_c, lengths, rmask, A, RN, rr, C, CN, rc, S = ctx.saved_tensors
        taps = ctx.taps
        dxn, dh0, dc0, dw_hh, db_hh, dg_hh, dbe_hh, dg_c, dbe_c, gh, gc = load().backward(
            gout, ghn, gcn, h0, c0, w_hh, g_hh, g_c, be_c, lengths, rmask, A, RN, rr, C, CN, rc, S, taps is not None)
        if taps is not None:
            taps.grad_h_sq, taps.grad_c_sq, taps.filled_backward = gh, gc, True
        return (dxn, dh0, dc0, dw_hh, db_hh, dg_hh, dbe_hh, dg_c, dbe_c, None, None, None, None, None)


def _supported(x: torch.Tensor, params: tuple | None) -> bool:
    return (params is not None and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and all(p.dtype == x.dtype for p in params if isinstance(p, torch.Tensor))
            and not torch.compiler.is_compiling() and not torch._C._are_functorch_transforms_active())


def lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None, layer_norm: tuple | None = None):
    """Layer-normalised LSTM over a (B, T, I) batch; see :func:`lstmlab.engine.loop.lstm`."""
    params = None if layer_norm is None else _params(layer_norm)
    if not _supported(x, params):
        return loop.lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, rmask, taps, layer_norm=layer_norm)
    if lengths is not None:
        lengths = lengths.to("cpu", torch.int64)
        if bool((lengths == x.shape[1]).all()):
            lengths = None
    g_hh, be_hh, eps_hh, g_c, be_c, eps_c = params
    xn = layer_norm[0](torch.nn.functional.linear(x, w_ih, b_ih))  # (B, T, 4H): one op for all steps
    h0, c0 = h0.to(x.dtype), c0.to(x.dtype)
    rmask = None if rmask is None else rmask.to(x.dtype).contiguous()
    return _Recurrence.apply(xn.contiguous(), h0, c0, w_hh, b_hh, g_hh, be_hh, g_c, be_c, eps_hh, eps_c, lengths,
                             rmask, taps)
