"""Untrusted model files (issue 12, items 2 and 9): what a ``.lstmlab`` file declares is checked
against what it stores before anything is built, and every bad file is one line and exit 2.

The allocation oracle is :class:`no_huge_tensors`: torch's tensor factories raise
:class:`Overallocation` when asked for more than :data:`LIMIT` elements, far above what the small
files here store and far below what the crafted files declare, so the tests assert "nothing big was
allocated" without measuring memory or time.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lstmlab as ll
from lstmlab import cli, loading, saving

LIMIT = 1_000_000
TOKENS = ["<pad>", "<unk>", "a", "b", "c", "d"]


class Overallocation(BaseException):
    """A BaseException, so that no ``except Exception`` in the code under test can hide it."""


FACTORIES = (torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full)


def _elements(func, args: tuple, kwargs: dict) -> int:
    if func is torch.eye:
        n = args[0] if args else kwargs.get("n", 0)
        m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m") or n
        return int(n) * int(m)
    if func in FACTORIES:
        size = kwargs.get("size", args[0] if args and not isinstance(args[0], int) else args)
        return math.prod(int(s) for s in size)
    return 0


class no_huge_tensors(torch.overrides.TorchFunctionMode):  # noqa: N801 - used like a function
    """Raise :class:`Overallocation` before a tensor factory allocates more than ``limit`` elements.

    Entered before the code under test, it sees every factory call that reaches torch's dispatch;
    a guard inside lstmlab that refuses a request first never passes it on to this one."""

    def __init__(self, limit: int = LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        n = _elements(func, args, kwargs)
        if n > self.limit:
            raise Overallocation(f"{func.__name__} asked for {n} elements")
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# two small model files: a character LM (generate) and a regression model (diagnose --data adding)
# ---------------------------------------------------------------------------------------------
def make_lm(path: Path) -> Path:
    torch.manual_seed(0)
    model = ll.Sequential([ll.Embedding(len(TOKENS), 3), ll.LSTM(4), ll.Dense(len(TOKENS), activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(torch.randint(2, len(TOKENS), (8, 5)), torch.randint(2, len(TOKENS), (8,)), epochs=1, verbose=0)
    model.save(path)
    (path.parent / "vocab.json").write_text(json.dumps({"tokens": TOKENS, "char_level": True, "seq_len": 5}))
    return path


def make_reg(path: Path) -> Path:
    torch.manual_seed(0)
    model = ll.Sequential([ll.Masking(), ll.LSTM(4, return_sequences=True),
                           ll.Bidirectional(ll.GRU(3, return_sequences=True)),
                           ll.SimpleRNN(3, return_sequences=True, recurrent_initializer="identity"),
                           ll.Attention(), ll.Dropout(0.1), ll.Dense(1)])
    model.compile(loss="mse", optimizer=ll.SGD(0.01, momentum=0.9), clipnorm=1.0)
    model.fit(torch.randn(8, 6, 2), torch.randn(8, 1), epochs=1, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("modelfiles")
    (root / "lm").mkdir()
    (root / "reg").mkdir()
    return {"lm": make_lm(root / "lm" / "model.lstmlab"), "reg": make_reg(root / "reg" / "model.lstmlab")}


def read_parts(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
    return load_file(str(path)), meta


def rewrite(src: Path, dst: Path, key: str = "config", change=None, raw: str | None = None) -> Path:
    """A copy of ``src`` with the JSON metadata entry ``key`` changed in place by ``change(obj)``
    (or replaced by the text ``raw``); the stored tensors stay as they are."""
    tensors, meta = read_parts(src)
    if raw is not None:
        meta[key] = raw
    else:
        obj = json.loads(meta[key])
        change(obj)
        meta[key] = json.dumps(obj)
    save_file(tensors, str(dst), metadata=meta)
    if (src.parent / "vocab.json").exists() and not (dst.parent / "vocab.json").exists():
        (dst.parent / "vocab.json").write_text((src.parent / "vocab.json").read_text())
    return dst


def setter(path: str, value):
    """``change`` for :func:`rewrite`: set a dotted path (ints index lists) to ``value``."""
    def change(obj):
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        for p in parents:
            obj = obj[p]
        obj[last] = value
    return change


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def generate(path: Path) -> tuple[int, str, str]:
    return run_cli(["generate", str(path), "--length", "4", "--seed", "0", "--prime", "ab"])


def diagnose(path: Path) -> tuple[int, str, str]:
    return run_cli(["diagnose", str(path), "--data", "adding", "-o", "length=6", "-o", "n_train=8", "-o", "n_val=4",
                    "-o", "n_test=4", "--batch-size", "4", "--out", str(path.parent / f"{path.stem}-diag")])


COMMANDS = {"lm": generate, "reg": diagnose}


# ---------------------------------------------------------------------------------------------
# item 2: a file cannot make the loader allocate what it does not store
# ---------------------------------------------------------------------------------------------
HUGE = [("lm", "layers.1.config.units", 6000),                 # the issue's 14 KB file asking for 4 GB
        ("lm", "layers.1.config.input_size", 10**7),
        ("lm", "layers.0.config.input_dim", 10**9),             # Embedding builds in its constructor
        ("lm", "layers.2.config.units", 10**8),
        ("lm", "layers.1.config.units", 10**15),                # more than int64 elements
        ("reg", "layers.2.config.layer.config.units", 6000),    # inside Bidirectional
        ("reg", "layers.4.config.units", 10**6),                # Attention's score layer
        ("reg", "layers.3.config.units", 30000)]                # identity init: eye(n)


@pytest.mark.parametrize(("base", "key", "value"), HUGE, ids=[f"{b}-{k}={v}" for b, k, v in HUGE])
def test_declared_sizes_beyond_the_stored_weights_are_refused_before_building(files, tmp_path, base, key, value):
    path = rewrite(files[base], tmp_path / "crafted.lstmlab", change=setter(key, value))
    assert path.stat().st_size < 20_000
    layer = key.split(".")[1]
    with no_huge_tensors(), pytest.raises(ll.ModelFileError) as err:
        ll.load_model(path)
    msg = str(err.value)
    assert len(msg.splitlines()) == 1 and str(path) in msg and f"config.layers[{layer}]" in msg, msg


def test_the_issue_file_is_one_line_exit_2_in_every_command(files, tmp_path):
    for base, command in COMMANDS.items():
        (tmp_path / base).mkdir()
        path = rewrite(files[base], tmp_path / base / "model.lstmlab", change=setter("layers.1.config.units", 6000))
        with no_huge_tensors():
            rc, out, err = command(path)
        assert rc == 2 and out == "", (rc, out, err)
        assert err.splitlines() == [err.strip()] and str(path) in err and "config.layers[1] (LSTM)" in err, err


def test_a_small_mismatch_names_the_tensor_and_both_shapes(files, tmp_path):
    path = rewrite(files["lm"], tmp_path / "m.lstmlab", change=setter("layers.1.config.units", 5))
    with pytest.raises(ll.ModelFileError, match=r"model/layers\.1\.weight_ih: the config builds shape \(20, 3\), "
                                                r"the file stores \(16, 3\)"):
        ll.load_model(path)


class Calls(torch.overrides.TorchFunctionMode):
    """Records every torch function that reaches it (the loader's own guard runs inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.seen.add(func)
        return func(*args, **(kwargs or {}))


def test_loading_runs_no_random_init_and_no_decomposition(files):
    """The stored values replace the initial ones, so the loader draws no random numbers (the global RNG
    is untouched) and runs no QR (the orthogonal init costs O(H^3)); the weights are the stored ones."""
    stored, _ = read_parts(files["reg"])
    rng = torch.get_rng_state()
    with Calls() as calls:
        model = ll.load_model(files["reg"])
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.linalg.qr not in calls.seen and torch.Tensor.uniform_ not in calls.seen
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored[f"model/{key}"]), key


