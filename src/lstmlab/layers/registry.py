"""Layer classes by name, for configs and model files: ``serialize`` / ``deserialize``.

The package fills :data:`LAYERS` (``lstmlab.layers``); a user's own ``Layer`` subclass joins
with :func:`register_layer` and then loads with ``load_model`` like the built-in ones.
"""

from __future__ import annotations

from .base import Layer

LAYERS: dict[str, type[Layer]] = {}


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Make a Layer subclass known to ``deserialize`` (and so to ``load_model``)."""
    LAYERS[cls.__name__] = cls
    return cls


def serialize(layer: Layer) -> dict:
    """``{"class_name": ..., "config": layer.get_config()}``."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec: dict) -> Layer:
    """The layer ``serialize`` described; ValueError naming the class when it is not registered."""
    name = spec.get("class_name")
    if name not in LAYERS:
        raise ValueError(f"layer class_name: expected one of {sorted(LAYERS)}, got {name!r}")
    return LAYERS[name].from_config(dict(spec.get("config", {})))
