"""Triton kernels: one fused pointwise kernel per time step, forward and backward, for each cell.

Each launch covers one step ``t`` of a whole batch on a ``(batch tile, hidden tile)`` grid.  The
recurrent matrix product of the step is NOT in here: the caller runs it as one GEMM (cuBLAS)
before the forward kernel and after the backward kernel.  Everything elementwise of the step is
here: gate activations, cell update, length mask (a padded step carries the state), the
recurrent-dropout mask, and the taps -- saturated units per ``(t, b)`` in forward, ``|dL/dh_t|^2``
(and ``|dL/dc_t|^2``) per ``(t, b)`` in backward -- as per-hidden-tile partial sums that the caller
adds up once after the loop (deterministic, no atomics).

Buffers are allocated by :mod:`.loops`, contiguous, batch-first, and passed by argument name
(``HS`` is the buffer ``hs``; a kernel for cell ``c`` is named ``c_fwd`` / ``c_bwd``, see
:mod:`.steps`): ``G`` (B, T, n_gates*H) input projections, overwritten by the activated gates
(forward, when saving; SimpleRNN's activation is its state ``HS``) and then by the
pre-activation gradients (backward); ``HS``/``CS`` (B, T, H) states after
each step (the state before step 0 is ``H0``/``C0``); ``REC`` (B, n_gates*H) the step's GEMM
output; ``DHM`` (B, H) ``dG_{t+1} @ W_hh``; ``DHC`` (B, H) the gradient reaching ``h_t`` directly
(final-state gradient, carried padded steps, GRU's ``z * h`` path); ``DC`` (B, H) the gradient
reaching ``c_t`` from later steps.  Partial sums: ``SAT`` (n_gates, NB, T, B), ``PH``/``PC`` (NB, T, B)
with NB the number of hidden tiles.  Values are computed in ``ACC`` (float32, or float64 for
float64 inputs) whatever the storage dtype, so half-precision buffers keep fp32 arithmetic.

This file is imported twice by :mod:`.plan`: as compiled kernels for CUDA tensors and, with
``TRITON_INTERPRET=1`` set only while it loads, as Triton-interpreter kernels for CPU tensors.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _add(a, b):
    return a + b


# Row sums go through tl.reduce with triton's own sum combiner: tl.sum is itself a @triton.jit
# function, compiled or interpreted according to TRITON_INTERPRET when triton was first imported,
# so the interpreted copy of this file could not call it; the interpreter recognises the combiner
# and sums with NumPy (our own _add would work too, element by element).
_SUM_COMBINE = getattr(tl.standard, "_sum_combine", _add)


@triton.jit
def _rowsum(v):
    return tl.reduce(v, 1, _SUM_COMBINE)


@triton.jit
def _tanh(x):
    # 1 - 2 / (exp(2x) + 1): exact limits +-1 for large |x| (exp overflows to inf -> 1)
    return 1.0 - 2.0 / (tl.exp(2.0 * x) + 1.0)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    # int64 row indices: offsets like b * T * 4H overflow int32 on long sequences
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rh = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    inside = (rb < B)[:, None] & (rh < H)[None, :]
    return rb, rh, inside


@triton.jit
def _valid(LEN, rb, B, t, HAS_LEN: tl.constexpr):
    """(BLOCK_B, 1) bool: step t is inside sequence b (always true without lengths)."""
    if HAS_LEN:
        ln = tl.load(LEN + rb, mask=rb < B, other=0)
        ok = t < ln
    else:
        ok = rb >= 0
    return ok[:, None]


@triton.jit
def _prev(P0, PS, rb, rh, inside, t, T, H, ACC: tl.constexpr):
    """The state before step t: P0 (B, H) at t == 0, else PS[:, t - 1] of a (B, T, H) buffer."""
    if t == 0:
        v = tl.load(P0 + rb[:, None] * H + rh[None, :], mask=inside, other=0.0)
    else:
        v = tl.load(PS + rb[:, None] * (T * H) + (t - 1) * H + rh[None, :], mask=inside, other=0.0)
    return v.to(ACC)


@triton.jit
def _pre(G, REC, g_off, r_off, k, H, inside, ACC: tl.constexpr):
    """Pre-activation of gate block k: its input projection (G) plus the step's recurrent GEMM output (REC)."""
    return tl.load(G + g_off + k * H, mask=inside, other=0.0).to(ACC) + \
        tl.load(REC + r_off + k * H, mask=inside, other=0.0).to(ACC)