def test_a_valid_file_round_trips_under_the_guard(files, tmp_path):
    for base in ("lm", "reg"):
        stored, _ = read_parts(files[base])
        with no_huge_tensors(limit=4096):
            model = ll.load_model(files[base])
        assert sum(t.numel() for t in model.state_dict().values()) == sum(
            t.numel() for k, t in stored.items() if k.startswith("model/"))
        model.save(tmp_path / f"{base}.lstmlab")
        assert read_parts(tmp_path / f"{base}.lstmlab")[1]["config"] == read_parts(files[base])[1]["config"]


def test_caps_on_the_header_the_stored_elements_and_the_layer_count(files, tmp_path, monkeypatch):
    monkeypatch.setattr(saving, "MAX_HEADER_BYTES", 1000)
    with pytest.raises(ll.ModelFileError, match=r"header of \d+ bytes, expected at most 1000 .*MAX_HEADER_BYTES"):
        ll.load_model(files["lm"])
    monkeypatch.undo()
    monkeypatch.setattr(saving, "MAX_ELEMENTS", 50)
    with pytest.raises(ll.ModelFileError, match=r"stores \d+ tensor elements, expected at most 50"):
        ll.load_model(files["lm"])
    monkeypatch.undo()
    many = {"class_name": "Dropout", "config": {"rate": 0.0}}
    path = rewrite(files["lm"], tmp_path / "many.lstmlab",
                   change=lambda c: c["layers"].extend([many] * loading.MAX_LAYERS))
    with no_huge_tensors(), pytest.raises(ll.ModelFileError, match=r"config\.layers: expected at most 1000 layers"):
        ll.load_model(path)


