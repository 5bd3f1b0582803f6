"""Engines run one recurrent layer direction over a batch; layers never touch kernels directly.

Engine modules (``reference``, ``loop``, ``fused``, ``native``, ``gpu``; ``lnlstm`` for
layer-normalised LSTMs) expose the same functions::

    lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None) -> (out, h_n, c_n)
    gru(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, taps=None)      -> (out, h_n)
    rnn(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, rmask=None, activation="tanh", taps=None)
                                                                                 -> (out, h_n)

* ``x`` is (B, T, I), batch-first; ``h0``/``c0`` are (B, H); weights use torch.nn.LSTM's
  layout (``w_ih`` (G*H, I), ``w_hh`` (G*H, H), gate order LSTM i,f,g,o; GRU r,z,n);
  biases are always tensors (zeros when the layer has ``use_bias=False``).
* ``lengths`` (B,) int64 on the CPU, ``1 <= lengths[b] <= T``: sequences are right-padded.
  A padded step carries the state unchanged (``h_t = h_{t-1}``), its output row is 0, and
  ``h_n``/``c_n`` are the states after each sequence's last valid step.
* ``rmask`` (B, H): recurrent-dropout mask (already scaled), multiplied onto ``h_{t-1}``
  before the recurrent matrix product, the same mask at every step (Gal & Ghahramani).
* ``taps``: a :class:`~lstmlab.engine.taps.StepTaps` to fill (see that module).

All functions are differentiable w.r.t. ``x``, states, weights and biases.  Direction
(reversal of each sequence within its length) is handled here, once, for every engine.
"""

from __future__ import annotations

import warnings

import torch

from .. import cells
from . import autotune, fused, gpu, lnlstm, loop, native, reference
from .taps import GATES, StepTaps

ENGINES = ("auto", "fused", "native", "gpu", "loop", "reference")

_fused_state: dict = {}


def fused_module():
    """The fused engine module, or None (with one warning) when it cannot be built here."""
    if "mod" not in _fused_state:
        try:
            fused.load()
            _fused_state["mod"] = fused
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the fallback
            _fused_state["mod"] = None
            warnings.warn(
                f"lstmlab: the fused engine could not be built ({type(exc).__name__}: {exc}); "
                "falling back to the slower 'loop' engine. Install a C++ compiler to get it.",
                RuntimeWarning, stacklevel=3)
    return _fused_state["mod"]


def resolve(engine: str, *, cell: str | cells.Cell, taps: bool, rmask: bool, layer_norm: bool,
            activation: str, device: torch.device, shape: tuple | None = None,
            dtype: torch.dtype = torch.float32):
    """Pick the engine module for one call; raise ValueError when the request is impossible.
    ``shape`` (B, T, I, H) lets ``auto`` time the candidates on the CPU (:mod:`.autotune`)."""
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {engine!r}")
    if layer_norm:
        return _layer_norm(engine, cells.get(cell), device)
    if engine == "reference":
        return reference
    if engine == "loop":
        return loop
    if engine == "native":
        if taps:
            raise ValueError("engine='native' cannot record per-step gradient taps; use 'fused' or 'auto'")
        if rmask:
            raise ValueError("engine='native' does not support recurrent_dropout; use 'fused' or 'auto'")
        return native
    if engine == "gpu":
        if not gpu.available():
            raise ValueError("engine='gpu' needs the triton package (it ships with CUDA builds of torch), "
                             "which cannot be imported here; use 'auto'")
        return gpu
    if engine == "auto":
        return _auto(cell, taps or rmask, activation, device, shape, dtype)
    fused = fused_module()
    return fused if fused is not None else loop


def _layer_norm(engine: str, spec: cells.Cell, device: torch.device):
    """A layer-normalised cell: ``auto`` and ``fused`` take the compiled LN-LSTM (:mod:`.lnlstm`) on
    the CPU when it builds, the loop engine otherwise (and on GPUs); no other engine implements it."""
    if engine not in ("auto", "fused", "loop"):
        raise ValueError(f"engine={engine!r} does not support layer_norm=True; use 'auto', 'fused' or 'loop'")
    if engine != "loop" and spec.name == "lstm" and device.type == "cpu" and lnlstm.available():
        return lnlstm
    return loop


def _auto(cell: str | cells.Cell, needs_taps: bool, activation: str, device: torch.device,
          shape: tuple | None = None, dtype: torch.dtype = torch.float32):
    """The engine ``"auto"`` picks.  ``needs_taps``: per-step taps or recurrent dropout, which torch's
    kernels cannot do.  CPU without taps: the faster of fused and native as measured on this machine
    (:mod:`.autotune`); with ``LSTMLAB_AUTOTUNE=0`` or no shape, the fixed rule (training fused,
    inference native).  Speeds: benchmarks/RESULTS.md ("Speed", "GPU")."""
    if not needs_taps and native.supports(cell, activation, device):
        if device.type != "cpu":
            return native  # cuDNN
        fused = fused_module()
        if fused is None:
            return native
        if shape is not None and autotune.enabled() and dtype in (torch.float32, torch.float64) \
                and not torch.compiler.is_compiling():
            return _timed(cells.get(cell), activation, shape, dtype, fused)
        return fused if torch.is_grad_enabled() else native
    if needs_taps and device.type == "cuda" and gpu.available():
        return gpu  # the Triton step kernels: taps inside one fused kernel per step
    fused = fused_module()
    return fused if fused is not None else loop


