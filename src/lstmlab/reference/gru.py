"""NumPy GRU with a hand-derived backward pass, exactly torch.nn.GRU's equations::

    r_t = sigmoid(W_ir @ x_t + b_ir + W_hr @ h_prev + b_hr)            # reset gate
    z_t = sigmoid(W_iz @ x_t + b_iz + W_hz @ h_prev + b_hz)            # update gate
    n_t = tanh(W_in @ x_t + b_in + r_t * (W_hn @ h_prev + b_hn))       # candidate
    h_t = (1 - z_t) * n_t + z_t * h_prev

Torch layout: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), biases (3H), gate order r, z, n.
With ``rmask`` the recurrent products see ``h_prev * rmask``; the ``z_t * h_prev`` term does not.
"""

from __future__ import annotations

import numpy as np

from .. import cells
from .core import Tape, affine, float_dtype, optional, scan, scan_backward_h, sigmoid, stack, state

GATES = cells.GRU.gates  # row blocks of torch's weight_ih / weight_hh: r, z, n


def unpack(weight_ih, weight_hh, bias_ih=None, bias_hh=None, dtype=np.float64) -> dict[str, np.ndarray]:
    """Torch layout -> per-gate ``W_ir, W_iz, W_in, W_hr, ..., b_ir, ..., b_hn``."""
    weight_ih, weight_hh = np.asarray(weight_ih, dtype), np.asarray(weight_hh, dtype)
    hidden = weight_hh.shape[1]
    zeros = np.zeros(3 * hidden, dtype)
    parts = {"W_i": weight_ih, "W_h": weight_hh,
             "b_i": zeros if bias_ih is None else np.asarray(bias_ih, dtype),
             "b_h": zeros if bias_hh is None else np.asarray(bias_hh, dtype)}
    return {f"{name}{g}": block for name, full in parts.items()
            for g, block in zip(GATES, np.split(full, 3), strict=True)}


def pack(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-gate parameters (or gradients) -> ``(weight_ih, weight_hh, bias_ih, bias_hh)``."""
    return tuple(np.concatenate([p[f"{name}{g}"] for g in GATES]) for name in ("W_i", "W_h", "b_i", "b_h"))


def gru_step(x_t: np.ndarray, h_prev: np.ndarray, p: dict[str, np.ndarray], rmask: np.ndarray | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One GRU step for a batch (rows are examples).  Returns ``(h_t, cache)``."""
    h_rec = h_prev if rmask is None else h_prev * rmask
    r_t = sigmoid(affine(p["W_ir"], x_t, p["b_ir"]) + affine(p["W_hr"], h_rec, p["b_hr"]))
    z_t = sigmoid(affine(p["W_iz"], x_t, p["b_iz"]) + affine(p["W_hz"], h_rec, p["b_hz"]))
    hn = affine(p["W_hn"], h_rec, p["b_hn"])                  # W_hn @ h_prev + b_hn
    n_t = np.tanh(affine(p["W_in"], x_t, p["b_in"]) + r_t * hn)
    h_t = (1 - z_t) * n_t + z_t * h_prev
    return h_t, dict(x_t=x_t, h_prev=h_prev, h_rec=h_rec, r_t=r_t, z_t=z_t, hn=hn, n_t=n_t)


def gru_step_backward(dh_t: np.ndarray, s: dict[str, np.ndarray], p: dict[str, np.ndarray],
                      grads: dict[str, np.ndarray], rmask: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Backprop one step: ``dL/dh_t`` -> ``(dL/dh_{t-1}, dL/dx_t)``; accumulates into ``grads``."""
    r_t, z_t, n_t = s["r_t"], s["z_t"], s["n_t"]
    # h_t = (1 - z_t) * n_t + z_t * h_prev
    dn_t = dh_t * (1 - z_t)
    dz_t = dh_t * (s["h_prev"] - n_t)
    dh_prev = dh_t * z_t
    # n_t = tanh(a_n + r_t * hn)
    da_n = dn_t * (1 - n_t ** 2)
    dhn = da_n * r_t
    dr_t = da_n * s["hn"]
    # r_t, z_t = sigmoid(...)
    da = {"r": dr_t * r_t * (1 - r_t), "z": dz_t * z_t * (1 - z_t), "n": da_n}  # x-side pre-activations
    dah = {"r": da["r"], "z": da["z"], "n": dhn}                                 # h-side pre-activations
    dx_t, dh_rec = 0, 0
    for g in GATES:
        grads[f"W_i{g}"] += da[g].T @ s["x_t"]
        grads[f"b_i{g}"] += da[g].sum(0)
        grads[f"W_h{g}"] += dah[g].T @ s["h_rec"]
        grads[f"b_h{g}"] += dah[g].sum(0)
        dx_t = dx_t + da[g] @ p[f"W_i{g}"]
        dh_rec = dh_rec + dah[g] @ p[f"W_h{g}"]
    if rmask is None:
        return dh_prev + dh_rec, dx_t
    grads["rmask"] += dh_rec * s["h_prev"]
    return dh_prev + dh_rec * rmask, dx_t


def gru_forward(x: np.ndarray, h0: np.ndarray | None, weight_ih: np.ndarray, weight_hh: np.ndarray,
                bias_ih: np.ndarray | None = None, bias_hh: np.ndarray | None = None,
                lengths: np.ndarray | None = None, rmask: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, Tape]:
    """GRU over a (B, T, I) batch in torch layout.  Returns ``(out (B,T,H), h_n, tape)``."""
    dtype = float_dtype(x)
    x = np.asarray(x, dtype=dtype)
    p = unpack(weight_ih, weight_hh, bias_ih, bias_hh, dtype)
    batch, hidden = x.shape[0], p["W_hr"].shape[1]
    rmask = optional(rmask, dtype)

    def step(x_t, s):
        h_t, cache = gru_step(x_t, s[0], p, rmask)
        return (h_t,), cache

    r = scan(step, x, (state(h0, batch, hidden, dtype),), lengths)
    gates = stack(r.caches, {g: f"{g}_t" for g in GATES}, (0, batch, hidden), dtype)
    return r.out, r.final[0], Tape("gru", p, r.caches, r.mask, rmask, x, gates, states={"h": r.new_states[0]})


def gru_backward(tape: Tape, d_out: np.ndarray | None = None, dh_n: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """Backprop through time: torch-layout parameter gradients, ``x``, ``h0``, ``rmask``, ``dh`` (T,B,H)."""
    p, rmask = tape.params, tape.rmask
    g, dx, dh0, dh = scan_backward_h(lambda dh_t, s, grads: gru_step_backward(dh_t, s, p, grads, rmask),
                                     tape, d_out, dh_n, p["W_hr"].shape[1])
    w_ih, w_hh, b_ih, b_hh = pack(g)
    return dict(weight_ih=w_ih, weight_hh=w_hh, bias_ih=b_ih, bias_hh=b_hh, x=dx, h0=dh0,
                rmask=None if rmask is None else g["rmask"], dh=dh)


def gru(x: np.ndarray, h0: np.ndarray | None, weight_ih: np.ndarray, weight_hh: np.ndarray,
        bias_ih: np.ndarray | None = None, bias_hh: np.ndarray | None = None,
        lengths: np.ndarray | None = None, rmask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward only: ``(out, h_n)``."""
    out, h_n, _ = gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, rmask)
    return out, h_n
