"""Fuzzed model files (issue 12): whatever a ``.lstmlab`` file holds, ``ll.load_model`` returns a model
or raises :class:`~lstmlab.ModelFileError` (one line naming the file), ``generate`` and ``diagnose``
exit 0 or 2 with one line and no traceback, and nothing is allocated beyond what the file stores
(:class:`no_huge_tensors`).

Mutations act on a valid small file: values of any JSON type, sizes from 0 to 2**64, unknown keys,
deleted keys, specs wrapped in lists or nested in other specs, in the ``config``, ``compile`` and
``optimizer`` metadata; or on its bytes: truncated, header bytes overwritten, the header length
field set to anything.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from test_reliability_model_file import COMMANDS, make_lm, make_reg, no_huge_tensors, read_parts

import lstmlab as ll

SIZE_KEYS = ("units", "input_size", "input_dim", "output_dim", "chrono_max_len")
WORDS = ["LSTM", "GRU", "SimpleRNN", "Dense", "Embedding", "Bidirectional", "Attention", "Dropout", "Masking",
         "float64", "float16", "bfloat16", "orthogonal", "identity", "chrono", "relu", "softmax", "fused", "loop",
         "reference", "native", "concat", "dot", "adam", "sgd", "rmsprop", "mse", "class_name", "config", "layer"]
SCALARS = (st.none() | st.booleans() | st.integers(-3, 10) | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6) | st.sampled_from(WORDS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(WORDS + list(SIZE_KEYS)) | st.text(max_size=4), inner,
                                        max_size=3), max_leaves=6)
SIZES = st.integers(-2, 9) | st.integers(0, 10**13) | st.sampled_from([6000, 2**31, 2**62, 2**64])
FUZZ = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    for name in ("lm", "reg"):
        (root / name).mkdir()
    return root, {"lm": make_lm(root / "lm" / "base.lstmlab"), "reg": make_reg(root / "reg" / "base.lstmlab")}


def _paths(obj, prefix: tuple = ()):
    """Every path into a JSON value (keys and list indices), the root excluded."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield prefix + (k,)
        yield from _paths(v, prefix + (k,))


def _mutate(data, obj):
    """One edit of a JSON value at a drawn path: set, resize, delete, add a key, wrap or nest."""
    paths = list(_paths(obj))
    if not paths:
        return data.draw(VALUES)
    sized = [p for p in paths if p[-1] in SIZE_KEYS]
    op = data.draw(st.sampled_from(["set", "size", "delete", "add", "wrap"]))
    path = data.draw(st.sampled_from(sized if op == "size" and sized else paths))
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    last, old = path[-1], parent[path[-1]]
    if op == "delete":
        del parent[last]
    elif op == "add" and isinstance(old, dict):
        old[data.draw(st.sampled_from(list(SIZE_KEYS) + WORDS) | st.text(max_size=4))] = data.draw(VALUES | SIZES)
    elif op == "wrap":
        parent[last] = data.draw(st.sampled_from([[old], {"class_name": "LSTM", "config": old}, {"layer": old}]))
    else:
        parent[last] = data.draw(SIZES if op == "size" else VALUES)
    return obj


def _corrupt(data, raw: bytes) -> bytes:
    out = bytearray(raw)
    n = int.from_bytes(raw[:8], "little")
    kind = data.draw(st.sampled_from(["truncate", "overwrite", "length"]))
    if kind == "truncate":
        return raw[:data.draw(st.integers(0, len(raw) - 1))]
    if kind == "overwrite":
        for _ in range(data.draw(st.integers(1, 4))):
            out[data.draw(st.integers(8, 8 + n - 1))] = data.draw(st.integers(0, 255))
    else:
        length = data.draw(st.integers(0, 2**64 - 1) | st.integers(max(0, n - 16), n + 16))
        out[:8] = length.to_bytes(8, "little")
    return bytes(out)


def write_fuzzed(data, base, dst) -> None:
    """``dst``: ``base`` with its metadata JSON mutated (1 to 3 edits) or its bytes corrupted."""
    if data.draw(st.integers(0, 3)) == 0:
        dst.write_bytes(_corrupt(data, base.read_bytes()))
        return
    tensors, meta = read_parts(base)
    key = data.draw(st.sampled_from(["config", "config", "config", "compile", "optimizer"]))
    obj = json.loads(meta[key])
    for _ in range(data.draw(st.integers(1, 3))):
        obj = _mutate(data, obj)
    meta[key] = json.dumps(obj)
    save_file(tensors, str(dst), metadata=meta)


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_a_fuzzed_model_file_loads_or_is_refused_in_one_line(bases, data):
    root, files = bases
    base = data.draw(st.sampled_from(sorted(files)))
    path = root / base / "fuzzed.lstmlab"
    write_fuzzed(data, files[base], path)
    with no_huge_tensors():
        try:
            model = ll.load_model(path)
        except ll.ModelFileError as exc:
            msg = str(exc)
            assert len(msg.splitlines()) == 1 and msg.startswith(f"model file {str(path)!r}: "), msg
            return
    stored = sum(t.numel() for k, t in read_parts(path)[0].items() if k.startswith("model/"))
    assert sum(t.numel() for t in model.state_dict().values()) == stored


@settings(max_examples=24, **FUZZ)
@given(data=st.data())
def test_a_fuzzed_model_file_through_generate_and_diagnose_exits_0_or_2(bases, data):
    root, files = bases
    base = data.draw(st.sampled_from(sorted(files)))
    path = root / base / "model.lstmlab"
    write_fuzzed(data, files[base], path)
    with no_huge_tensors():
        rc, out, err = COMMANDS[base](path)
    command = COMMANDS[base].__name__
    assert "Traceback" not in err, err
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        assert len(err.strip().splitlines()) == 1 and err.startswith(f"lstmlab {command}: error: "), err