def test_a_header_length_beyond_the_file_or_a_device_is_refused(files, tmp_path):
    data = bytearray(files["lm"].read_bytes())
    for length in (2**63, len(data), 0):
        data[:8] = length.to_bytes(8, "little")
        (tmp_path / "bad.lstmlab").write_bytes(bytes(data))
        with pytest.raises(ll.ModelFileError, match="truncated or corrupt"):
            ll.load_model(tmp_path / "bad.lstmlab")
    if os.path.exists("/dev/zero"):
        with pytest.raises(ll.ModelFileError, match="expected a regular file"):
            ll.load_model("/dev/zero")


# ---------------------------------------------------------------------------------------------
# item 9: every bad entry is one line naming the file and the key, exit 2 (never 1: "diverged")
# ---------------------------------------------------------------------------------------------
BAD = [  # (metadata key, change or raw text, key the message must name)
    ("config", setter("dtype", "bogus"), "config.dtype"),
    ("config", setter("layers.1.config.bogus", 1), "config.layers[1].config.bogus"),
    ("config", setter("layers.1.config.units", "4"), "config.layers[1].config.units"),
    ("config", setter("layers.1.config.use_bias", "yes"), "config.layers[1].config.use_bias"),
    ("config", setter("layers.1.config.name", 5), "config.layers[1].config.name"),
    ("config", setter("layers.1.config.seed", "x"), "config.layers[1].config.seed"),
    ("config", setter("layers.1.config.dropout", [0.1]), "config.layers[1].config.dropout"),
    ("config", setter("layers.1.config.kernel_regularizer", {"l3": 1}), "config.layers[1] (LSTM)"),
    ("config", setter("layers.1.config.activation", "bogus"), "config.layers[1] (LSTM)"),
    ("config", setter("layers.1.class_name", "Nope"), "config.layers[1].class_name"),
    ("config", setter("layers.1.config", "x"), "config.layers[1].config"),
    ("config", setter("layers.1", []), "config.layers[1]"),
    ("config", setter("layers", {"a": 1}), "config.layers"),
    ("config", setter("name", 5), "config.name"),
    ("config", setter("extra", 1), "config.extra"),
    ("config", "[" * 100_000, "config: not valid JSON"),
    ("config", "null", "config: expected an object"),
    ("compile", setter("optimizer.bogus", 1), "compile.optimizer"),
    ("compile", setter("optimizer.options", {"momentum": "x"}), "compile.optimizer"),
    ("compile", setter("optimizer.learning_rate", "x"), "compile.optimizer"),
    ("compile", setter("loss", 5), "compile.loss"),
    ("compile", setter("metrics", "accuracy"), "compile.metrics"),
    ("compile", setter("clipnorm", "big"), "compile.clipnorm"),
    ("compile", setter("bogus", 1), "compile.bogus"),
    ("optimizer", setter("param_groups.0.lr", "x"), "optimizer.param_groups[0].lr"),
    ("optimizer", setter("param_groups.0.params", "all"), "optimizer.param_groups[0].params"),
    ("optimizer", setter("other", {"x": {}}), "optimizer.other"),
    ("optimizer", "{", "optimizer: not valid JSON"),
]


