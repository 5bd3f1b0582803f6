"""NumPy Elman RNN with a hand-derived backward pass, torch.nn.RNN's equation::

    h_t = act(W_ih @ x_t + b_ih + W_hh @ h_prev + b_hh)        act in {tanh, relu}

With ``rmask`` the recurrent product sees ``h_prev * rmask``.
"""

from __future__ import annotations

import numpy as np

from .core import Tape, affine, float_dtype, optional, scan, scan_backward_h, state

ACTIVATIONS = ("tanh", "relu")


def rnn_step(x_t: np.ndarray, h_prev: np.ndarray, p: dict[str, np.ndarray], activation: str = "tanh",
             rmask: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One step for a batch (rows are examples).  Returns ``(h_t, cache)``."""
    h_rec = h_prev if rmask is None else h_prev * rmask
    a_t = affine(p["W_ih"], x_t, p["b_ih"]) + affine(p["W_hh"], h_rec, p["b_hh"])
    h_t = np.tanh(a_t) if activation == "tanh" else np.maximum(a_t, 0)
    return h_t, dict(x_t=x_t, h_prev=h_prev, h_rec=h_rec, h_t=h_t)


def rnn_step_backward(dh_t: np.ndarray, s: dict[str, np.ndarray], p: dict[str, np.ndarray],
                      grads: dict[str, np.ndarray], activation: str = "tanh",
                      rmask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Backprop one step: ``dL/dh_t`` -> ``(dL/dh_{t-1}, dL/dx_t)``; accumulates into ``grads``."""
    # tanh' = 1 - tanh^2; relu' = [h_t > 0]
    da_t = dh_t * (1 - s["h_t"] ** 2) if activation == "tanh" else dh_t * (s["h_t"] > 0)
    grads["W_ih"] += da_t.T @ s["x_t"]
    grads["b_ih"] += da_t.sum(0)
    grads["W_hh"] += da_t.T @ s["h_rec"]
    grads["b_hh"] += da_t.sum(0)
    dh_rec = da_t @ p["W_hh"]
    dx_t = da_t @ p["W_ih"]
    if rmask is None:
        return dh_rec, dx_t
    grads["rmask"] += dh_rec * s["h_prev"]
    return dh_rec * rmask, dx_t


def rnn_forward(x: np.ndarray, h0: np.ndarray | None, weight_ih: np.ndarray, weight_hh: np.ndarray,
                bias_ih: np.ndarray | None = None, bias_hh: np.ndarray | None = None,
                lengths: np.ndarray | None = None, rmask: np.ndarray | None = None,
                activation: str = "tanh") -> tuple[np.ndarray, np.ndarray, Tape]:
    """Elman RNN over a (B, T, I) batch.  Returns ``(out (B,T,H), h_n, tape)``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
    dtype = float_dtype(x)
    x = np.asarray(x, dtype=dtype)
    batch, hidden = x.shape[0], np.asarray(weight_hh).shape[1]
    zeros = np.zeros(hidden, dtype)
    p = {"W_ih": np.asarray(weight_ih, dtype), "W_hh": np.asarray(weight_hh, dtype),
         "b_ih": zeros if bias_ih is None else np.asarray(bias_ih, dtype),
         "b_hh": zeros if bias_hh is None else np.asarray(bias_hh, dtype)}
    rmask = optional(rmask, dtype)

    def step(x_t, s):
        h_t, cache = rnn_step(x_t, s[0], p, activation, rmask)
        return (h_t,), cache

    r = scan(step, x, (state(h0, batch, hidden, dtype),), lengths)
    return r.out, r.final[0], Tape("rnn", p, r.caches, r.mask, rmask, x, {"h": r.new_states[0]}, activation,
                                   states={"h": r.new_states[0]})


def rnn_backward(tape: Tape, d_out: np.ndarray | None = None, dh_n: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """Backprop through time: torch-layout parameter gradients, ``x``, ``h0``, ``rmask``, ``dh`` (T,B,H)."""
    p, rmask, act = tape.params, tape.rmask, tape.activation
    g, dx, dh0, dh = scan_backward_h(lambda dh_t, s, grads: rnn_step_backward(dh_t, s, p, grads, act, rmask),
                                     tape, d_out, dh_n, p["W_hh"].shape[1])
    return dict(weight_ih=g["W_ih"], weight_hh=g["W_hh"], bias_ih=g["b_ih"], bias_hh=g["b_hh"], x=dx,
                h0=dh0, rmask=None if rmask is None else g["rmask"], dh=dh)


def rnn(x: np.ndarray, h0: np.ndarray | None, weight_ih: np.ndarray, weight_hh: np.ndarray,
        bias_ih: np.ndarray | None = None, bias_hh: np.ndarray | None = None,
        lengths: np.ndarray | None = None, rmask: np.ndarray | None = None,
        activation: str = "tanh") -> tuple[np.ndarray, np.ndarray]:
    """Forward only: ``(out, h_n)``."""
    out, h_n, _ = rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, rmask, activation)
    return out, h_n
