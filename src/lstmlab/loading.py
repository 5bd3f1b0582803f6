"""Rebuild a model from a file that may come from anyone (``lstmlab.load_model``).

A model file declares an architecture (JSON) and stores tensors.  Nothing it declares is trusted:

1. the header is read first, capped (:func:`lstmlab.saving.read_header`), no tensor data yet;
2. the JSON config is checked against the layer constructors' signatures (known classes, known
   arguments, the annotated types) before any layer exists;
3. layers are built under :class:`BuildGuard`: no tensor may be larger than the largest one the file
   stores for that layer, nor all of them together more than :data:`BUILD_FACTOR` times what the
   file stores, and random fills and QR decompositions are skipped (the stored values replace
   them), so building costs about as much as reading the file, whatever the config says;
4. the built state's keys and shapes must equal the stored ones (floats stored as floats); only then
   is tensor data read.

Every refusal is a :class:`~lstmlab.saving.ModelFileError` naming the file and the key.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import types
import typing

import torch
from torch import nn
from torch.nn.parameter import is_lazy
from torch.overrides import TorchFunctionMode

from . import optim, saving
from .layers import LAYERS, deserialize
from .saving import FLOAT_DTYPES, Header, ModelFileError, first_line, printable

MAX_LAYERS = 1000
"""Most layers a model file may declare."""
MAX_NESTING = 2
"""How deep a layer spec may hold another (``Bidirectional`` holds its recurrent layers)."""
BUILD_FACTOR = 8
"""Building may allocate at most this many times the stored elements (weights, then copies for dtype)."""
SMALL = 4096
"""Tensors this small may always be built (scalars, a layer whose file holds no weights)."""
DTYPES = ("float32", "float64", "float16", "bfloat16")
CONFIG_KEYS = ("name", "layers", "dtype")
COMPILE_KEYS = ("loss", "metrics", "clipnorm", "clipvalue", "global_clipnorm", "optimizer")
OPTIMIZER_KEYS = ("name", "learning_rate", "options")


def _fail(where: str, key: str, message: str) -> typing.NoReturn:
    raise ModelFileError(f"{where}: {key}: {message}")


# ---------------------------------------------------------------------------------------------
# 2. the config, checked against the constructors
# ---------------------------------------------------------------------------------------------
@functools.cache
def _arguments(cls: type) -> dict[str, tuple[object, bool]]:
    """{argument: (type hint or None, required)} of ``cls(...)``, following ``**kwargs`` to the base class."""
    out: dict[str, tuple[object, bool]] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass in (nn.Module, object):
            continue
        try:
            hints = typing.get_type_hints(klass.__init__)
        except Exception:  # noqa: BLE001 - an annotation that does not evaluate: the constructor checks it
            hints = {}
        params = list(inspect.signature(klass.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in out:
                out[p.name] = (hints.get(p.name), p.default is p.empty)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return out


def _arms(hint) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _is_layer(hint) -> bool:
    return any(isinstance(a, type) and issubclass(a, nn.Module) for a in _arms(hint))


def _accepts(value, hint) -> bool:
    """Whether a JSON value fits an annotation (bool is not a number; an int is a float)."""
    for arm in _arms(hint):
        if arm is None or arm is type(None):
            ok = value is None
        elif arm is bool:
            ok = isinstance(value, bool)
        elif arm is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif arm is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif arm in (str, dict, list):
            ok = isinstance(value, arm)
        else:
            return True  # no annotation or one JSON cannot express: the constructor checks the value
        if ok:
            return True
    return False


def _hint_name(hint) -> str:
    return " or ".join("null" if a in (None, type(None)) else getattr(a, "__name__", str(a)) for a in _arms(hint))


def check_spec(spec, where: str, key: str, depth: int = 0) -> None:
    """One layer spec ``{"class_name": ..., "config": {...}}``: class, argument names and types."""
    if not isinstance(spec, dict):
        _fail(where, key, f"expected an object with class_name and config, got {spec!r:.80}")
    for k in spec:
        if k not in ("class_name", "config"):
            _fail(where, f"{key}.{printable(k)}", "unknown key; expected class_name and config")
    name = spec.get("class_name")
    if not isinstance(name, str) or name not in LAYERS:
        _fail(where, f"{key}.class_name", f"expected one of {sorted(LAYERS)}, got {name!r:.80}")
    cfg = spec.get("config", {})
    if not isinstance(cfg, dict):
        _fail(where, f"{key}.config", f"expected an object, got {cfg!r:.80}")
    args = _arguments(LAYERS[name])
    for arg, value in cfg.items():
        if arg not in args:
            _fail(where, f"{key}.config.{printable(arg)}", f"not an argument of {name}; expected one of {sorted(args)}")
        hint = args[arg][0]
        if hint is not None and _is_layer(hint) and value is not None:
            if depth >= MAX_NESTING:
                _fail(where, f"{key}.config.{arg}", f"layers nested more than {MAX_NESTING} deep")
            check_spec(value, where, f"{key}.config.{arg}", depth + 1)
        elif hint is not None and not _accepts(value, hint):
            _fail(where, f"{key}.config.{arg}", f"expected {_hint_name(hint)}, got {value!r:.80}")
    missing = [a for a, (_, required) in args.items() if required and a not in cfg]
    if missing:
        _fail(where, f"{key}.config", f"missing {name}'s argument {missing[0]!r}")
    if name == "Bidirectional":
        _check_directions(cfg, where, f"{key}.config")
    if name == "Ensemble":
        _check_members(cfg, where, f"{key}.config", depth)


def _check_members(cfg: dict, where: str, key: str, depth: int) -> None:
    """An Ensemble's ``layers``: a bounded list of layer specs, each checked like a top-level one."""
    layers = cfg.get("layers")
    if not isinstance(layers, list) or not layers or len(layers) > MAX_LAYERS:
        _fail(where, f"{key}.layers", f"expected a list of 1 to {MAX_LAYERS} layer specs, got {layers!r:.80}")
    if depth >= MAX_NESTING:
        _fail(where, f"{key}.layers", f"layers nested more than {MAX_NESTING} deep")
    for k, spec in enumerate(layers):
        check_spec(spec, where, f"{key}.layers[{k}]", depth + 1)


