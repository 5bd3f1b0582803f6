"""Look inside a model and a run: figures, a self-contained HTML report, TensorBoard events.

* :func:`write_report` - ``RUN_DIR/report.html`` (also ``lstmlab report RUN_DIR``)
* :mod:`lstmlab.report.figures` - attention, gate heat maps, gradient flow, training curves
* :class:`TensorBoardWriter` - scalars, histograms and figures for TensorBoard

Heavy imports (matplotlib, torch, tensorboard) happen on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_report", "build_html", "TensorBoardWriter"]


def write_report(run_dir, out=None, examples: int = 3):
    """Write the HTML report of ``run_dir``; see :func:`lstmlab.report.html.write_report`."""
    from .html import write_report as _write

    return _write(run_dir, out=out, examples=examples)


def build_html(run_dir, examples: int = 3) -> str:
    """The HTML report of ``run_dir`` as a string."""
    from .html import build_html as _build

    return _build(run_dir, examples=examples)


def __getattr__(name: str) -> Any:
    if name == "TensorBoardWriter":
        from .tensorboard import TensorBoardWriter

        return TensorBoardWriter
    raise AttributeError(f"module 'lstmlab.report' has no attribute {name!r}")
