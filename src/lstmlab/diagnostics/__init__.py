"""Gradient diagnostics: see vanishing / exploding gradients and get concrete fixes.

``diagnose(model, x, y)`` -> :class:`GradientReport` (verdict, per-step ``||dL/dh_t||``, gate
saturation, norms, remedies); :class:`GradientMonitor` watches (and can fix) training;
``plot_history`` draws loss and gradient health over a run.  Thresholds:
:mod:`lstmlab.diagnostics.detectors` and ``docs/diagnostics.md``.
"""

from .diagnose import diagnose
from .monitor import GradientMonitor
from .plots import plot_history
from .report import GradientReport

__all__ = ["diagnose", "GradientReport", "GradientMonitor", "plot_history"]