@triton.jit
def _count(SAT, gate, sat, inside, valid, rb, B, t, T):
    """Store the number of saturated units of one gate per batch row (this hidden tile's share)."""
    cnt = _rowsum(tl.where(inside & valid & sat, 1.0, 0.0))
    nb = tl.num_programs(1)
    off = ((gate * nb + tl.program_id(1)) * T + t) * B + rb
    tl.store(SAT + off, cnt, mask=rb < B)


@triton.jit
def _sig_sat(v, THR):
    return (v < tl.load(THR)) | (v > tl.load(THR + 1))


@triton.jit
def _tanh_sat(v, THR):
    return tl.abs(v) > tl.load(THR + 2)


@triton.jit
def _partial(P, v, inside, rb, B, t, T):
    """Store this hidden tile's share of sum_k v[b, k]**2 per batch row."""
    s = _rowsum(tl.where(inside, v * v, 0.0))
    off = (tl.program_id(1) * T + t) * B + rb
    tl.store(P + off, s, mask=rb < B)


@triton.jit
def _store_state(HS, OUT, HR, RMASK, h, valid, inside, rb, rh, t, T, H,
                 HAS_OUT: tl.constexpr, HAS_RMASK: tl.constexpr):
    """Write h_t (carried state), the masked output row and h_t * rmask for the next GEMM."""
    s_off = rb[:, None] * (T * H) + t * H + rh[None, :]
    tl.store(HS + s_off, h, mask=inside)
    if HAS_OUT:
        tl.store(OUT + s_off, tl.where(valid, h, 0.0), mask=inside)
    if HAS_RMASK:
        b_off = rb[:, None] * H + rh[None, :]
        rm = tl.load(RMASK + b_off, mask=inside, other=0.0)
        tl.store(HR + b_off, h * rm, mask=inside)


@triton.jit
def _incoming(GOUT, DHM, DHC, RMASK, valid, inside, rb, rh, t, T, H, ACC: tl.constexpr,
              HAS_RMASK: tl.constexpr):
    """Total dL/dh_t: output gradient (0 on padded steps) + recurrent GEMM part + direct part."""
    b_off = rb[:, None] * H + rh[None, :]
    go = tl.load(GOUT + rb[:, None] * (T * H) + t * H + rh[None, :], mask=inside, other=0.0).to(ACC)
    dm = tl.load(DHM + b_off, mask=inside, other=0.0).to(ACC)
    if HAS_RMASK:
        dm = dm * tl.load(RMASK + b_off, mask=inside, other=0.0).to(ACC)
    return tl.where(valid, go, 0.0) + dm + tl.load(DHC + b_off, mask=inside, other=0.0).to(ACC)


