"""``[model]``: layer specs typed by each layer's constructor signature; sizes taken from the data;
layers built with errors naming ``model.layers[i]``."""

from __future__ import annotations

import inspect
import os
from typing import Any

from .. import cells
from ..layers import LAYERS, Bidirectional, RNNLayer, deserialize
from .schema import Ctx, kinds_from_default, suggest

__all__ = ["validate_model", "default_layers", "resolve_layers", "build_layers", "DTYPES"]

DTYPES = ("float32", "float64")
MODEL_KEYS = ("layers", "name", "dtype", "ensemble")
ENSEMBLE_KEYS = {"members": ("int",), "augment": ("number",), "crop": ("number",), "views": ("int",)}
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")
_INT_ARGS = ("units", "input_dim", "output_dim")           # required integers
_OPTIONAL_INT_ARGS = ("input_size", "seed", "chrono_max_len")  # None by default, else an integer


def layer_params(cls) -> dict[str, Any]:
    """Constructor arguments of a layer class (GRU/SimpleRNN forward **kwargs to RNNLayer)."""
    params: dict[str, Any] = {}
    for klass in (cls, RNNLayer) if issubclass(cls, RNNLayer) else (cls,):
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            params.setdefault(p.name, p.default)
    if issubclass(cls, RNNLayer):
        cell = cells.get(cls.cell)
        drop = (() if cell.chrono else ("unit_forget_bias", "chrono_max_len")) + (
            () if cell.layer_norm else ("layer_norm",))
        for k in drop:
            params.pop(k, None)
    return params


def _arg_kinds(name: str, default: Any) -> tuple[str, ...] | None:
    if default is inspect.Parameter.empty and name in _INT_ARGS:
        return ("int",)
    if default is None and name in _OPTIONAL_INT_ARGS:
        return ("int", "none")
    kinds = kinds_from_default(default)
    return kinds + ("none",) if kinds is not None and default is None else kinds


def _layer_type(ctx: Ctx, key: str, spec: Any) -> str:
    ctx.check_type(key, spec, ("table",))
    if "type" not in spec:
        raise ctx.error(f"{key}.type", f"missing; expected one of {', '.join(LAYERS)}")
    ctx.check_type(f"{key}.type", spec["type"], ("str",))
    name = spec["type"]
    if name in LAYERS:
        return name
    low = {n.lower(): n for n in LAYERS}
    if name.lower() in low:
        return low[name.lower()]
    raise ctx.error(f"{key}.type", f"unknown layer {name!r}{suggest(name, LAYERS)} (layers: {', '.join(LAYERS)})")


def _validate_layer(ctx: Ctx, key: str, spec: Any, allow_auto_units: bool) -> dict:
    """One layer table: known arguments of the right type, defaults filled in (nesting is bounded by
    :func:`~lstmlab.config.schema.check_tree`, so the Bidirectional recursion is too)."""
    name = _layer_type(ctx, key, spec)
    params = layer_params(LAYERS[name])
    out: dict[str, Any] = {"type": name}
    for k, v in spec.items():
        if k == "type":
            continue
        if k not in params:
            raise ctx.unknown(key, k, ["type"] + list(params))
        if name == "Bidirectional" and k in ("layer", "backward_layer"):
            out[k] = _validate_layer(ctx, f"{key}.{k}", v, False)
            continue
        ctx.check_value(f"{key}.{k}", v, _arg_kinds(k, params[k]))
        out[k] = v
    for k, default in params.items():
        if k in out:
            continue
        if default is not inspect.Parameter.empty:
            if default is not None and not isinstance(default, (dict, list)):
                out[k] = default  # defaults filled in, so the resolved config says everything
            continue
        if (k == "units" and name == "Dense" and allow_auto_units) or (k == "input_dim" and name == "Embedding"):
            continue  # sized from the data when the model is built
        if not (k == "layer" and name == "Bidirectional"):
            raise ctx.error(f"{key}.{k}", f"missing; a {name} layer needs it")
    if name == "Bidirectional" and "layer" not in out:
        raise ctx.error(f"{key}.layer", 'missing; e.g. layer = {type = "LSTM", units = 32}')
    return out


def validate_model(ctx: Ctx, model: dict) -> dict:
    """The ``[model]`` table: ``layers`` (None: chosen from the data), ``name``, ``dtype``."""
    for k in model:
        if k not in MODEL_KEYS:
            raise ctx.unknown("model", k, MODEL_KEYS)
    out: dict[str, Any] = {"name": model.get("name", "sequential"), "dtype": model.get("dtype", "float32")}
    ctx.check_type("model.name", out["name"], ("str",))
    ctx.check_type("model.dtype", out["dtype"], ("str",))
    if out["dtype"] not in DTYPES:
        raise ctx.error("model.dtype", f"expected 'float32' or 'float64', got {out['dtype']!r}")
    out["ensemble"] = _validate_ensemble(ctx, model.get("ensemble"))
    layers = model.get("layers")
    if layers is None:
        out["layers"] = None  # a default model is chosen from the data
        return out
    ctx.check_type("model.layers", layers, ("list",))
    if not layers:
        raise ctx.error("model.layers", "expected at least one layer, got an empty array")
    out["layers"] = [_validate_layer(ctx, f"model.layers[{i}]", spec, i == len(layers) - 1)
                     for i, spec in enumerate(layers)]
    for i, spec in enumerate(out["layers"][1:], start=1):
        if spec["type"] == "Embedding":
            raise ctx.error(f"model.layers[{i}].type", "an Embedding layer must come first")
    return out


