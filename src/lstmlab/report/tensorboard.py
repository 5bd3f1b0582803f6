"""A small TensorBoard writer for lstmlab runs, over ``torch.utils.tensorboard.SummaryWriter``.

Tags it writes::

    train/<metric>, val/<metric>          scalars per epoch (loss, accuracy, ...)   log_epoch
    gradients/decay, gradients/<k>         GradientReport summary (decay, norms)     log_gradients
    gradients/verdict                      0 healthy, 1 vanishing, 2 exploding, 3 nan
    gradients/decay/<direction>            log10 ||dL/dh_1|| / ||dL/dh_T|| per direction
    grad_norm/<layer>/<block>              per-layer (and per gate block) gradient norms
    weights/<param>, grads/<param>         histograms of every parameter and its gradient
    <tag>                                  figures as images                         log_figure

Use it as a context manager or call :meth:`close`.  ``tensorboard --logdir RUN_DIR/tb`` shows it.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["TensorBoardWriter", "VERDICT_CODES"]

VERDICT_CODES = {"healthy": 0, "vanishing": 1, "exploding": 2, "nan": 3}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


class TensorBoardWriter:
    """Scalars, histograms and figures for one run directory's ``tb/`` folder.

    Args:
        log_dir: where the event files go (created).
        purge_step: on resume, drop events at or after this step (SummaryWriter semantics).
    """

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
        self.log_dir = os.fspath(log_dir)
        self.writer = SummaryWriter(log_dir=self.log_dir, purge_step=purge_step)

    # --- scalars ----------------------------------------------------------------------------------
    def log_scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> int:
        """Write every finite number of ``values`` as ``prefix + key``; returns how many were written."""
        n = 0
        for k, v in values.items():
            if _finite(v):
                self.writer.add_scalar(f"{prefix}{k}", float(v), step)
                n += 1
        return n

    def log_epoch(self, epoch: int, logs: Mapping[str, Any]) -> None:
        """Keras-style epoch logs: ``val_x`` -> ``val/x``, everything else -> ``train/x``."""
        for k, v in logs.items():
            if _finite(v):
                tag = f"val/{k[4:]}" if k.startswith("val_") else f"train/{k}"
                self.writer.add_scalar(tag, float(v), epoch)

    def log_gradients(self, report, step: int | None = None) -> None:
        """Gradient health of a GradientReport (or its ``summary()`` / a gradient_health record):
        decay, verdict code, loss and global norms, decay per direction and, from a report,
        per-layer gradient norms by gate block."""
        if isinstance(report, Mapping):
            summary, grad_norms = dict(report), report.get("grad_norms")
        else:
            summary, grad_norms = report.summary(), getattr(report, "grad_norms", None)
        step = int(step if step is not None else (summary.get("step") or 0))
        for k in ("decay", "grad_norm", "param_norm", "saturation", "loss"):
            if _finite(summary.get(k)):
                self.writer.add_scalar(f"gradients/{k}", float(summary[k]), step)
        for k, v in summary.items():
            if k.startswith("decay/") and _finite(v):
                self.writer.add_scalar(f"gradients/{k}", float(v), step)
        verdict = summary.get("verdict")
        if verdict in VERDICT_CODES:
            self.writer.add_scalar("gradients/verdict", VERDICT_CODES[verdict], step)
        if isinstance(grad_norms, Mapping):
            for layer, blocks in grad_norms.items():
                if not isinstance(blocks, Mapping):
                    continue
                for block, v in blocks.items():
                    if _finite(v):
                        self.writer.add_scalar(f"grad_norm/{layer}/{block}", float(v), step)

    # --- histograms -------------------------------------------------------------------------------
    def log_histograms(self, model, step: int, grads: bool = True) -> int:
        """Histograms of every parameter (``weights/<name>``) and its gradient (``grads/<name>``,
        when present).  Non-finite values are dropped.  Returns the number of histograms."""
        n = 0
        for name, p in model.named_parameters():
            tag = name.replace(".", "/")
            items = [("weights", p.detach())]
            if grads and p.grad is not None:
                items.append(("grads", p.grad.detach()))
            for kind, t in items:
                v = t.float().cpu().numpy().reshape(-1)
                v = v[np.isfinite(v)]
                if v.size:
                    self.writer.add_histogram(f"{kind}/{tag}", v, step)
                    n += 1
        return n

    # --- figures ----------------------------------------------------------------------------------
    def log_figure(self, tag: str, fig, step: int, dpi: int = 80) -> None:
        """A matplotlib figure as an image (rendered with Agg; the figure is left open)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
        old = fig.dpi
        fig.set_dpi(dpi)
        canvas.draw()
        img = np.asarray(canvas.buffer_rgba())[..., :3].copy()
        fig.set_dpi(old)
        self.writer.add_image(tag, img, step, dataformats="HWC")

    # --- lifecycle --------------------------------------------------------------------------------
    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