@triton.jit(do_not_specialize=["t"])
def lstm_fwd(G, REC, H0, C0, HS, CS, OUT, HR, RMASK, LEN, SAT, THR, t, B, T, H,
             HAS_LEN: tl.constexpr, HAS_OUT: tl.constexpr, HAS_RMASK: tl.constexpr, SAVE: tl.constexpr,
             TAPS: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    rb, rh, inside = _tile(B, H, BLOCK_B, BLOCK_H)
    valid = _valid(LEN, rb, B, t, HAS_LEN)
    g_off = rb[:, None] * (T * 4 * H) + t * (4 * H) + rh[None, :]
    r_off = rb[:, None] * (4 * H) + rh[None, :]
    i = _sigmoid(_pre(G, REC, g_off, r_off, 0, H, inside, ACC))
    f = _sigmoid(_pre(G, REC, g_off, r_off, 1, H, inside, ACC))
    g = _tanh(_pre(G, REC, g_off, r_off, 2, H, inside, ACC))
    o = _sigmoid(_pre(G, REC, g_off, r_off, 3, H, inside, ACC))
    hp = _prev(H0, HS, rb, rh, inside, t, T, H, ACC)
    cp = _prev(C0, CS, rb, rh, inside, t, T, H, ACC)
    c = tl.where(valid, f * cp + i * g, cp)
    h = tl.where(valid, o * _tanh(c), hp)
    tl.store(CS + rb[:, None] * (T * H) + t * H + rh[None, :], c, mask=inside)
    _store_state(HS, OUT, HR, RMASK, h, valid, inside, rb, rh, t, T, H, HAS_OUT, HAS_RMASK)
    if SAVE:
        tl.store(G + g_off, i, mask=inside)
        tl.store(G + g_off + H, f, mask=inside)
        tl.store(G + g_off + 2 * H, g, mask=inside)
        tl.store(G + g_off + 3 * H, o, mask=inside)
    if TAPS:
        _count(SAT, 0, _sig_sat(i, THR), inside, valid, rb, B, t, T)
        _count(SAT, 1, _sig_sat(f, THR), inside, valid, rb, B, t, T)
        _count(SAT, 2, _tanh_sat(g, THR), inside, valid, rb, B, t, T)
        _count(SAT, 3, _sig_sat(o, THR), inside, valid, rb, B, t, T)


@triton.jit(do_not_specialize=["t"])
def lstm_bwd(G, CS, C0, GOUT, DHM, DHC, DC, RMASK, LEN, PH, PC, t, B, T, H,
             HAS_LEN: tl.constexpr, HAS_RMASK: tl.constexpr, TAPS: tl.constexpr, ACC: tl.constexpr,
             BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    rb, rh, inside = _tile(B, H, BLOCK_B, BLOCK_H)
    valid = _valid(LEN, rb, B, t, HAS_LEN)
    g_off = rb[:, None] * (T * 4 * H) + t * (4 * H) + rh[None, :]
    b_off = rb[:, None] * H + rh[None, :]
    i = tl.load(G + g_off, mask=inside, other=0.0).to(ACC)
    f = tl.load(G + g_off + H, mask=inside, other=0.0).to(ACC)
    g = tl.load(G + g_off + 2 * H, mask=inside, other=0.0).to(ACC)
    o = tl.load(G + g_off + 3 * H, mask=inside, other=0.0).to(ACC)
    c = tl.load(CS + rb[:, None] * (T * H) + t * H + rh[None, :], mask=inside, other=0.0).to(ACC)
    cp = _prev(C0, CS, rb, rh, inside, t, T, H, ACC)
    dh = _incoming(GOUT, DHM, DHC, RMASK, valid, inside, rb, rh, t, T, H, ACC, HAS_RMASK)
    tc = _tanh(c)
    dc = tl.load(DC + b_off, mask=inside, other=0.0).to(ACC) + tl.where(valid, dh * o * (1.0 - tc * tc), 0.0)
    if TAPS:
        _partial(PH, dh, inside, rb, B, t, T)
        _partial(PC, dc, inside, rb, B, t, T)
    tl.store(G + g_off, tl.where(valid, dc * g * i * (1.0 - i), 0.0), mask=inside)
    tl.store(G + g_off + H, tl.where(valid, dc * cp * f * (1.0 - f), 0.0), mask=inside)
    tl.store(G + g_off + 2 * H, tl.where(valid, dc * i * (1.0 - g * g), 0.0), mask=inside)
    tl.store(G + g_off + 3 * H, tl.where(valid, dh * tc * o * (1.0 - o), 0.0), mask=inside)
    tl.store(DC + b_off, tl.where(valid, dc * f, dc), mask=inside)
    tl.store(DHC + b_off, tl.where(valid, 0.0, dh), mask=inside)


@triton.jit(do_not_specialize=["t"])
def gru_fwd(G, REC, H0, HS, OUT, HN, HR, RMASK, LEN, SAT, THR, t, B, T, H,
            HAS_LEN: tl.constexpr, HAS_OUT: tl.constexpr, HAS_RMASK: tl.constexpr, SAVE: tl.constexpr,
            TAPS: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    rb, rh, inside = _tile(B, H, BLOCK_B, BLOCK_H)
    valid = _valid(LEN, rb, B, t, HAS_LEN)
    g_off = rb[:, None] * (T * 3 * H) + t * (3 * H) + rh[None, :]
    r_off = rb[:, None] * (3 * H) + rh[None, :]
    r = _sigmoid(_pre(G, REC, g_off, r_off, 0, H, inside, ACC))
    z = _sigmoid(_pre(G, REC, g_off, r_off, 1, H, inside, ACC))
    hn = tl.load(REC + r_off + 2 * H, mask=inside, other=0.0).to(ACC)
    n = _tanh(tl.load(G + g_off + 2 * H, mask=inside, other=0.0).to(ACC) + r * hn)
    hp = _prev(H0, HS, rb, rh, inside, t, T, H, ACC)
    h = tl.where(valid, (1.0 - z) * n + z * hp, hp)
    _store_state(HS, OUT, HR, RMASK, h, valid, inside, rb, rh, t, T, H, HAS_OUT, HAS_RMASK)
    if SAVE:
        tl.store(G + g_off, r, mask=inside)
        tl.store(G + g_off + H, z, mask=inside)
        tl.store(G + g_off + 2 * H, n, mask=inside)
        tl.store(HN + rb[:, None] * (T * H) + t * H + rh[None, :], hn, mask=inside)
    if TAPS:
        _count(SAT, 0, _sig_sat(r, THR), inside, valid, rb, B, t, T)
        _count(SAT, 1, _sig_sat(z, THR), inside, valid, rb, B, t, T)
        _count(SAT, 2, _tanh_sat(n, THR), inside, valid, rb, B, t, T)


@triton.jit(do_not_specialize=["t"])
def gru_bwd(G, HN, HS, H0, GOUT, DHM, DHC, RMASK, LEN, PH, t, B, T, H,
            HAS_LEN: tl.constexpr, HAS_RMASK: tl.constexpr, TAPS: tl.constexpr, ACC: tl.constexpr,
            BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """Writes the h-side pre-activation gradients (r, z, W_hn h + b_hn) into G and the x-side
    gradient of the n gate into HN."""
    rb, rh, inside = _tile(B, H, BLOCK_B, BLOCK_H)
    valid = _valid(LEN, rb, B, t, HAS_LEN)
    g_off = rb[:, None] * (T * 3 * H) + t * (3 * H) + rh[None, :]
    s_off = rb[:, None] * (T * H) + t * H + rh[None, :]
    b_off = rb[:, None] * H + rh[None, :]
    r = tl.load(G + g_off, mask=inside, other=0.0).to(ACC)
    z = tl.load(G + g_off + H, mask=inside, other=0.0).to(ACC)
    n = tl.load(G + g_off + 2 * H, mask=inside, other=0.0).to(ACC)
    hn = tl.load(HN + s_off, mask=inside, other=0.0).to(ACC)
    hp = _prev(H0, HS, rb, rh, inside, t, T, H, ACC)
    dh = _incoming(GOUT, DHM, DHC, RMASK, valid, inside, rb, rh, t, T, H, ACC, HAS_RMASK)
    if TAPS:
        _partial(PH, dh, inside, rb, B, t, T)
    dan = tl.where(valid, dh * (1.0 - z) * (1.0 - n * n), 0.0)
    tl.store(G + g_off, dan * hn * r * (1.0 - r), mask=inside)
    tl.store(G + g_off + H, tl.where(valid, dh * (hp - n) * z * (1.0 - z), 0.0), mask=inside)
    tl.store(G + g_off + 2 * H, dan * r, mask=inside)
    tl.store(HN + s_off, dan, mask=inside)
    tl.store(DHC + b_off, tl.where(valid, dh * z, dh), mask=inside)


@triton.jit(do_not_specialize=["t"])
def rnn_fwd(G, REC, H0, HS, OUT, HR, RMASK, LEN, SAT, THR, t, B, T, H,
            RELU: tl.constexpr, HAS_LEN: tl.constexpr, HAS_OUT: tl.constexpr, HAS_RMASK: tl.constexpr,
            TAPS: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    rb, rh, inside = _tile(B, H, BLOCK_B, BLOCK_H)
    valid = _valid(LEN, rb, B, t, HAS_LEN)
    a = _pre(G, REC, rb[:, None] * (T * H) + t * H + rh[None, :], rb[:, None] * H + rh[None, :], 0, H, inside, ACC)
    if RELU:
        hnew = tl.maximum(a, 0.0)
        sat = hnew == 0.0
    else:
        hnew = _tanh(a)
        sat = _tanh_sat(hnew, THR)
    hp = _prev(H0, HS, rb, rh, inside, t, T, H, ACC)
    _store_state(HS, OUT, HR, RMASK, tl.where(valid, hnew, hp), valid, inside, rb, rh, t, T, H, HAS_OUT,
                 HAS_RMASK)
    if TAPS:
        _count(SAT, 0, sat, inside, valid, rb, B, t, T)


@triton.jit(do_not_specialize=["t"])
def rnn_bwd(G, HS, GOUT, DHM, DHC, RMASK, LEN, PH, t, B, T, H,
            RELU: tl.constexpr, HAS_LEN: tl.constexpr, HAS_RMASK: tl.constexpr, TAPS: tl.constexpr,
            ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    rb, rh, inside = _tile(B, H, BLOCK_B, BLOCK_H)
    valid = _valid(LEN, rb, B, t, HAS_LEN)
    s_off = rb[:, None] * (T * H) + t * H + rh[None, :]
    h = tl.load(HS + s_off, mask=inside, other=0.0).to(ACC)  # on a valid step: the activation's output
    dh = _incoming(GOUT, DHM, DHC, RMASK, valid, inside, rb, rh, t, T, H, ACC, HAS_RMASK)
    if TAPS:
        _partial(PH, dh, inside, rb, B, t, T)
    if RELU:
        d = tl.where(h > 0.0, dh, 0.0)
    else:
        d = dh * (1.0 - h * h)
    tl.store(G + s_off, tl.where(valid, d, 0.0), mask=inside)
    b_off = rb[:, None] * H + rh[None, :]
    tl.store(DHC + b_off, tl.where(valid, 0.0, dh), mask=inside)
