"""Central finite differences: the check for every hand-derived gradient in this package."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def numerical_grad(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dF/dx by central differences, ``(f(x + eps) - f(x - eps)) / (2 eps)`` per entry.

    ``x`` is perturbed in place (and restored); ``f`` must read it.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_grad needs a contiguous array it can perturb in place")
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        f_plus = float(f())
        flat[k] = old - eps
        f_minus = float(f())
        flat[k] = old
        gflat[k] = (f_plus - f_minus) / (2 * eps)
    return grad


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / max(1, |a|, |b|)`` (absolute for small values, relative for large)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))))


def gradcheck(f: Callable[[], float], inputs: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray],
              eps: float = 1e-6, tol: float = 1e-6) -> dict[str, float]:
    """Compare analytic ``grads[name]`` with central differences of ``f`` w.r.t. ``inputs[name]``.

    Returns the per-name :func:`max_error`; raises AssertionError when one exceeds ``tol``.
    """
    errors = {name: max_error(grads[name], numerical_grad(f, x, eps)) for name, x in inputs.items()}
    bad = {k: v for k, v in errors.items() if not v <= tol}
    if bad:
        raise AssertionError(f"gradient mismatch (tol {tol:g}): {bad}")
    return errors
