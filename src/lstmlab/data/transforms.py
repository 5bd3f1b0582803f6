"""Invertible target transforms for forecasting: ``log``, ``diff``, ``seasonal-diff`` and combinations.

A trending or seasonal series is hard for an LSTM fitted on its raw values: the test values lie
outside everything training saw, and a tanh network does not extrapolate. Differencing turns
"the level" into "the change" (``diff``: ``x[t] - x[t-1]``; ``seasonal-diff``: ``x[t] - x[t-m]``
for season length ``m``), ``log`` turns growth by a factor into growth by a step. A spec is
written ``"log+seasonal-diff"``; the steps always apply in the order log, seasonal-diff, diff
(the two differences commute). Predictions are turned back into original units with
:meth:`Transform.invert`, which adds the known history (and, for a horizon longer than the lag,
the model's own earlier steps) back in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import DataError, suggest

__all__ = ["Transform", "STEPS", "candidates"]

STEPS = ("log", "seasonal-diff", "diff")
_ALIASES = {"seasonal_diff": "seasonal-diff", "seasonaldiff": "seasonal-diff", "sdiff": "seasonal-diff",
            "difference": "diff", "differencing": "diff", "ln": "log"}


@dataclass(frozen=True)
class Transform:
    """A chain of steps (in canonical order) and the seasonal ``period`` that ``seasonal-diff`` uses."""

    steps: tuple[str, ...] = ()
    period: int | None = None

    @classmethod
    def parse(cls, spec: str, period: int | None = None, option: str = "transform") -> Transform:
        """``"none"``, ``"log"``, ``"diff"``, ``"seasonal-diff"`` or a ``+``-joined combination."""
        if not isinstance(spec, str) or not spec.strip():
            raise DataError(f"option {option!r}: expected 'none', 'auto', 'log', 'diff', 'seasonal-diff' or a "
                            f"combination such as 'log+diff', got {spec!r}")
        tokens = [t.strip().lower().replace(" ", "-") for t in spec.split("+")]
        tokens = [_ALIASES.get(t, t) for t in tokens if t != "none"]
        for t in tokens:
            if t not in STEPS:
                raise DataError(f"option {option!r}: unknown step {t!r} in {spec!r}; steps are none, "
                                + ", ".join(STEPS) + suggest(t, STEPS + ("none", "auto")))
        if len(set(tokens)) != len(tokens):
            raise DataError(f"option {option!r}: {spec!r} names a step twice")
        if "seasonal-diff" in tokens and (period is None or period < 2):
            raise DataError(f"option {option!r}: 'seasonal-diff' needs a season length; set period = m "
                            f"(e.g. 12 for monthly data); the time column gives {period!r}")
        return cls(tuple(s for s in STEPS if s in tokens), int(period) if period else None)

    @property
    def name(self) -> str:
        """``"none"`` or the steps joined by ``+``."""
        return "+".join(self.steps) if self.steps else "none"

    def lags(self) -> list[int]:
        """The lag of each step (0 for log)."""
        return [0 if s == "log" else 1 if s == "diff" else int(self.period or 0) for s in self.steps]

    @property
    def lag(self) -> int:
        """Leading rows without a transformed value."""
        return sum(self.lags())

    def first_invalid(self, values: np.ndarray) -> tuple[int, int] | None:
        """``(row, column)`` of the first value ``log`` cannot take (<= 0), else None."""
        if "log" not in self.steps:
            return None
        bad = np.argwhere(~(np.asarray(values) > 0))
        return (int(bad[0][0]), int(bad[0][1])) if len(bad) else None

    def stages(self, values: np.ndarray) -> list[np.ndarray]:
        """``[x, step1(x), step2(step1(x)), ...]``, each ``(rows, k)`` with NaN where undefined."""
        out = [np.asarray(values, dtype=np.float64).reshape(len(values), -1)]
        for step, lag in zip(self.steps, self.lags()):
            prev = out[-1]
            if step == "log":
                with np.errstate(divide="ignore", invalid="ignore"):
                    out.append(np.log(prev))
                continue
            cur = np.full_like(prev, np.nan)
            cur[lag:] = prev[lag:] - prev[:-lag]
            out.append(cur)
        return out

    def forward(self, values: np.ndarray) -> np.ndarray:
        """The transformed series (first :attr:`lag` rows NaN)."""
        return self.stages(values)[-1]

    def invert(self, pred: np.ndarray, anchors: np.ndarray, stages: list[np.ndarray]) -> np.ndarray:
        """Transformed predictions ``(N, h, k)`` for rows ``anchor+1 .. anchor+h`` -> original units.

        ``anchors[i]`` is the last row window ``i`` saw; ``stages`` come from :meth:`stages` on the
        whole series (only rows up to each anchor are read).
        """
        cur = np.asarray(pred, dtype=np.float64)
        anchors = np.asarray(anchors, dtype=np.int64)
        h = cur.shape[1]
        for level in reversed(range(len(self.steps))):
            if self.steps[level] == "log":
                cur = np.exp(np.clip(cur, -700, 700))
                continue
            lag = self.lags()[level]
            out = np.empty_like(cur)
            for j in range(h):
                base = out[:, j - lag] if j >= lag else stages[level][anchors + 1 + j - lag]
                out[:, j] = cur[:, j] + base
            cur = out
        return cur

    def to_dict(self) -> dict:
        """JSON-friendly description."""
        return {"name": self.name, "steps": list(self.steps), "period": self.period, "lag": self.lag}


def candidates(period: int | None, positive: bool) -> list[Transform]:
    """The transforms ``auto`` tries, simplest first (log only for positive series, seasonal with m >= 2)."""
    specs = ["none", "diff"] + (["log", "log+diff"] if positive else [])
    if period is not None and period >= 2:
        specs += ["seasonal-diff"] + (["log+seasonal-diff"] if positive else []) + ["seasonal-diff+diff"] + (
            ["log+seasonal-diff+diff"] if positive else [])
    return [Transform.parse(s, period) for s in specs]
