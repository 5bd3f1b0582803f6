"""Detectors: thresholds and the small pure functions that turn numbers into findings.

All thresholds live here so the docs, the report and the monitor quote the same values.

Temporal decay of one layer direction is measured on ``n_t = ||dL/dh_t||`` (norm over the batch
and the units), in the order the layer *processes* time (a backwards layer's first step is the
last position of the sequence):

* ``log10_ratio = log10(n_first / n_last)``: how many decades the gradient loses (negative) or
  gains (positive) on its way back from the last processed step to the first.
* ``rate = -slope`` of a least-squares line through ``log10 n_t`` against ``t``: decades lost
  (negative) or gained (positive) per step back in time; ``1 / |rate|`` is the number of steps
  over which the gradient changes tenfold.

For an LSTM the same is computed on ``||dL/dc_t||`` and the larger of the two ratios is used
(see :func:`combine`: the cell state is the LSTM's long-term memory path).

Verdict per direction (the report's verdict is the worst over directions):

* **exploding** if any loss / gradient / tap is non-finite, or ``log10_ratio > +3``
  (``EXPLODING_RATIO = 1e3``).
* **vanishing** if ``log10_ratio < -3`` (``VANISHING_RATIO = 1e-3``).
* **healthy** otherwise.

Why three decades: the gradient a weight receives from a dependency at lag ``T`` is scaled by
``n_1 / n_T`` relative to the short-range terms.  At 1e-3 it is far below the relative noise of a
minibatch gradient (``~1/sqrt(batch)``, 3-20% for batches of 32-1024), so the long-range
dependency cannot be learned in practice (Bengio et al. 1994; Hochreiter 1991).  A forget-biased
LSTM over 20-100 steps typically keeps ``n_1 / n_T`` within 1e-2..1, while a tanh RNN falls to
1e-5..1e-10 over 100 steps, so 1e-3 separates the two cleanly.  Symmetrically, a growth of
1e3 means the oldest steps dominate the update by three orders of magnitude: an unclipped step
leaves the region where the linearisation holds (Pascanu et al. 2013), which is exactly what
``clipnorm`` guards against.
"""

from __future__ import annotations

import math

import numpy as np

VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
SATURATION_HIGH = 0.5        # share of saturated units of a gate that is worth a warning
SLOW_LOSS_STEPS = 100        # GradientMonitor: look at the loss after this many steps ...
SLOW_LOSS_MIN_DROP = 0.05    # ... and complain when it fell by less than 5% from its start
PARAM_GROWTH_WINDOW = 10     # GradientMonitor: samples in the parameter-norm window ...
PARAM_GROWTH_RATIO = 2.0     # ... over which a (nearly) monotone doubling is "growing without bound"
LOG10_FLOOR = -38.0          # log10 of norms is clamped here (float32's smallest normal ~1e-38)

THRESHOLDS = {
    "vanishing_ratio": VANISHING_RATIO,
    "exploding_ratio": EXPLODING_RATIO,
    "saturation_high": SATURATION_HIGH,
    "slow_loss_steps": SLOW_LOSS_STEPS,
    "slow_loss_min_drop": SLOW_LOSS_MIN_DROP,
    "param_growth_window": PARAM_GROWTH_WINDOW,
    "param_growth_ratio": PARAM_GROWTH_RATIO,
}

VERDICTS = ("healthy", "vanishing", "exploding")


def decay_stats(norms: np.ndarray | None, reverse: bool = False) -> dict:
    """Decay statistics of one ``||dL/dh_t||`` profile given on the original time axis.

    ``reverse=True`` for a layer that processes time backwards.  Returns a dict with
    ``log10_ratio``, ``rate``, ``horizon``, ``first``, ``last``, ``steps`` and ``finite``
    (``log10_ratio``/``rate`` are None when no gradient reached the layer or it is non-finite).
    """
    out = {"log10_ratio": None, "rate": None, "horizon": None, "first": None, "last": None,
           "steps": 0, "finite": True}
    if norms is None or len(norms) == 0:
        return out
    p = np.asarray(norms, dtype=np.float64)
    p = p[::-1] if reverse else p
    out["steps"] = int(len(p))
    if not np.all(np.isfinite(p)):
        out["finite"] = False
        return out
    nz = np.nonzero(p > 0)[0]
    if len(nz) == 0:
        return out
    last = int(nz[-1])  # the last processed step that receives a gradient (normally T-1)
    p = p[:last + 1]
    logp = np.maximum(np.log10(np.maximum(p, 1e-300)), LOG10_FLOOR)
    out["first"], out["last"] = float(p[0]), float(p[-1])
    out["log10_ratio"] = float(logp[0] - logp[-1])
    if len(p) >= 2:
        t = np.arange(len(p), dtype=np.float64)
        slope = float(np.polyfit(t, logp, 1)[0])
        out["rate"] = -slope
        out["horizon"] = (1.0 / abs(slope)) if abs(slope) > 1e-12 else math.inf
    else:
        out["rate"] = 0.0
    return out


