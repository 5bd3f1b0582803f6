"""Weight initializers with Keras names, applied to torch-layout recurrent weights.

Recurrent layers store ``weight_ih`` (G*H, I) and ``weight_hh`` (G*H, H); Keras stores the
transposes (``kernel`` (I, G*H), ``recurrent_kernel`` (H, G*H)).  Initializers here follow
Keras' definition on the Keras-shaped matrix, so fan-in/fan-out match Keras exactly.
"""

from __future__ import annotations

import math

import torch

INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "orthogonal",
                "identity", "zeros", "ones", "uniform", "normal")


def _fans(shape_keras: tuple[int, int]) -> tuple[int, int]:
    return shape_keras[0], shape_keras[1]


def init_(weight: torch.Tensor, name: str, generator: torch.Generator | None = None,
          gates: int = 1) -> torch.Tensor:
    """Fill a torch-layout weight ``(G*H, n_in)`` in place with the Keras initializer ``name``.

    ``identity`` and ``orthogonal`` act per gate block for recurrent matrices (``gates`` > 1
    applies them to each (H, H) block, as Keras' orthogonal does on the whole (H, G*H)).
    """
    if name not in INITIALIZERS:
        raise ValueError(f"initializer: expected one of {INITIALIZERS}, got {name!r}")
    out_f, in_f = weight.shape
    fan_in, fan_out = _fans((in_f, out_f))
    with torch.no_grad():
        if name == "glorot_uniform":
            lim = math.sqrt(6.0 / (fan_in + fan_out))
            weight.uniform_(-lim, lim, generator=generator)
        elif name == "glorot_normal":
            weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
        elif name == "he_uniform":
            lim = math.sqrt(6.0 / fan_in)
            weight.uniform_(-lim, lim, generator=generator)
        elif name == "he_normal":
            weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
        elif name == "orthogonal":
            _orthogonal_(weight, generator)
        elif name == "identity":
            weight.zero_()
            rows = out_f // gates
            for g in range(gates):
                n = min(rows, in_f)
                weight[g * rows:g * rows + n, :n] += torch.eye(n, dtype=weight.dtype)
        elif name == "zeros":
            weight.zero_()
        elif name == "ones":
            weight.fill_(1.0)
        elif name == "uniform":
            weight.uniform_(-0.05, 0.05, generator=generator)
        elif name == "normal":
            weight.normal_(0.0, 0.05, generator=generator)
    return weight


def _orthogonal_(weight: torch.Tensor, generator: torch.Generator | None) -> None:
    """Keras orthogonal on the (in, out) kernel: orthonormal rows or columns, whichever fit."""
    rows, cols = weight.shape[1], weight.shape[0]  # keras shape (in, out)
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.t()
    weight.copy_(q[:rows, :cols].t().to(weight.dtype))


def chrono_bias(units: int, max_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Chrono forget-gate bias (Tallec & Ollivier 2018): b_f = log(U[1, T_max - 1]).

    The input-gate bias is set to ``-b_f`` by the caller.  Gives characteristic forgetting
    times spread up to ``max_len`` steps, which is what long lags need.
    """
    if max_len < 3:
        raise ValueError(f"chrono_max_len: expected an integer >= 3, got {max_len!r}")
    u = torch.rand(units, generator=generator, dtype=torch.float64) * (max_len - 2) + 1.0
    return torch.log(u)
