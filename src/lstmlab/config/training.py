"""``[train]``: the training settings, each declared once with its type, default and constraint."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from .. import losses, metrics, optim
from ..diagnostics import GradientMonitor
from .schema import POSITIVE, Check, Ctx, Setting, at_least, defaults, join, kinds_from_default, one_of, schema, setting

__all__ = ["Train", "EarlyStopping", "TRAIN_DEFAULTS", "EARLY_STOPPING_DEFAULTS", "DEVICES", "validate_train",
           "monitor_settings"]

DEVICES = ("cpu", "cuda")
_AN_OPTION_VALUE = Check("a finite number or a boolean", lambda v: isinstance(v, (bool, int, float)))


@dataclass(frozen=True)
class EarlyStopping:
    """``[train.early_stopping]`` (or ``early_stopping = 5``: a patience; ``true``: these defaults)."""

    patience: int = setting(5, at_least(0, "an integer"))
    monitor: str | None = setting(None)          # None: train.checkpoint_monitor
    min_delta: float = setting(0.0, at_least(0))  # an improvement smaller than this does not count
    restore_best_weights: bool = setting(True)


@dataclass(frozen=True)
class Train:
    """``[train]``."""

    epochs: int = setting(10, POSITIVE)
    batch_size: int = setting(32, POSITIVE)
    optimizer: str = setting("adam")                # one of lstmlab.optim.OPTIMIZERS (any case)
    optimizer_options: dict = setting({})           # keyword options of that optimizer
    learning_rate: float | None = setting(None, POSITIVE)  # None: the optimizer's default (adam 1e-3)
    loss: str | None = setting(None)                # None: from the data (mse / sparse_categorical_crossentropy)
    metrics: list | str | None = setting(None)      # None: from the data (mae / accuracy)
    clipnorm: float | None = setting(None, POSITIVE)
    clipvalue: float | None = setting(None, POSITIVE)
    global_clipnorm: float | None = setting(None, POSITIVE)
    weight_decay: float | None = setting(None, at_least(0))
    seed: int = setting(0)
    tbptt: int | None = setting(None, POSITIVE)
    shuffle: bool = setting(True)
    checkpoint_monitor: str | None = setting(None)  # None: val_loss when there is validation data, else loss
    early_stopping: int | EarlyStopping | bool | None = setting(None)  # a patience, a table or true
    monitor: dict | bool | None = setting(None)     # GradientMonitor options, see monitor_settings()
    verbose: int = setting(1)
    checkpoint_every: int | None = setting(None, POSITIVE)  # also write checkpoints/last.lstmlab every N steps
    device: str = setting("cpu", one_of(*DEVICES))  # under torchrun: cuda:LOCAL_RANK, NCCL


TRAIN_DEFAULTS: dict[str, Any] = defaults(Train)
EARLY_STOPPING_DEFAULTS: dict[str, Any] = defaults(EarlyStopping)


def monitor_settings() -> dict[str, Setting]:
    """``[train.monitor]``: ``enabled`` plus every GradientMonitor argument, typed by its default
    (``every`` left out: chosen from the number of steps per epoch).  The monitor's constructor
    owns the constraints; :func:`validate_train` runs it."""
    out = {"enabled": Setting("enabled", ("bool",), True)}
    for p in list(inspect.signature(GradientMonitor.__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "log_dir":
            continue
        out[p.name] = Setting(p.name, kinds_from_default(p.default), p.default)
    out["every"] = Setting("every", ("int",), None, Check("a positive integer", lambda v: v > 0))
    return out


def validate_train(ctx: Ctx, train: dict) -> dict:
    """The ``[train]`` table with every default filled in and names normalised."""
    out = ctx.check_table("train", train, schema(Train))
    out["optimizer"] = ctx.choose("train.optimizer", out["optimizer"], optim.OPTIMIZERS, "optimizer")
    for k, v in out["optimizer_options"].items():
        ctx.check_value(join("train.optimizer_options", k), v, None, _AN_OPTION_VALUE)
    try:
        optim.Optimizer(out["optimizer"], out["learning_rate"], dict(out["optimizer_options"]))
    except ValueError as exc:
        raise ctx.error("train.optimizer_options", str(exc)) from None
    if out["learning_rate"] is None:
        out["learning_rate"] = optim.DEFAULT_LR[out["optimizer"]]
    if out["loss"] is not None:
        ctx.choose("train.loss", out["loss"], losses.LOSSES, "loss", fold_case=False)
    if isinstance(out["metrics"], str):
        out["metrics"] = [out["metrics"]]
    for i, m in enumerate(out["metrics"] or []):
        if not isinstance(m, str):
            ctx.check_type(f"train.metrics[{i}]", m, ("str",))
        ctx.choose(f"train.metrics[{i}]", m, metrics.METRICS, "metric", fold_case=False)
    out["early_stopping"] = _early_stopping(ctx, out["early_stopping"])
    out["monitor"] = _monitor(ctx, out["monitor"])
    return out


def _early_stopping(ctx: Ctx, es: Any) -> dict | None:
    """``None``/``false``: off; an integer: that patience; ``true``: the defaults; a checked table."""
    if es is None or es is False:
        return None
    if es is True:
        return defaults(EarlyStopping)
    if isinstance(es, int):
        if es < 0:
            raise ctx.error("train.early_stopping", f"expected a patience >= 0, got {es}")
        return defaults(EarlyStopping) | {"patience": es}
    return es  # a table, checked by the schema


def _monitor(ctx: Ctx, mon: Any) -> dict:
    """The GradientMonitor options (``false``: disabled); its constructor checks their values."""
    settings = monitor_settings()
    table = {} if mon in (None, True, False) else mon
    out = ctx.check_table("train.monitor", table, settings)
    if mon is False:
        out["enabled"] = False
    kwargs = {k: v for k, v in out.items() if k != "enabled"} | {"every": out["every"] or 1}
    try:
        GradientMonitor(**kwargs)
    except ValueError as exc:
        arg, _, msg = str(exc).partition(": ")
        raise (ctx.error(f"train.monitor.{arg}", msg) if arg in settings and msg
               else ctx.error("train.monitor", str(exc))) from None
    return out
