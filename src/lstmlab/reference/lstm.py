"""NumPy LSTM with a hand-derived backward pass through time -- the oracle every engine is held to.

The step function is the seed's section 4, one line per equation (rows of every array are the
examples of the batch, so ``W @ v`` for each row ``v`` is written ``affine(W, v, b)``)::

    f_t = sigmoid(W_f @ concat(h_prev, x_t) + b_f)      # 4.1 forget gate
    i_t = sigmoid(W_i @ concat(h_prev, x_t) + b_i)      # 4.2 input gate
    C_tilde = tanh(W_c @ concat(h_prev, x_t) + b_c)     # 4.3 candidate cell state
    C_t = f_t * C_prev + i_t * C_tilde                  # 4.4 cell state update
    o_t = sigmoid(W_o @ concat(h_prev, x_t) + b_o)      # 4.5 output gate
    h_t = o_t * tanh(C_t)                               # 4.6 hidden state

Internally the parameters are the seed's per-gate matrices ``W_k = [W_hk | W_xk]`` (H, H+I) acting
on ``[h_{t-1}, x_t]``.  The public functions take and return PyTorch's layout: ``weight_ih``
(4H, I), ``weight_hh`` (4H, H), ``bias_ih``/``bias_hh`` (4H), gate order i, f, g, o where
``g`` is the seed's candidate ``C_tilde`` (``W_c``).  ``b_k = b_ih[k] + b_hh[k]``.

Extras every engine supports: right-padded ``lengths`` (a padded step carries the state,
``h_t = h_{t-1}``, and outputs 0) and a recurrent-dropout mask ``rmask`` (B, H) multiplied onto
``h_{t-1}`` before the recurrent product only.
"""

from __future__ import annotations

import numpy as np

from .. import cells
from .core import Tape, affine, float_dtype, optional, scan, scan_backward, sigmoid, stack, state, zero_grads

TORCH_GATES = cells.LSTM.gates  # row blocks of torch's weight_ih / weight_hh: i, f, g, o
SEED_NAME = {"i": "i", "f": "f", "g": "c", "o": "o"}  # torch gate -> seed letter (W_i, W_f, W_c, W_o)


