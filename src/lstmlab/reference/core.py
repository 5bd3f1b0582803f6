"""What every NumPy cell shares: small math helpers, the tape, and ONE time loop each way.

A cell module supplies a step ``step(x_t, states) -> (new_states, cache)`` and its backward
``step_backward(d_new_states, cache) -> (d_prev_states, dx_t, d_totals)``; :func:`scan` and
:func:`scan_backward` run them over a right-padded batch (the Equinox ``scan`` shape)::

    new = step(x_t, s_{t-1})            s_t = m_t * new + (1 - m_t) * s_{t-1}     out_t = m_t * h_new

so a padded step (``m_t = 0``) carries every state unchanged and outputs 0.  States are tuples
with the output state ``h`` first (LSTM: ``(h, C)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Step = Callable[[np.ndarray, tuple], tuple[tuple, dict]]
StepBackward = Callable[[tuple, dict], tuple[tuple, np.ndarray, tuple]]


def sigmoid(a: np.ndarray) -> np.ndarray:
    """sigma(a) = 1 / (1 + exp(-a)), computed without overflow."""
    return np.exp(-np.logaddexp(0, -a))


def affine(W: np.ndarray, v: np.ndarray, b: np.ndarray | float = 0.0) -> np.ndarray:
    """``W @ v + b`` for every row ``v`` of a batch."""
    return v @ W.T + b


def float_dtype(x: np.ndarray) -> np.dtype:
    """Compute in float32 when the input is float32 (or narrower), else float64."""
    x = np.asarray(x)
    return np.dtype(np.float32) if x.dtype in (np.float16, np.float32) else np.dtype(np.float64)


def step_mask(lengths, batch: int, steps: int, dtype) -> np.ndarray:
    """(T, B, 1) mask, 1 where step t < lengths[b] (all ones when ``lengths`` is None)."""
    if lengths is None:
        return np.ones((steps, batch, 1), dtype=dtype)
    lengths = np.asarray(lengths).reshape(1, batch)
    return (np.arange(steps).reshape(steps, 1) < lengths).astype(dtype)[..., None]


def state(s, batch: int, hidden: int, dtype) -> np.ndarray:
    """An initial state (or upstream gradient) as an array; zeros when ``s`` is None."""
    return np.zeros((batch, hidden), dtype=dtype) if s is None else np.asarray(s, dtype=dtype)


def optional(a, dtype) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=dtype)


@dataclass
class Tape:
    """Everything the backward pass needs from the forward pass of one sequence batch."""

    cell: str
    params: dict[str, np.ndarray]  # per-gate matrices / biases (cell-specific names)
    steps: list[dict[str, np.ndarray]]  # per-step caches
    mask: np.ndarray  # (T, B, 1), 1 on valid steps
    rmask: np.ndarray | None  # (B, H) or None
    x: np.ndarray  # (B, T, I)
    gates: dict[str, np.ndarray] = field(default_factory=dict)  # activated gates (T, B, H), torch names
    activation: str = "tanh"
    states: dict[str, np.ndarray] = field(default_factory=dict)  # new state of each step (T, B, H)
    layer_norm: bool = False  # a layer-normalised LSTM (forward only)


@dataclass
class Scan:
    """The result of :func:`scan`: outputs (B, T, H), final states, per-step caches and new states."""

    out: np.ndarray
    final: tuple
    caches: list[dict]
    new_states: list[np.ndarray]  # per state: (T, B, H), before the padding rule
    mask: np.ndarray


def scan(step: Step, x: np.ndarray, initial: Sequence[np.ndarray], lengths=None) -> Scan:
    """Run ``step`` over the time axis of ``x`` (B, T, I) from ``initial`` states (the padding rule above)."""
    batch, steps, _ = x.shape
    mask = step_mask(lengths, batch, steps, x.dtype)
    states = tuple(initial)
    out = np.zeros((batch, steps, states[0].shape[-1]), dtype=x.dtype)
    caches, news = [], []
    for t in range(steps):
        new, cache = step(x[:, t], states)
        m = mask[t]
        out[:, t] = m * new[0]                                              # padded steps output 0
        states = tuple(m * n + (1 - m) * s for n, s in zip(new, states, strict=True))  # ... and carry
        caches.append(cache)
        news.append(new)
    stacked = [np.stack([n[k] for n in news]) if news else np.zeros((0,) + s.shape, x.dtype)
               for k, s in enumerate(states)]
    return Scan(out, states, caches, stacked, mask)


def stack(caches: list[dict], keys: dict[str, str], empty: tuple[int, ...], dtype) -> dict[str, np.ndarray]:
    """``{name: (T, B, H)}`` from the per-step caches; ``keys`` maps a name to its cache entry."""
    return {name: np.stack([c[k] for c in caches]) if caches else np.zeros(empty, dtype)
            for name, k in keys.items()}


def scan_backward(step_backward: StepBackward, tape: Tape, d_out, d_final: Sequence) -> tuple:
    """Backprop through time.  Returns ``(dx, d_initial_states, totals)``; ``totals[k][t]`` is the
    total ``dL/ds_t`` of state k (the state after step t), the quantity the taps record.

    ``step_backward`` receives the gradients reaching the step's new states (``h`` already total)
    and returns the gradients of the previous states, ``dx_t`` and, for the states after ``h``,
    their totals through the step (e.g. the LSTM's ``dL/dC_t`` via ``h_t`` too).
    """
    x, mask = tape.x, tape.mask
    batch, steps, _ = x.shape
    d = [np.asarray(v, x.dtype) for v in d_final]
    hidden = d[0].shape[-1]
    d_out = np.zeros((batch, steps, hidden), x.dtype) if d_out is None else np.asarray(d_out, x.dtype)
    dx = np.zeros_like(x)
    totals = [np.zeros((steps, batch, hidden), x.dtype) for _ in d]
    for t in reversed(range(steps)):
        m = mask[t]
        d[0] = d[0] + m * d_out[:, t]   # out_t = m_t * h_t
        totals[0][t] = d[0]
        d_prev, dx[:, t], inner = step_backward(tuple(m * v for v in d), tape.steps[t])
        for k, tot in enumerate(inner, start=1):
            totals[k][t] = tot + (1 - m) * d[k]  # a padded step only passes the gradient on
        d = [dp + (1 - m) * v for dp, v in zip(d_prev, d, strict=True)]  # s_t = m new + (1 - m) s_{t-1}
    return dx, d, totals


def zero_grads(p: dict[str, np.ndarray], batch: int, hidden: int, dtype) -> dict[str, np.ndarray]:
    """Accumulators for every parameter's gradient plus ``rmask``'s."""
    g = {k: np.zeros_like(v) for k, v in p.items()}
    g["rmask"] = np.zeros((batch, hidden), dtype)
    return g


def scan_backward_h(step_backward: Callable, tape: Tape, d_out, dh_n, hidden: int) -> tuple:
    """:func:`scan_backward` for a cell whose only state is ``h`` (GRU, SimpleRNN).

    ``step_backward(dh_t, cache, grads) -> (dh_prev, dx_t)`` accumulates parameter gradients into
    ``grads``.  Returns ``(grads, dx, dh0, dh)``.
    """
    batch, dtype = tape.x.shape[0], tape.x.dtype
    g = zero_grads(tape.params, batch, hidden, dtype)

    def step(d, s):
        dh_prev, dx_t = step_backward(d[0], s, g)
        return (dh_prev,), dx_t, ()

    dx, (dh0,), (dh,) = scan_backward(step, tape, d_out, (state(dh_n, batch, hidden, dtype),))
    return g, dx, dh0, dh