def _validate_ensemble(ctx: Ctx, ens: Any) -> dict | None:
    """``[model] ensemble = {members = 4, augment = 0.9, crop = 0.9, views = 5}`` (lstmlab.Ensemble's
    arguments): the layers become the members of one Ensemble."""
    if ens is None or ens is False:
        return None
    if ens is True:
        return {}
    ctx.check_type("model.ensemble", ens, ("table",))
    for k, v in ens.items():
        if k not in ENSEMBLE_KEYS:
            raise ctx.unknown("model.ensemble", k, list(ENSEMBLE_KEYS))
        ctx.check_value(f"model.ensemble.{k}", v, ENSEMBLE_KEYS[k])
    return dict(ens)


# ---------------------------------------------------------------------------------------------
# layers from a resolved config + data
# ---------------------------------------------------------------------------------------------
def default_layers(meta: dict) -> list[dict]:
    """A sensible model when ``[model] layers`` is not given: (Embedding), LSTM(64), Dense."""
    layers: list[dict] = []
    if meta.get("input_type") == "tokens":
        layers.append({"type": "Embedding", "output_dim": 32,
                       "mask_zero": meta.get("kind") != "language_model"})
    layers.append({"type": "LSTM", "units": 64, "return_sequences": meta.get("target") == "per_step"})
    layers.append({"type": "Dense"})
    return layers


def _check_input(ctx: Ctx, specs: list[dict], meta: dict) -> None:
    """Token ids need an Embedding first; feature vectors must not have one."""
    tokens = meta.get("input_type") == "tokens"
    if tokens and specs[0]["type"] != "Embedding":
        vocab = meta.get("vocab_size") or len(meta.get("vocab") or [])
        raise ctx.error("model.layers[0]", f"the data are token ids (vocabulary of {vocab}); start the model "
                        'with an Embedding layer, e.g. {type = "Embedding", output_dim = 32}')
    if not tokens and specs[0]["type"] == "Embedding":
        raise ctx.error("model.layers[0]", f"an Embedding layer needs token ids, but data source "
                        f"{meta.get('name')!r} gives feature vectors; remove it")
    if specs[0]["type"] == "Embedding" and "input_dim" not in specs[0]:
        specs[0]["input_dim"] = int(meta.get("vocab_size") or len(meta["vocab"]))


def _size_output(ctx: Ctx, specs: list[dict], meta: dict) -> None:
    """The last Dense layer: units from the data (classes or outputs), softmax for classes."""
    kind = meta.get("kind")
    classes = kind in ("classification", "language_model")
    last, key = specs[-1], f"model.layers[{len(specs) - 1}]"
    n_out = meta.get("n_classes") if classes else meta.get("n_outputs")
    if last["type"] != "Dense":
        raise ctx.error(key, f"expected the last layer to be a Dense output layer, got {last['type']}; "
                        'add {type = "Dense"}')
    if "units" not in last:
        if not n_out:
            raise ctx.error(f"{key}.units", "missing, and the data do not say how many outputs they need; "
                            "give units")
        last["units"] = int(n_out)
        if classes and "activation" not in last:
            last["activation"] = "softmax"
    if n_out and last.get("units") != n_out and classes:
        raise ctx.error(f"{key}.units", f"expected {n_out} (the number of classes of {meta.get('name')!r}), "
                        f"got {last.get('units')}")


def _check_sequences(ctx: Ctx, specs: list[dict], meta: dict) -> None:
    """Per-step targets need a sequence out of the last recurrent layer; per-sequence targets need
    one vector (return_sequences = false, or an Attention layer after it that pools)."""
    rec = [i for i, s in enumerate(specs) if s["type"] in RECURRENT]
    if not rec:
        return
    i = rec[-1]
    spec = specs[i] if specs[i]["type"] != "Bidirectional" else specs[i]["layer"]
    rs = bool(spec.get("return_sequences", False))
    per_step = meta.get("target") == "per_step"
    if per_step and not rs:
        raise ctx.error(f"model.layers[{i}].return_sequences", "the data have one target per time step; "
                        "set return_sequences = true on the last recurrent layer")
    pooled = any(s["type"] == "Attention" or getattr(LAYERS.get(s["type"]), "pools_time", False)
                 for s in specs[i + 1:])
    if not per_step and rs and not pooled:
        raise ctx.error(f"model.layers[{i}].return_sequences", "the data have one target per sequence; "
                        "the last recurrent layer needs return_sequences = false (or add an Attention or "
                        "GlobalAveragePooling1D layer)")


def resolve_layers(model_cfg: dict, meta: dict, path: str | os.PathLike | None = None) -> list[dict]:
    """Layer specs with sizes taken from the data: Embedding ``input_dim`` = vocabulary size, a
    final Dense without ``units`` = number of classes (softmax) or outputs (linear)."""
    ctx = Ctx(path)
    specs = [dict(s) for s in (model_cfg.get("layers") or default_layers(meta))]
    _check_input(ctx, specs, meta)
    _size_output(ctx, specs, meta)
    _check_sequences(ctx, specs, meta)
    return specs


def build_layers(specs: list[dict], path: str | os.PathLike | None = None) -> list:
    """Instantiate layers; constructor errors are reported with the layer's key path."""
    ctx = Ctx(path)
    layers = []
    for i, spec in enumerate(specs):
        try:
            layers.append(_build_layer(spec))
        except (ValueError, TypeError) as exc:
            raise ctx.error(f"model.layers[{i}]", str(exc)) from None
    return layers


def _build_layer(spec: dict):
    cfg = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] == "Bidirectional":
        layer = _build_layer(cfg.pop("layer"))
        backward = cfg.pop("backward_layer", None)
        back = None if backward is None else _build_layer(backward)
        return Bidirectional(layer, backward_layer=back, **cfg)
    return deserialize({"class_name": spec["type"], "config": cfg})