def concat(h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """[h, x] along the feature axis (the seed's ``[h_{t-1}, x_t]``)."""
    return np.concatenate([h, x], axis=-1)


# ----------------------------------------------------------------------------- layouts

def split_concat(W: np.ndarray, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Seed ``W = [W_h | W_x]`` (rows, H+I) -> ``(W_h, W_x)``."""
    return W[:, :hidden], W[:, hidden:]


def join_concat(W_h: np.ndarray, W_x: np.ndarray) -> np.ndarray:
    """``(W_h, W_x)`` -> seed ``W = [W_h | W_x]`` acting on ``[h_{t-1}, x_t]``."""
    return np.concatenate([W_h, W_x], axis=1)


def torch_to_seed(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray | None = None,
                  bias_hh: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """torch.nn.LSTM layout -> seed per-gate ``W_f, W_i, W_c, W_o`` (H, H+I) and ``b_f, ...`` (H)."""
    weight_ih, weight_hh = np.asarray(weight_ih), np.asarray(weight_hh)
    hidden = weight_hh.shape[1]
    zeros = np.zeros(4 * hidden, dtype=weight_hh.dtype)
    b_ih = zeros if bias_ih is None else np.asarray(bias_ih)
    b_hh = zeros if bias_hh is None else np.asarray(bias_hh)
    p = {}
    for k, gate in enumerate(TORCH_GATES):
        rows, s = slice(k * hidden, (k + 1) * hidden), SEED_NAME[gate]
        p[f"W_{s}"] = join_concat(weight_hh[rows], weight_ih[rows])
        p[f"b_{s}"] = b_ih[rows] + b_hh[rows]
    return p


def seed_to_torch(p: dict[str, np.ndarray], hidden: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seed per-gate parameters -> ``(weight_ih, weight_hh, bias_ih, bias_hh)``; ``bias_hh`` is 0."""
    halves = [split_concat(p[f"W_{SEED_NAME[g]}"], hidden) for g in TORCH_GATES]
    weight_hh = np.concatenate([w_h for w_h, _ in halves])
    weight_ih = np.concatenate([w_x for _, w_x in halves])
    bias_ih = np.concatenate([p[f"b_{SEED_NAME[g]}"] for g in TORCH_GATES])
    return weight_ih, weight_hh, bias_ih, np.zeros_like(bias_ih)


# ----------------------------------------------------------------------------- one step

def lstm_step(x_t: np.ndarray, h_prev: np.ndarray, C_prev: np.ndarray, p: dict[str, np.ndarray],
              rmask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One LSTM step, seed section 4.  Returns ``(h_t, C_t, cache)``."""
    h_rec = h_prev if rmask is None else h_prev * rmask  # recurrent dropout: only on the W_h product
    z = concat(h_rec, x_t)                               # [h_{t-1}, x_t]
    f_t = sigmoid(affine(p["W_f"], z, p["b_f"]))         # 4.1  f_t = sigma(W_f . [h_{t-1}, x_t] + b_f)
    i_t = sigmoid(affine(p["W_i"], z, p["b_i"]))         # 4.2  i_t = sigma(W_i . [h_{t-1}, x_t] + b_i)
    C_tilde = np.tanh(affine(p["W_c"], z, p["b_c"]))     # 4.3  C~_t = tanh(W_c . [h_{t-1}, x_t] + b_c)
    C_t = f_t * C_prev + i_t * C_tilde                   # 4.4  C_t = f_t * C_{t-1} + i_t * C~_t
    o_t = sigmoid(affine(p["W_o"], z, p["b_o"]))         # 4.5  o_t = sigma(W_o . [h_{t-1}, x_t] + b_o)
    h_t = o_t * np.tanh(C_t)                             # 4.6  h_t = o_t * tanh(C_t)
    cache = dict(z=z, h_prev=h_prev, C_prev=C_prev, f_t=f_t, i_t=i_t, C_tilde=C_tilde, C_t=C_t, o_t=o_t)
    return h_t, C_t, cache


def lstm_step_backward(dh_t: np.ndarray, dC_next: np.ndarray, s: dict[str, np.ndarray],
                       p: dict[str, np.ndarray], grads: dict[str, np.ndarray], rmask: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backprop one step.

    ``dh_t`` is the total ``dL/dh_t``; ``dC_next`` the gradient reaching ``C_t`` from later steps.
    Returns ``(dL/dh_{t-1}, dL/dC_{t-1}, dL/dx_t, dL/dC_t)`` (the last is the total, via ``h_t`` too);
    parameter gradients (and ``rmask``'s) are accumulated into ``grads``.
    """
    tanh_C = np.tanh(s["C_t"])
    # 4.6  h_t = o_t * tanh(C_t)
    do_t = dh_t * tanh_C
    dC = dC_next + dh_t * s["o_t"] * (1 - tanh_C ** 2)  # total dL/dC_t
    # 4.4  C_t = f_t * C_{t-1} + i_t * C~_t
    df_t = dC * s["C_prev"]
    di_t = dC * s["C_tilde"]
    dC_tilde = dC * s["i_t"]
    dC_prev = dC * s["f_t"]
    # 4.1-4.3, 4.5: through sigma' = sigma (1 - sigma) and tanh' = 1 - tanh^2 to the pre-activations
    da = {
        "f": df_t * s["f_t"] * (1 - s["f_t"]),
        "i": di_t * s["i_t"] * (1 - s["i_t"]),
        "c": dC_tilde * (1 - s["C_tilde"] ** 2),
        "o": do_t * s["o_t"] * (1 - s["o_t"]),
    }
    dz = 0
    for k, da_k in da.items():  # a_k = W_k . z + b_k
        grads[f"W_{k}"] += da_k.T @ s["z"]
        grads[f"b_{k}"] += da_k.sum(0)
        dz = dz + da_k @ p[f"W_{k}"]
    hidden = dh_t.shape[-1]
    dh_rec, dx_t = dz[:, :hidden], dz[:, hidden:]  # z = [h_rec, x_t]
    if rmask is None:
        return dh_rec, dC_prev, dx_t, dC
    grads["rmask"] += dh_rec * s["h_prev"]         # h_rec = h_{t-1} * rmask
    return dh_rec * rmask, dC_prev, dx_t, dC



def layer_normalize(v: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float) -> np.ndarray:
    """Normalise each row of ``v`` to zero mean and unit variance, then scale and shift (Ba et al. 2016)."""
    out = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + eps)
    out = out if weight is None else out * weight
    return out if bias is None else out + bias


def lstm_ln_step(x_t: np.ndarray, h_prev: np.ndarray, C_prev: np.ndarray, w: tuple, ln: tuple
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """One step of the layer-normalised LSTM (forward only; torch layout ``w = (w_ih, w_hh, b_ih, b_hh)``).

    ``ln = (ln_ih, ln_hh, ln_c)``, each ``(weight, bias, eps)``: the two gate pre-activations are
    normalised separately and the cell state before its tanh.  The loop engine runs the same.
    """
    w_ih, w_hh, b_ih, b_hh = w
    pre = layer_normalize(affine(w_ih, x_t, b_ih), *ln[0]) + layer_normalize(affine(w_hh, h_prev, b_hh), *ln[1])
    a_i, a_f, a_g, a_o = np.split(pre, 4, axis=-1)
    i_t, f_t, C_tilde, o_t = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
    C_t = f_t * C_prev + i_t * C_tilde
    h_t = o_t * np.tanh(layer_normalize(C_t, *ln[2]))
    return h_t, C_t, dict(f_t=f_t, i_t=i_t, C_tilde=C_tilde, C_t=C_t, o_t=o_t)


# ----------------------------------------------------------------------------- a sequence

GATE_CACHE = {"i": "i_t", "f": "f_t", "g": "C_tilde", "o": "o_t"}  # torch gate name -> cache entry


def lstm_forward(x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, weight_ih: np.ndarray,
                 weight_hh: np.ndarray, bias_ih: np.ndarray | None = None, bias_hh: np.ndarray | None = None,
                 lengths: np.ndarray | None = None, rmask: np.ndarray | None = None,
                 layer_norm: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Tape]:
    """LSTM over a (B, T, I) batch in torch layout.  Returns ``(out (B,T,H), h_n, c_n, tape)``.

    ``layer_norm``: ``(ln_ih, ln_hh, ln_c)`` runs :func:`lstm_ln_step` instead (forward only).
    """
    dtype = float_dtype(x)
    x = np.asarray(x, dtype=dtype)
    batch, _, _ = x.shape
    hidden = np.asarray(weight_hh).shape[1]
    p = {k: v.astype(dtype) for k, v in torch_to_seed(weight_ih, weight_hh, bias_ih, bias_hh).items()}
    rmask = optional(rmask, dtype)
    if layer_norm is None:
        def step(x_t, s):
            h_t, C_t, cache = lstm_step(x_t, *s, p, rmask)
            return (h_t, C_t), cache
    else:
        if rmask is not None:
            raise ValueError("rmask: the layer-normalised reference LSTM runs without recurrent dropout")
        zeros = np.zeros(4 * hidden, dtype)
        w = tuple(np.asarray(v, dtype) if v is not None else zeros for v in (weight_ih, weight_hh, bias_ih, bias_hh))
        ln = tuple(tuple(optional(a, dtype) for a in (wt, b)) + (eps,) for wt, b, eps in layer_norm)

        def step(x_t, s):
            h_t, C_t, cache = lstm_ln_step(x_t, *s, w, ln)
            return (h_t, C_t), cache
    r = scan(step, x, (state(h0, batch, hidden, dtype), state(c0, batch, hidden, dtype)), lengths)
    tape = Tape("lstm", p, r.caches, r.mask, rmask, x, stack(r.caches, GATE_CACHE, (0, batch, hidden), dtype),
                states=dict(zip(("h", "c"), r.new_states, strict=True)), layer_norm=layer_norm is not None)
    return r.out, r.final[0], r.final[1], tape


def lstm_backward(tape: Tape, d_out: np.ndarray | None = None, dh_n: np.ndarray | None = None,
                  dc_n: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Backprop through time.  Gradients in torch layout (``weight_ih, weight_hh, bias_ih, bias_hh``),
    seed layout (``W_f, ..., b_f, ...``), ``x``, ``h0``, ``c0``, ``rmask`` (None without one) and the
    per-step totals ``dh``/``dc`` (T, B, H): ``dh[t] = dL/dh_t`` where ``h_t`` is the state after step t.
    """
    if tape.layer_norm:
        raise NotImplementedError("lstm_backward: the layer-normalised reference LSTM is forward only")
    p, rmask, x = tape.params, tape.rmask, tape.x
    batch, hidden, dtype = x.shape[0], p["W_f"].shape[0], x.dtype
    g = zero_grads(p, batch, hidden, dtype)

    def step_backward(d, s):
        dh_prev, dC_prev, dx_t, dC_t = lstm_step_backward(*d, s, p, g, rmask)
        return (dh_prev, dC_prev), dx_t, (dC_t,)

    d_final = (state(dh_n, batch, hidden, dtype), state(dc_n, batch, hidden, dtype))
    dx, (dh0, dc0), (dh, dc) = scan_backward(step_backward, tape, d_out, d_final)
    w_ih, w_hh, b, _ = seed_to_torch(g, hidden)
    return dict(g, weight_ih=w_ih, weight_hh=w_hh, bias_ih=b, bias_hh=b.copy(), x=dx, h0=dh0, c0=dc0,
                dh=dh, dc=dc, rmask=None if rmask is None else g["rmask"])


def lstm(x: np.ndarray, h0: np.ndarray | None, c0: np.ndarray | None, weight_ih: np.ndarray,
         weight_hh: np.ndarray, bias_ih: np.ndarray | None = None, bias_hh: np.ndarray | None = None,
         lengths: np.ndarray | None = None, rmask: np.ndarray | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward only: ``(out, h_n, c_n)``."""
    out, h_n, c_n, _ = lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, rmask)
    return out, h_n, c_n
