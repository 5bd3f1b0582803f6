"""Property tests of the config schema: any TOML value at any key of a valid config either validates
(and then writes to TOML and reads back to the same resolved config) or is refused with one
:class:`ConfigError` line that names a key path of that config, never another exception."""

from __future__ import annotations

import copy
import inspect
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstmlab.config import TRAIN_DEFAULTS, ConfigError, dumps_toml, monitor_settings, tomllib, validate
from lstmlab.data import SOURCES
from lstmlab.data.registry import resolve_source
from lstmlab.layers import LAYERS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BASES: list[dict] = [
    {"data": {"source": "adding", "length": 5},
     "model": {"layers": [{"type": "LSTM", "units": 3, "dropout": 0.1}, {"type": "Dense"}]},
     "train": {"epochs": 2, "learning_rate": 0.01, "optimizer_options": {"beta_1": 0.8},
               "early_stopping": {"patience": 2, "min_delta": 0.001}, "monitor": {"every": 3, "clip_to": 2.0},
               "metrics": ["mae"]}},
    {"data": {"source": "csv-series", "path": "series.csv", "window": 4, "features": ["a", "b"]},
     "model": {"dtype": "float64", "layers": [{"type": "Bidirectional", "layer": {"type": "GRU", "units": 3,
                                                                                  "return_sequences": True}},
                                              {"type": "Attention"}, {"type": "Dense", "units": 1}]},
     "train": {"early_stopping": 3, "clipnorm": 1.0, "monitor": False, "device": "cpu"}},
    {"data": {"source": "text-file", "path": "t.txt", "seq_len": 8},
     "model": {"layers": [{"type": "Embedding", "output_dim": 4},
                          {"type": "SimpleRNN", "units": 3, "return_sequences": True}, {"type": "Dense"}]},
     "train": {"optimizer": "SGD", "tbptt": 4, "weight_decay": 0.0}},
]

# names the schema knows (so a fuzzed key often hits a real setting), plus arbitrary text
KNOWN_KEYS = sorted({"type", "source", "layers", "name", "dtype", "layer", "patience", "min_delta", "monitor",
                     "restore_best_weights"} | set(TRAIN_DEFAULTS) | set(monitor_settings())
                    | {k for s in SOURCES for k in resolve_source(s).options}
                    | {k for cls in LAYERS.values() for k in inspect.signature(cls).parameters})

SCALARS = st.one_of(st.booleans(), st.integers(), st.integers(-3, 100), st.floats(), st.text(max_size=8),
                    st.sampled_from(["adam", "LSTM", "Dense", "mae", "cuda", "warn", "fix", "float64", "csv-text"]),
                    st.datetimes(), st.dates(), st.times())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)


def _containers(node: Any, path: tuple = ()) -> list[tuple]:
    """Every key path (into ``node``) that holds a table or an array."""
    out, stack = [], [(path, node)]
    while stack:
        p, x = stack.pop()
        if isinstance(x, dict):
            out.append(p)
            stack.extend((p + (k,), v) for k, v in x.items())
        elif isinstance(x, list):
            out.append(p)
            stack.extend((p + (i,), v) for i, v in enumerate(x))
    return out


def _get(node: Any, path: tuple) -> Any:
    for t in path:
        node = node[t]
    return node


@st.composite
def mutated_configs(draw) -> dict:
    """A valid config with one to three values replaced or added at arbitrary key paths."""
    raw = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        where = _get(raw, draw(st.sampled_from(sorted(_containers(raw), key=repr))))
        value = draw(VALUES)
        if isinstance(where, list):
            i = draw(st.integers(0, len(where)))
            where[i:i + 1] = [value]
        else:
            keys = list(where) + KNOWN_KEYS
            where[draw(st.one_of(st.sampled_from(keys), st.text(max_size=8)))] = value
    return raw


def names_a_key_path(raw: dict, text: str) -> bool:
    """Whether ``text`` starts with a key path into ``raw`` and then ``": "`` (the last key may be a
    missing one: ``model.layers[0].units: missing``)."""
    stack = [(raw, text)]
    while stack:
        node, rest = stack.pop()
        steps: list[tuple[Any, str]] = []
        if isinstance(node, dict):
            if re.match(r"[A-Za-z_]+: missing", rest):
                return True
            steps = [(node[k], rest[len(k):]) for k in node if rest.startswith(k)]
        elif isinstance(node, list):
            m = re.match(r"\[(\d+)\]", rest)
            if m and int(m.group(1)) < len(node):
                steps = [(node[int(m.group(1))], rest[m.end():])]
        for child, after in steps:
            if after.startswith(": "):
                return True
            if after.startswith("."):
                stack.append((child, after[1:]))
            elif after.startswith("["):
                stack.append((child, after))
    return False


def _as_printed(node: Any) -> Any:
    """Keys as messages print them: bare when TOML allows, else JSON-quoted with anything
    non-printable escaped."""
    def text(k: str) -> str:
        if re.fullmatch(r"[A-Za-z0-9_-]+", k):
            return k
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in json.dumps(k, ensure_ascii=False))

    if isinstance(node, dict):
        return {text(k): _as_printed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_as_printed(v) for v in node]
    return node


@FUZZ
@given(raw=mutated_configs())
def test_any_value_at_any_key_validates_or_names_the_key(raw):
    try:
        out = validate(copy.deepcopy(raw), "fuzz.toml", check_files=False)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith("fuzz.toml: ") and msg.isprintable(), msg
        assert names_a_key_path(_as_printed(raw), msg[len("fuzz.toml: "):]), msg
    else:
        assert set(out) == {"data", "model", "train"}
        again = validate(tomllib.loads(dumps_toml(out)), "fuzz.toml", check_files=False)
        assert again == out


# keys whose values are not typed by the schema (or are typed as numbers), where depth matters
DEEP_TARGETS = [(0, ("model", "layers", 0, "kernel_regularizer")), (1, ("data", "features")),
                (0, ("train", "monitor", "clip_to")), (0, ("train", "optimizer_options", "beta_1"))]


@FUZZ
@given(value=VALUES, depth=st.integers(0, 60), dicts=st.booleans(), target=st.sampled_from(DEEP_TARGETS))
def test_values_nested_at_any_depth_are_checked_without_recursion_errors(value, depth, dicts, target):
    for _ in range(depth):
        value = {"k": value} if dicts else [value]
    base, path = target
    raw = copy.deepcopy(BASES[base])
    _get(raw, path[:-1])[path[-1]] = value
    key = ".".join(path[:2]) + "".join(f"[{t}]" if isinstance(t, int) else f".{t}" for t in path[2:])
    try:
        out = validate(raw, "fuzz.toml", check_files=False)
    except ConfigError as exc:
        assert str(exc).startswith(f"fuzz.toml: {key}"), str(exc)
    else:
        assert validate(tomllib.loads(dumps_toml(out)), "fuzz.toml", check_files=False) == out