def combine(hidden: dict, cell: dict | None = None) -> dict:
    """Decay of one direction: the ``dL/dh`` stats plus, for an LSTM, the ``dL/dc`` stats under
    ``"cell"``; ``"effective"`` is the ratio the verdict uses.

    For an LSTM the cell state is the long-term memory path (the constant error carousel): what
    the cell writes at step 1 is learned from ``dL/dc_1``, so the error that reaches step 1 is the
    larger of the two.  An LSTM is therefore called vanishing only when *both* profiles fall
    below the threshold, and exploding when either grows above it (the larger ratio decides
    both ways).
    """
    out = dict(hidden)
    out["cell"] = cell
    ratios = [s["log10_ratio"] for s in (hidden, cell) if s and s.get("log10_ratio") is not None]
    out["effective"] = max(ratios) if ratios else None
    out["finite"] = bool(hidden.get("finite", True) and (cell is None or cell.get("finite", True)))
    return out


def direction_verdict(stats: dict) -> str:
    """``healthy`` / ``vanishing`` / ``exploding`` for one direction's :func:`decay_stats`
    (or :func:`combine`, whose ``effective`` ratio is used when present)."""
    if not stats.get("finite", True):
        return "exploding"
    r = stats.get("effective", stats.get("log10_ratio"))
    if r is None:
        return "healthy"
    if r > math.log10(EXPLODING_RATIO):
        return "exploding"
    if r < math.log10(VANISHING_RATIO):
        return "vanishing"
    return "healthy"


def overall_verdict(verdicts: list[str], nonfinite: bool = False) -> str:
    """Worst of the directions' verdicts: exploding > vanishing > healthy."""
    if nonfinite or "exploding" in verdicts:
        return "exploding"
    if "vanishing" in verdicts:
        return "vanishing"
    return "healthy"


def slow_loss(losses: list[float], steps: int = SLOW_LOSS_STEPS,
              min_drop: float = SLOW_LOSS_MIN_DROP) -> tuple[bool, float]:
    """Has the loss fallen by less than ``min_drop`` (relative) after ``steps`` steps?

    Compares the mean of the first quarter of the first ``steps`` losses with the mean of their
    last quarter (finite values only; quarters average out minibatch noise).  Returns
    ``(is_slow, relative_drop)``; ``is_slow`` is False until ``steps`` losses exist.
    """
    vals = [v for v in losses[:steps] if math.isfinite(v)]
    if len(losses) < steps or len(vals) < 2:
        return False, 0.0
    w = max(1, len(vals) // 4)
    start = float(np.mean(vals[:w]))
    recent = float(np.mean(vals[-w:]))
    if start <= 0:
        return False, 0.0
    drop = (start - recent) / start
    return drop < min_drop, drop


def param_growth(norms: list[float], window: int = PARAM_GROWTH_WINDOW,
                 ratio: float = PARAM_GROWTH_RATIO) -> tuple[bool, float]:
    """Are parameter norms growing without bound over the last ``window`` samples?

    True when the norm grew by at least ``ratio`` over the window and at least 80% of the
    sample-to-sample changes in it were increases.  Returns ``(growing, growth_ratio)``.
    """
    if len(norms) < window:
        return False, 1.0
    w = np.asarray(norms[-window:], dtype=np.float64)
    if not np.all(np.isfinite(w)) or w[0] <= 0:
        return False, 1.0
    growth = float(w[-1] / w[0])
    ups = float(np.mean(np.diff(w) > 0))
    return bool(growth >= ratio and ups >= 0.8), growth