def _timed(spec: cells.Cell, activation: str, shape: tuple, dtype: torch.dtype, fused):
    """fused or native for this shape, from the autotune cache or a short timing now."""
    train = torch.is_grad_enabled()
    key = autotune.entry_key(spec.name, dtype, shape, torch.get_num_threads(), False, train)
    mods = {autotune.FUSED: fused, autotune.NATIVE: native}
    choice = autotune.choose(key, lambda: _candidates(spec, activation, shape, dtype, train, mods))
    return mods[choice]


def _candidates(spec: cells.Cell, activation: str, shape: tuple, dtype: torch.dtype, train: bool,
                mods: dict) -> dict:
    """name -> one forward (+ backward when ``train``) of that engine on random tensors of ``shape``
    (a private generator: the global random state is left alone)."""
    batch, steps, inp, hid = shape
    steps = min(steps, autotune.MAX_STEPS)
    g = torch.Generator().manual_seed(0)
    gw = len(spec.gates) * hid

    def rnd(*size):
        return (torch.rand(*size, generator=g, dtype=dtype) - 0.5).requires_grad_(train)

    x, weights = rnd(batch, steps, inp), (rnd(gw, inp), rnd(gw, hid), rnd(gw), rnd(gw))
    states = tuple(torch.zeros(batch, hid, dtype=dtype) for _ in spec.states)

    def runner(mod):
        def once() -> None:
            with torch.set_grad_enabled(train):
                out, _ = call(mod, spec, x, states, weights, activation=activation)
                if train:
                    torch.autograd.grad(out.sum(), (x, *weights))
        return once

    return {name: runner(mod) for name, mod in mods.items()}


def reverse_index(lengths: torch.Tensor | None, batch: int, steps: int, device) -> torch.Tensor:
    """(B, T) index that reverses each sequence within its length and leaves padding in place."""
    t = torch.arange(steps, device=device).expand(batch, steps)
    if lengths is None:
        return t.flip(1)
    ln = lengths.to(device).unsqueeze(1)
    return torch.where(t < ln, ln - 1 - t, t)


def _gather_time(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def call(mod, cell: str | cells.Cell, x: torch.Tensor, states: tuple, weights: tuple, lengths=None, rmask=None,
         activation: str = "tanh", taps: StepTaps | None = None, **kw) -> tuple:
    """Call engine module ``mod``'s function for ``cell`` (named after it: ``mod.lstm``, ``mod.gru``,
    ``mod.rnn``) with that cell's states, and ``activation`` where the cell's equations read it.
    Returns ``(out, final_states)``."""
    spec = cells.get(cell)
    extra = (activation,) if spec.uses_activation else ()
    out, *final = getattr(mod, spec.name)(x, *states, *weights, lengths, rmask, *extra, taps, **kw)
    return out, tuple(final)


def run(cell: str | cells.Cell, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, weights: tuple,
        *, lengths: torch.Tensor | None = None, reverse: bool = False,
        rmask: torch.Tensor | None = None, activation: str = "tanh", engine: str = "auto",
        taps: StepTaps | None = None, layer_norm: tuple | None = None):
    """Run one direction of one layer.  Returns ``(out, h_n, c_n)`` (``c_n`` None unless the cell has one)."""
    spec = cells.get(cell)
    mod = resolve(engine, cell=spec, taps=taps is not None, rmask=rmask is not None,
                  layer_norm=layer_norm is not None, activation=activation, device=x.device,
                  shape=(x.shape[0], x.shape[1], x.shape[2], h0.shape[-1]), dtype=x.dtype)
    if reverse:
        idx = reverse_index(lengths, x.shape[0], x.shape[1], x.device)
        x = _gather_time(x, idx)
    inner = StepTaps() if (taps is not None and reverse) else taps
    states = (h0, c0)[:len(spec.states)]
    kw = {"layer_norm": layer_norm} if layer_norm is not None else {}
    out, final = call(mod, spec, x, states, weights, lengths, rmask, activation, inner, **kw)
    if reverse:
        out = _gather_time(out, idx)
        if taps is not None:
            _unreverse_taps(inner, taps, idx)
    return out, final[0], final[1] if spec.has_cell_state else None


def _unreverse_taps(inner: StepTaps, outer: StepTaps, idx: torch.Tensor) -> None:
    """Map records taken on reversed sequences back onto the original time axis (lazily)."""
    tidx = idx.t()  # (T, B)

    def back(v: torch.Tensor | None) -> torch.Tensor | None:
        return None if v is None else v.gather(0, tidx.to(v.device))

    def assemble() -> None:
        inner.finalize()
        outer.units = inner.units
        outer.saturated = {k: back(v) for k, v in inner.saturated.items()}
        outer.grad_h_sq = back(inner.grad_h_sq)
        outer.grad_c_sq = back(inner.grad_c_sq)
        outer.filled_backward = inner.filled_backward

    outer.pending.append(assemble)


__all__ = ["ENGINES", "GATES", "StepTaps", "resolve", "run", "call", "reverse_index", "fused_module"]