def _check_directions(cfg: dict, where: str, key: str) -> None:
    """Bidirectional's two layers must give outputs it can merge (the constructor does not check a
    given ``backward_layer``; Keras refuses the same mismatches)."""
    back = cfg.get("backward_layer")
    if back is None:
        return
    fw, bw = cfg["layer"].get("config", {}), back.get("config", {})
    same = ["return_sequences", "return_state", "stateful"]
    if cfg.get("merge_mode", "concat") in ("sum", "mul", "ave"):
        same.append("units")
    for arg in same:
        if fw.get(arg, False) != bw.get(arg, False):
            _fail(where, f"{key}.backward_layer.config.{arg}", f"expected {fw.get(arg, False)!r} as in the "
                                                                f"forward layer, got {bw.get(arg, False)!r}")


def check_config(config, where: str) -> None:
    """The architecture JSON: keys, dtype, the layer list and every layer spec."""
    if not isinstance(config, dict):
        _fail(where, "config", f"expected an object with {', '.join(CONFIG_KEYS)}, got {config!r:.80}")
    for k in config:
        if k not in CONFIG_KEYS:
            _fail(where, f"config.{printable(k)}", f"unknown key; expected {', '.join(CONFIG_KEYS)}")
    if not isinstance(config.get("name", ""), str):
        _fail(where, "config.name", f"expected a string, got {config['name']!r:.80}")
    if config.get("dtype", "float32") not in DTYPES:
        _fail(where, "config.dtype", f"expected one of {DTYPES}, got {config['dtype']!r:.80}")
    layers = config.get("layers")
    if not isinstance(layers, list):
        _fail(where, "config.layers", f"expected a list of layer specs, got {layers!r:.80}")
    if len(layers) > MAX_LAYERS:
        _fail(where, "config.layers", f"expected at most {MAX_LAYERS} layers (lstmlab.loading.MAX_LAYERS), "
                                      f"got {len(layers)}")
    for k, spec in enumerate(layers):
        check_spec(spec, where, f"config.layers[{k}]")


# ---------------------------------------------------------------------------------------------
# 3. building under a guard
# ---------------------------------------------------------------------------------------------
_SIZED = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full)
_RANDOM = (torch.rand, torch.randn)
_FILLS = tuple(getattr(torch.Tensor, n) for n in ("uniform_", "normal_", "random_", "bernoulli_", "exponential_",
                                                  "log_normal_", "cauchy_", "geometric_"))


