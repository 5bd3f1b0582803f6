"""Optimizers by Keras name (``"adam"``) or as a spec object, built once parameters exist."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}
# what each option takes (torch's own limits): a bool, a number >= 0, or a number in [0, 1)
OPTION_KINDS = {"nesterov": "bool", "amsgrad": "bool", "centered": "bool", "momentum": ">=0",
                "weight_decay": ">=0", "epsilon": ">=0", "beta_1": "[0,1)", "beta_2": "[0,1)", "rho": ">=0"}
SPEC_KEYS = ("name", "learning_rate", "options")


def check_options(options: dict) -> None:
    """Each option's value against :data:`OPTION_KINDS` (a model file's optimizer is checked at load,
    not at its first step).  Names are checked by :class:`Optimizer`."""
    for name, value in options.items():
        kind = OPTION_KINDS.get(name)
        if kind == "bool":
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                kind is None or (value >= 0 if kind == ">=0" else 0 <= value < 1))
        if not ok:
            want = {"bool": "true or false", ">=0": "a number >= 0", "[0,1)": "a number in [0, 1)"}
            raise ValueError(f"optimizer option {name!r}: expected {want.get(kind, 'a number')}, got {value!r}")


@dataclass
class Optimizer:
    """A lazily built optimizer: ``Optimizer("sgd", learning_rate=0.1, momentum=0.9)``."""

    name: str = "adam"
    learning_rate: float | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {OPTIMIZERS} or a torch.optim.Optimizer, "
                             f"got {self.name!r}")
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LR[self.name]
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
            raise ValueError(f"learning_rate: expected a positive number, got {lr!r}")
        if not isinstance(self.options, dict):
            raise ValueError(f"optimizer options: expected a mapping of option to value, got {self.options!r}")
        allowed = {"sgd": {"momentum", "nesterov", "weight_decay"},
                   "adam": {"beta_1", "beta_2", "epsilon", "weight_decay", "amsgrad"},
                   "adamw": {"beta_1", "beta_2", "epsilon", "weight_decay", "amsgrad"},
                   "rmsprop": {"rho", "momentum", "epsilon", "weight_decay", "centered"}}[self.name]
        for k in self.options:
            if k not in allowed:
                raise ValueError(f"optimizer option {k!r}: not accepted by {self.name}; "
                                 f"expected one of {sorted(allowed)}")

    def build(self, params) -> torch.optim.Optimizer:
        o, lr = dict(self.options), float(self.learning_rate)
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=o.get("momentum", 0.0),
                                   nesterov=o.get("nesterov", False), weight_decay=o.get("weight_decay", 0.0))
        if self.name == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr, alpha=o.get("rho", 0.9), eps=o.get("epsilon", 1e-7),
                                       momentum=o.get("momentum", 0.0), centered=o.get("centered", False),
                                       weight_decay=o.get("weight_decay", 0.0))
        cls = torch.optim.Adam if self.name == "adam" else torch.optim.AdamW
        wd = o.get("weight_decay", 0.0 if self.name == "adam" else 0.004)
        return cls(params, lr=lr, betas=(o.get("beta_1", 0.9), o.get("beta_2", 0.999)),
                   eps=o.get("epsilon", 1e-7), weight_decay=wd, amsgrad=o.get("amsgrad", False))

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.learning_rate, "options": dict(self.options)}


def get(spec, learning_rate: float | None = None, **options) -> Optimizer:
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, dict):
        unknown = [k for k in spec if k not in SPEC_KEYS]
        if unknown:
            raise ValueError(f"optimizer: unknown key {unknown[0]!r}; expected one of {', '.join(SPEC_KEYS)}")
        return Optimizer(**spec)
    if isinstance(spec, str):
        return Optimizer(spec.lower(), learning_rate, options)
    raise ValueError(f"optimizer: expected one of {OPTIMIZERS} or lstmlab.optim.Optimizer, got {spec!r}")


def SGD(learning_rate: float = 0.01, **kw) -> Optimizer:  # noqa: N802 - Keras names
    return Optimizer("sgd", learning_rate, kw)


def Adam(learning_rate: float = 1e-3, **kw) -> Optimizer:  # noqa: N802
    return Optimizer("adam", learning_rate, kw)


def AdamW(learning_rate: float = 1e-3, **kw) -> Optimizer:  # noqa: N802
    return Optimizer("adamw", learning_rate, kw)


def RMSprop(learning_rate: float = 1e-3, **kw) -> Optimizer:  # noqa: N802
    return Optimizer("rmsprop", learning_rate, kw)