@pytest.mark.parametrize("base", ["lm", "reg"])
@pytest.mark.parametrize(("key", "change", "names"), BAD, ids=[f"{k}-{n}" for k, _, n in BAD])
def test_a_bad_entry_is_one_line_naming_file_and_key_exit_2(files, tmp_path, base, key, change, names):
    path = rewrite(files[base], tmp_path / "model.lstmlab", key=key, change=None if isinstance(change, str) else change,
                   raw=change if isinstance(change, str) else None)
    with no_huge_tensors():
        rc, out, err = COMMANDS[base](path)
    assert rc == 2 and out == "", (rc, out, err)
    assert len(err.splitlines()) == 1, err
    assert f"model file {str(path)!r}: " in err and names in err, err


def test_an_optimizer_tensor_of_the_wrong_shape_is_named(files, tmp_path):
    tensors, meta = read_parts(files["reg"])
    key = next(k for k in tensors if k.startswith("optimizer/") and not k.endswith("/step"))
    tensors[key] = torch.zeros(7, 7)
    save_file(tensors, str(tmp_path / "m.lstmlab"), metadata=meta)
    with pytest.raises(ll.ModelFileError, match=f"{key}: expected shape .* like its parameter, got \\(7, 7\\)"):
        ll.load_model(tmp_path / "m.lstmlab")


def test_report_of_a_run_with_a_crafted_model_notes_it_and_allocates_nothing(files, tmp_path):
    """``lstmlab report`` keeps its policy (a page with a note for a model that does not load, exit 0);
    the note names the file and the layer, and the crafted file allocates nothing."""
    run = tmp_path / "run"
    run.mkdir()
    rewrite(files["reg"], run / "model.lstmlab", change=setter("layers.1.config.units", 6000))
    with no_huge_tensors():
        rc, out, err = run_cli(["report", str(run)])
    assert rc == 0 and err == "", err
    page = (run / "report.html").read_text()
    assert html.escape(f"model file {str(run / 'model.lstmlab')!r}: config.layers[1] (LSTM)") in page


@pytest.mark.parametrize(("key", "value", "layer"), [("layers.2.config.merge_mode", None, "layer 2 (bidirectional)"),
                                                    ("layers.4.config.return_attention", True, "layer 4 (attention)")])
def test_a_layer_that_returns_several_tensors_is_one_line_exit_2(files, tmp_path, key, value, layer):
    """Found by fuzzing: such a file loads (the layers allow it) but Sequential cannot run it."""
    path = rewrite(files["reg"], tmp_path / "model.lstmlab", change=setter(key, value))
    rc, out, err = diagnose(path)
    assert rc == 2 and err.splitlines() == [f"lstmlab diagnose: error: {layer}: returns 2 tensors; Sequential needs "
                                            "one; call the layer directly"], err


def _bidirectional(**changes):
    def change(cfg):
        bidi = cfg["layers"][2]["config"]
        for k, v in changes.items():
            setter(k, v)(bidi)
    return change


@pytest.mark.parametrize(("changes", "names"), [
    ({"layer.config.return_sequences": False}, "backward_layer.config.return_sequences: expected False"),
    ({"merge_mode": "sum", "layer.config.units": 4}, "backward_layer.config.units: expected 4"),
])
def test_bidirectional_halves_that_cannot_be_merged_are_named(files, tmp_path, changes, names):
    """Found by fuzzing: the two halves disagreed and torch.cat raised a RuntimeError (exit 1, traceback)."""
    path = rewrite(files["reg"], tmp_path / "model.lstmlab", change=_bidirectional(**changes))
    rc, out, err = diagnose(path)
    assert rc == 2 and len(err.splitlines()) == 1 and f"config.layers[2].config.{names}" in err, err