class TooLarge(Exception):
    """A tensor the guard refused: its shape, and whether it broke the one-tensor or the total limit."""

    def __init__(self, shape: tuple[int, ...], n: int, total: bool) -> None:
        super().__init__(f"a tensor of shape {shape} ({n} elements)")
        self.shape, self.n, self.total = shape, n, total


def requested(func, args: tuple, kwargs: dict) -> tuple[int, ...] | None:
    """The shape a tensor factory is asked for, before it allocates (None: not a sized factory)."""
    if func is torch.eye:
        n = args[0] if args else kwargs.get("n", 0)
        m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m", n)
        return (int(n), int(n if m is None else m))
    if func not in _SIZED:
        return None
    size = kwargs.get("size")
    if size is None:
        size = args[0] if args and not isinstance(args[0], int) else args
    return tuple(int(s) for s in size)


class BuildGuard(TorchFunctionMode):
    """While a model is built from a file (this thread only): refuse tensors larger than the stored
    data allows (``one``: per tensor, ``total``: all together), and skip random fills and QR
    decompositions, whose values the stored tensors replace."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total, self.used, self.one = total, 0, SMALL

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        shape = requested(func, args, kwargs)
        if shape is not None:
            n = math.prod(max(s, 0) for s in shape)
            self.used += n
            if n > self.one or self.used > self.total:
                raise TooLarge(shape, n, total=n <= self.one)
            if func in _RANDOM:
                kwargs.pop("generator", None)
                func = torch.empty
        if func in _FILLS:
            return args[0]
        if func is torch.linalg.qr:
            a = args[0]
            m, n, k = a.shape[-2], a.shape[-1], min(a.shape[-2], a.shape[-1])
            complete = kwargs.get("mode", args[1] if len(args) > 1 else "reduced") == "complete"
            return a.new_empty(m, m if complete else k), a.new_empty(m if complete else k, n)
        return func(*args, **kwargs)


def _too_large(exc: TooLarge, header: Header, prefix: str) -> str:
    if exc.total:
        return (f"builds {exc} after more than {BUILD_FACTOR} times the {header.elements('model/')} "
                "elements the file stores; the config does not match the stored weights")
    return (f"builds {exc}, but the largest tensor the file stores for it has {header.largest(prefix)} "
            "elements; the config does not match the stored weights")


_BUILD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError, ArithmeticError,
                 RecursionError)


def build(cls: type, config: dict, header: Header) -> nn.Module:
    """``cls`` (Sequential) from a checked config, each layer under the guard."""
    guard = BuildGuard(BUILD_FACTOR * header.elements("model/") + SMALL)
    layers = []
    for k, spec in enumerate(config["layers"]):
        prefix = f"model/layers.{k}."
        guard.one = max(header.largest(prefix), SMALL)
        try:
            with guard:
                layers.append(deserialize(spec))
        except TooLarge as exc:
            _fail(header.where, f"config.layers[{k}] ({spec['class_name']})", _too_large(exc, header, prefix))
        except _BUILD_ERRORS as exc:
            _fail(header.where, f"config.layers[{k}] ({spec['class_name']})", first_line(exc))
    guard.one = max(header.largest("model/"), SMALL)
    try:
        with guard:
            model = cls(layers, name=config.get("name", "sequential"))
            model.to(getattr(torch, config.get("dtype", "float32")))
    except TooLarge as exc:
        _fail(header.where, "config", _too_large(exc, header, "model/"))
    except _BUILD_ERRORS as exc:
        _fail(header.where, "config", first_line(exc))
    return model


def check_state(model: nn.Module, header: Header) -> None:
    """The built model's state must be exactly what the file stores: keys, shapes, float dtypes."""
    built = {f"model/{k}": v for k, v in model.state_dict().items()}
    stored = {k for k in header.shapes if k.startswith("model/")}
    for key in sorted(stored - set(built)):
        _fail(header.where, printable(key), "stored, but the config builds no such tensor (architecture does not "
                                            "match)")
    for key, t in built.items():
        if is_lazy(t):  # a layer whose config has no input_size: its weights have no shape to compare
            _fail(header.where, key, "the config builds it without a size (input_size is null); a saved model "
                                     "records the input size of every layer")
        if key not in header.shapes:
            _fail(header.where, key, f"the config builds a {tuple(t.shape)} tensor the file does not store")
        if tuple(t.shape) != header.shapes[key]:
            _fail(header.where, key, f"the config builds shape {tuple(t.shape)}, the file stores "
                                     f"{header.shapes[key]} (architecture does not match)")
        if t.is_floating_point() and header.dtypes[key] not in FLOAT_DTYPES:
            _fail(header.where, key, f"expected a floating-point tensor, the file stores {header.dtypes[key]}")


# ---------------------------------------------------------------------------------------------
# 5. compile settings and optimizer state
# ---------------------------------------------------------------------------------------------
def _check_number(where: str, key: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        _fail(where, key, f"expected a number or null, got {value!r:.80}")


def read_compile(header: Header) -> dict | None:
    """The ``compile`` section (checked whether or not it is used): its keys and value types, and the
    optimizer spec turned into an :class:`~lstmlab.optim.Optimizer`; None when no loss is stored."""
    where = header.where
    comp = saving.parse_json(header.meta, "compile", where, default="{}")
    if not isinstance(comp, dict):
        _fail(where, "compile", f"expected an object, got {comp!r:.80}")
    for k in comp:
        if k not in COMPILE_KEYS:
            _fail(where, f"compile.{printable(k)}", f"unknown key; expected one of {', '.join(COMPILE_KEYS)}")
    if not isinstance(comp.get("loss"), (str, type(None))):
        _fail(where, "compile.loss", f"expected a loss name or null, got {comp['loss']!r:.80}")
    metrics = comp.get("metrics")
    if metrics is not None and not (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics)):
        _fail(where, "compile.metrics", f"expected a list of metric names, got {metrics!r:.80}")
    for k in ("clipnorm", "clipvalue", "global_clipnorm"):
        _check_number(where, f"compile.{k}", comp.get(k))
    opt = comp.get("optimizer")
    if opt is not None:
        if not isinstance(opt, dict):
            _fail(where, "compile.optimizer", f"expected an object or null, got {opt!r:.80}")
        try:
            comp = {**comp, "optimizer": optim.get(opt)}
            optim.check_options(comp["optimizer"].options)
        except (ValueError, TypeError) as exc:
            _fail(where, "compile.optimizer", first_line(exc))
    return comp if comp.get("loss") else None


def _check_optimizer_tensors(model: nn.Module, state: dict, where: str) -> None:
    params = list(model.parameters())
    for idx, entries in state["state"].items():
        if idx >= len(params):
            _fail(where, f"optimizer/{idx}", f"expected a parameter index below {len(params)}")
        for name, v in entries.items():
            if isinstance(v, torch.Tensor) and name != "step" and tuple(v.shape) != tuple(params[idx].shape):
                _fail(where, printable(f"optimizer/{idx}/{name}"),
                      f"expected shape {tuple(params[idx].shape)} like its parameter, got {tuple(v.shape)}")


def compile_from_file(model: nn.Module, header: Header, comp: dict, state: dict | None) -> None:
    """Compile as stored (loss, metrics, clipping, optimizer) and restore the optimizer state."""
    where = header.where
    try:
        model.compile(loss=comp["loss"], optimizer=comp.get("optimizer") or "adam", metrics=comp.get("metrics"),
                      clipnorm=comp.get("clipnorm"), clipvalue=comp.get("clipvalue"),
                      global_clipnorm=comp.get("global_clipnorm"))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        _fail(where, "compile", first_line(exc))
    if state is None:
        return
    try:
        model._ensure_optimizer()
        model.optimizer.load_state_dict(state)
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        _fail(where, "optimizer", first_line(exc))


def load_model(path: str | os.PathLike, cls: type, compile: bool = True) -> nn.Module:
    """Rebuild a ``cls`` (Sequential) saved with ``model.save``: architecture, weights, optimizer state.

    Every section is checked even when unused (``compile=False``): a file is accepted or refused whole."""
    header = saving.read_header(path)
    config = saving.parse_json(header.meta, "config", header.where)
    check_config(config, header.where)
    comp = read_compile(header)
    model = build(cls, config, header)
    check_state(model, header)
    tensors = saving.read_tensors(header)
    model.load_state_dict(saving.model_state(tensors))
    state = saving.optimizer_state(tensors, header.meta, header.where)
    if state is not None:
        _check_optimizer_tensors(model, state, header.where)
    if compile and comp is not None:
        compile_from_file(model, header, comp, state)
    return model
