"""Hostile input to ``lstmlab train``: configs and every file loader.

Each bad input gets one line on stderr (``lstmlab train: error: ...``) naming the key, or the file
and row, exit code 2, no traceback unless ``--debug``, and an existing run directory is left
exactly as it was.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lstmlab import cli
from lstmlab.config import TRAIN_DEFAULTS, ConfigError, load_config, validate
from lstmlab.data import load
from lstmlab.data.base import DataError

FIX = Path(__file__).parent / "fixtures"
SRC = Path(__file__).resolve().parents[1] / "src"
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ADD = '[data]\nsource = "adding"\nlength = 5\nn_train = 16\nn_val = 4\nn_test = 4\n'
LSTM = '[model]\nlayers = [{type = "LSTM", units = 3}, {type = "Dense"}]\n'
TRAIN = "[train]\nepochs = 1\nbatch_size = 8\nverbose = 0\n[train.monitor]\nenabled = false\n"


def train_cli(tmp_path: Path, text: str | bytes, capsys, run: str = "run", extra: tuple = ()) -> tuple[int, list[str]]:
    cfg = tmp_path / "cfg.toml"
    if isinstance(text, bytes):
        cfg.write_bytes(text)
    else:
        cfg.write_text(text)
    rc = cli.main(["train", str(cfg), "--run-dir", str(tmp_path / run), *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return rc, err


def refused(tmp_path: Path, text: str | bytes, capsys, *expect: str, run: str = "run") -> str:
    """Assert the one-line refusal (exit 2, no traceback) and that it mentions ``expect``."""
    rc, err = train_cli(tmp_path, text, capsys, run=run)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("lstmlab train: error: "), err
    assert "Traceback" not in err[0]
    for e in expect:
        assert e in err[0], (e, err[0])
    return err[0]


# ---------------------------------------------------------------------------------------------
# the config file
# ---------------------------------------------------------------------------------------------
CONFIG_CASES = {
    "malformed TOML": ("[data\nsource = 'adding'", ["invalid TOML", "line 1"]),
    "not UTF-8": (b"[data]\nsource = '\xff\xfe'\n", ["not UTF-8"]),
    "duplicate key": (ADD + "[train]\nepochs = 1\nepochs = 2\n", ["invalid TOML", "line 9"]),
    "unknown section": (ADD + "[trian]\nepochs = 1\n", ["trian: unknown key", "did you mean 'train'"]),
    "misspelt train key": (ADD + "[train]\nbatch_sise = 3\n", ["train.batch_sise", "did you mean 'batch_size'"]),
    "misspelt data key": ('[data]\nsource = "adding"\nlenght = 5\n', ["data.lenght", "did you mean 'length'"]),
    "misspelt layer key": (ADD + '[model]\nlayers = [{type = "LSTM", unitz = 4}, {type = "Dense"}]\n',
                           ["model.layers[0].unitz", "did you mean 'units'"]),
    "misspelt layer type": (ADD + '[model]\nlayers = [{type = "LTSM", units = 4}, {type = "Dense"}]\n',
                            ["model.layers[0].type", "did you mean 'LSTM'"]),
    "misspelt source": ('[data]\nsource = "addding"\n', ["data.source", "did you mean 'adding'"]),
    "misspelt monitor key": (ADD + "[train.monitor]\nevry = 3\n", ["train.monitor.evry", "did you mean 'every'"]),
    "misspelt optimizer": (ADD + '[train]\noptimizer = "adamm"\n', ["train.optimizer", "did you mean 'adam'"]),
    "misspelt checkpoint metric": (ADD + '[train]\ncheckpoint_monitor = "val_los"\n',
                                   ["train.checkpoint_monitor", "did you mean 'val_loss'"]),
    "string batch size": (ADD + '[train]\nbatch_size = "32"\n', ["train.batch_size", "expected an integer"]),
    "float epochs": (ADD + "[train]\nepochs = 1.5\n", ["train.epochs", "expected an integer"]),
    "string bool": (ADD + '[train]\nshuffle = "yes"\n', ["train.shuffle", "expected a boolean"]),
    "layers not an array": (ADD + '[model]\nlayers = "LSTM"\n', ["model.layers", "expected an array"]),
    "layer not a table": (ADD + "[model]\nlayers = [1, 2]\n", ["model.layers[0]", "expected a table"]),
    "string units": (ADD + '[model]\nlayers = [{type = "LSTM", units = "4"}, {type = "Dense"}]\n',
                     ["model.layers[0].units", "expected an integer"]),
    "section not a table": ("data = [1, 2]\n", ["data", "expected a table"]),
    "no [data]": ("[train]\nepochs = 1\n", ["data: missing section"]),
    "empty file": ("", ["data: missing section"]),
    "zero batch": (ADD + "[train]\nbatch_size = 0\n", ["train.batch_size", "positive", "got 0"]),
    "negative epochs": (ADD + "[train]\nepochs = -1\n", ["train.epochs", "got -1"]),
    "negative learning rate": (ADD + "[train]\nlearning_rate = -0.1\n", ["train.learning_rate", "-0.1"]),
    "NaN learning rate": (ADD + "[train]\nlearning_rate = nan\n", ["train.learning_rate", "nan"]),
    "Inf clipnorm": (ADD + "[train]\nclipnorm = inf\n", ["train.clipnorm", "inf"]),
    "NaN weight decay": (ADD + "[train]\nweight_decay = nan\n", ["train.weight_decay", "nan"]),
    "zero checkpoint_every": (ADD + "[train]\ncheckpoint_every = 0\n", ["train.checkpoint_every", "got 0"]),
    "zero tbptt": (ADD + "[train]\ntbptt = 0\n", ["train.tbptt", "got 0"]),
    "negative patience": (ADD + "[train.early_stopping]\npatience = -1\n", ["train.early_stopping.patience"]),
    "zero monitor every": (ADD + "[train.monitor]\nevery = 0\n", ["train.monitor.every"]),
    "bad monitor action": (ADD + '[train.monitor]\non_nan = "explode"\n', ["cfg.toml", "train.monitor", "on_nan"]),
    "unknown device": (ADD + '[train]\ndevice = "gpu"\n', ["train.device", "'gpu'"]),
    "zero units": (ADD + '[model]\nlayers = [{type = "LSTM", units = 0}, {type = "Dense"}]\n',
                   ["model.layers[0]", "units", "got 0"]),
    "negative units": (ADD + '[model]\nlayers = [{type = "LSTM", units = -3}, {type = "Dense"}]\n',
                       ["model.layers[0]", "got -3"]),
    "dropout >= 1": (ADD + '[model]\nlayers = [{type = "LSTM", units = 4, dropout = 1.5}, {type = "Dense"}]\n',
                     ["model.layers[0]", "dropout", "1.5"]),
    "units beyond memory": (ADD + '[model]\nlayers = [{type = "LSTM", units = 10000000}, {type = "Dense"}]\n'
                            + TRAIN, ["model.layers[0].units", "10000000", "memory"]),
    "units beyond int64 arithmetic": (ADD + '[model]\nlayers = [{type = "LSTM", units = 9223372036854775807}, '
                                      '{type = "Dense"}]\n' + TRAIN, ["model.layers[0].units"]),
    "last layer not Dense": (ADD + '[model]\nlayers = [{type = "LSTM", units = 4}]\n', ["model.layers[0]", "Dense"]),
    "Embedding on features": (ADD + '[model]\nlayers = [{type = "Embedding", output_dim = 4}, {type = "LSTM", '
                              'units = 4}, {type = "Dense"}]\n', ["model.layers[0]", "Embedding"]),
    "zero task length": ('[data]\nsource = "adding"\nlength = 0\n', ["cfg.toml: data", "'length'", "got 0"]),
    "negative n_train": ('[data]\nsource = "adding"\nn_train = -5\n', ["data", "'n_train'", "-5"]),
    "n_train beyond memory": ('[data]\nsource = "adding"\nn_train = 9223372036854775807\n',
                              ["data.n_train", "memory"]),
    "unknown data option": ('[data]\nsource = "adding"\nval_fraction = 0.5\n', ["data.val_fraction", "unknown key"]),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, case):
    text, expect = CONFIG_CASES[case]
    refused(tmp_path, text, capsys, *expect)
    assert not (tmp_path / "run").exists()  # nothing was created for a refused command


def test_byte_order_mark_is_accepted(tmp_path, capsys):
    rc, err = train_cli(tmp_path, "\ufeff" + ADD + LSTM + TRAIN, capsys)
    assert rc == 0, err


def test_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "cfg.toml").write_text(ADD + "[train]\nbatch_sise = 3\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        cli.main(["train", str(tmp_path / "cfg.toml"), "--run-dir", str(tmp_path / "run"), "--debug"])


def test_real_process_prints_no_traceback(tmp_path):
    (tmp_path / "cfg.toml").write_text(ADD + "[train]\nbatch_size = -4\n")
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "lstmlab", "train", str(tmp_path / "cfg.toml"), "--run-dir",
                           str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"lstmlab train: error: {tmp_path / 'cfg.toml'}: train.batch_size: "
                                                "expected a positive number, got -4"]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@FAST
@given(st.one_of(st.text(max_size=200).map(str.encode), st.binary(max_size=200),
                 st.sampled_from([b"[data]\nsource = 1", b"[[data]]", b"[data]\nsource = 'adding'\n[data]\n",
                                  b"[data.source]\n", b"model = 3\n[data]\nsource='copy'", b"\x00\x00"])))
def test_any_bytes_either_parse_or_give_a_config_error(tmp_path, raw):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(raw)
    try:
        cfg = load_config(path, check_files=False)
    except ConfigError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert set(cfg) == {"data", "model", "train"}


def _mutate(word: str, data) -> str:
    i = data.draw(st.integers(0, len(word) - 1))
    op = data.draw(st.sampled_from(["drop", "swap", "double", "replace"]))
    if op == "drop":
        return word[:i] + word[i + 1:]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    if op == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz_")) + word[i + 1:]


@FAST
@given(st.data())
def test_a_misspelt_train_key_names_it_and_suggests_a_real_one(data):
    key = data.draw(st.sampled_from(sorted(TRAIN_DEFAULTS)))
    typo = _mutate(key, data)
    assume(typo not in TRAIN_DEFAULTS and typo)
    with pytest.raises(ConfigError) as err:
        validate({"data": {"source": "adding"}, "train": {typo: 1}}, "c.toml")
    msg = str(err.value)
    assert msg.startswith(f"c.toml: train.{typo}: unknown key")
    assert "; did you mean '" in msg
    suggested = msg.split("did you mean '")[1].split("'")[0]
    assert suggested in TRAIN_DEFAULTS


_WRONG = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))


@FAST
@given(key=st.sampled_from(["epochs", "batch_size", "learning_rate", "clipnorm", "seed", "tbptt",
                            "checkpoint_every", "shuffle", "verbose"]), value=_WRONG)
def test_a_wrongly_typed_train_value_is_named(key, value):
    ok = {"shuffle": bool}.get(key)
    assume(not (ok is not None and isinstance(value, ok)))
    with pytest.raises(ConfigError, match=rf"c\.toml: train\.{key}: expected "):
        validate({"data": {"source": "adding"}, "train": {key: value}}, "c.toml")


@FAST
@given(key=st.sampled_from(["epochs", "batch_size", "learning_rate", "clipnorm", "tbptt", "checkpoint_every"]),
       value=st.one_of(st.integers(max_value=0), st.floats(max_value=0.0), st.just(math.nan),
                       st.just(math.inf)))
def test_non_positive_or_non_finite_sizes_are_refused(key, value):
    assume(not (key in ("epochs", "batch_size", "tbptt", "checkpoint_every") and isinstance(value, float)))
    with pytest.raises(ConfigError, match=rf"train\.{key}: expected a positive"):
        validate({"data": {"source": "adding"}, "train": {key: value}}, "c.toml")


# ---------------------------------------------------------------------------------------------
# the file loaders
# ---------------------------------------------------------------------------------------------
def _series(path: Path, values: list[float]) -> None:
    path.write_text("t,value,other\n" + "".join(f"{i},{v!r},{i % 3}\n" for i, v in enumerate(values)))


HOSTILE_CELLS = ["nan", "NaN", "inf", "-inf", "1e999", "abc", "", " ", "1,5", "\u22121", "0x1p3z", "NULL"]


@FAST
@given(values=st.lists(st.floats(-1e3, 1e3), min_size=30, max_size=60), data=st.data())
def test_csv_series_names_the_row_and_column_of_a_bad_cell(tmp_path, values, data):
    cell = data.draw(st.sampled_from(HOSTILE_CELLS))
    i = data.draw(st.integers(0, len(values) - 1))
    path = tmp_path / "series.csv"
    lines = ["t,value,other"] + [f"{k},{v!r},{k % 3}" for k, v in enumerate(values)]
    if cell == "1,5":
        lines[i + 1] = f"{i},1,5,{i % 3}"  # an unquoted decimal comma: one field too many
    else:
        lines[i + 1] = f"{i},{cell},{i % 3}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load("csv-series", path=str(path), target="value", window=4, missing="error")
    msg = str(err.value)
    assert msg.startswith(f"{path}, row {i + 2}"), msg
    if cell != "1,5":
        assert "column 'value'" in msg


@FAST
@given(lengths=st.lists(st.integers(1, 9), min_size=6, max_size=12))
def test_csv_sequences_keeps_ragged_lengths(tmp_path, lengths):
    path = tmp_path / "seq.csv"
    rows = ["id,step,x,label"]
    for i, n in enumerate(lengths):
        rows += [f"s{i},{t},{(i + t) % 5 * 0.5},{'ab'[i % 2]}" for t in range(n)]
    path.write_text("\n".join(rows) + "\n")
    s = load("csv-sequences", path=str(path), time_column="step", val_fraction=0.0, test_fraction=0.0,
             stratify=False)
    assert sorted(s.train.lengths.tolist()) == sorted(lengths)
    assert s.train.x.shape[1] == max(lengths)


def _write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return str(path)


def _mkdir(p: Path) -> str:
    p.mkdir(parents=True, exist_ok=True)
    return str(p)


def _unseen_imdb(tmp: Path) -> str:
    root = tmp / "im"
    for d in ("train/a", "train/b", "test/a", "test/c"):
        for i in range(3):
            _write(root / d / f"{i}.txt", f"some text {d} {i}\n")
    return str(root)


BAD = FIX / "bad"
SEQ = "id,step,x1,label\n"
SERIES = f'source = "csv-series"\npath = "{FIX / "series.csv"}"\ntarget = "temperature"'
# name -> (the [data] table for a tmp folder, what the one-line error must mention)
FILE_CASES = {
    "csv-series: missing file": (lambda t: 'source = "csv-series"\npath = "nope.csv"', ["data.path", "not found"]),
    "csv-series: a directory": (lambda t: f'source = "csv-series"\npath = "{t}"', ["directory"]),
    "csv-series: empty": (lambda t: f'source = "csv-series"\npath = "{BAD / "empty.csv"}"', ["empty.csv", "empty"]),
    "csv-series: header only": (lambda t: f'source = "csv-series"\npath = "{BAD / "header_only.csv"}"',
                                ["header_only.csv, row 1", "no data rows"]),
    "csv-series: NaN": (lambda t: f'source = "csv-series"\npath = "{BAD / "nan.csv"}"', ["nan.csv, row 8", "'value'"]),
    "csv-series: Inf": (lambda t: f'source = "csv-series"\npath = "{BAD / "inf.csv"}"', ["inf.csv, row 11", "finite"]),
    "csv-series: text": (lambda t: f'source = "csv-series"\npath = "{BAD / "non_numeric.csv"}"',
                         ["non_numeric.csv, row 17", "'abc'"]),
    "csv-series: ragged rows": (lambda t: f'source = "csv-series"\npath = "{BAD / "ragged.csv"}"',
                                ["ragged.csv, row 6", "expected 3 fields, got 2"]),
    "csv-series: not in time order": (lambda t: f'source = "csv-series"\npath = "{BAD / "not_sorted.csv"}"',
                                      ["not_sorted.csv, row 5", "time order"]),
    "csv-series: misspelt target": (lambda t: SERIES.replace("temperature", "temprature"),
                                    ["series.csv, row 1", "did you mean 'temperature'"]),
    "csv-series: window too long": (lambda t: SERIES + "\nwindow = 100000", ["series.csv", "window"]),
    "csv-series: NUL byte": (lambda t: 'source = "csv-series"\npath = "' + _write(t / "nul.csv", "t,v\n1,2\n2,\x003\n")
                             + '"', ["nul.csv, row 3", "column 'v'"]),
    "csv-series: bad scale": (lambda t: SERIES + '\nscale = "zscore"', ["data", "option 'scale'", "'zscore'"]),
    "csv-series: fraction > 1": (lambda t: SERIES + "\nval_fraction = 1.5", ["'val_fraction'", "1.5"]),
    "csv-sequences: empty": (lambda t: f'source = "csv-sequences"\npath = "{BAD / "empty.csv"}"', ["empty.csv"]),
    "csv-sequences: no id column": (lambda t: f'source = "csv-sequences"\npath = "{BAD / "nan.csv"}"',
                                    ["nan.csv, row 1", "no column 'id'"]),
    "csv-sequences: label changes": (lambda t: f'source = "csv-sequences"\npath = "{BAD / "label_not_constant.csv"}"',
                                     ["label_not_constant.csv, row 5", "same on every row"]),
    "csv-sequences: ragged rows": (lambda t: f'source = "csv-sequences"\npath = "{BAD / "ragged.csv"}"',
                                   ["ragged.csv, row 6"]),
    "csv-sequences: NaN feature": (lambda t: 'source = "csv-sequences"\npath = "'
                                   + _write(t / "nanf.csv", SEQ + "a,0,nan,x\na,1,3,x\nb,0,1,y\n") + '"',
                                   ["nanf.csv, row 2", "column 'x1'"]),
    "csv-sequences: Inf feature": (lambda t: 'source = "csv-sequences"\npath = "'
                                   + _write(t / "inff.csv", SEQ + "a,0,1e999,x\na,1,3,x\nb,0,1,y\n") + '"',
                                   ["inff.csv, row 2", "finite"]),
    "csv-sequences: repeated step": (lambda t: 'source = "csv-sequences"\ntime_column = "step"\npath = "'
                                     + _write(t / "dup.csv", SEQ + "a,0,1,x\na,0,2,x\nb,0,1,y\n") + '"',
                                     ["dup.csv, row 3", "column 'step'", "row 2"]),
    "csv-text: empty": (lambda t: f'source = "csv-text"\npath = "{BAD / "empty.csv"}"', ["empty.csv", "empty"]),
    "csv-text: misspelt column": (lambda t: f'source = "csv-text"\npath = "{FIX / "texts.csv"}"\ntext_column = "txt"',
                                  ["texts.csv, row 1", "did you mean 'text'"]),
    "csv-text: label unseen in training": (lambda t: f'source = "csv-text"\npath = "{FIX / "texts.csv"}"\n'
                                           f'test_path = "{FIX / "texts_test_unseen.csv"}"',
                                           ["texts_test_unseen.csv, row 3", "'neutral'", "never occurs"]),
    "csv-text: empty label": (lambda t: 'source = "csv-text"\npath = "'
                              + _write(t / "nolabel.csv", "text,label\nhello,\nworld,neg\n") + '"',
                              ["nolabel.csv, row 2", "column 'label'"]),
    "csv-text: latin-1 bytes": (lambda t: 'source = "csv-text"\npath = "'
                                + _write(t / "latin.csv", "text,label\ncaf\xe9,pos\n".encode("latin-1")) + '"',
                                ["latin.csv, row 2", "encoding"]),
    "csv-text: max_tokens 0": (lambda t: f'source = "csv-text"\npath = "{FIX / "texts.csv"}"\nmax_tokens = 0',
                               ["'max_tokens'", "got 0"]),
    "text-file: missing": (lambda t: 'source = "text-file"\npath = "nope.txt"', ["data.path", "not found"]),
    "text-file: empty": (lambda t: 'source = "text-file"\npath = "' + _write(t / "empty.txt", "") + '"',
                         ["empty.txt", "empty"]),
    "text-file: whitespace only": (lambda t: 'source = "text-file"\npath = "' + _write(t / "ws.txt", " \n\t\n")
                                   + '"', ["ws.txt", "empty"]),
    "text-file: binary": (lambda t: 'source = "text-file"\npath = "' + _write(t / "bin.txt", bytes(range(256)) * 4)
                          + '"', ["bin.txt, row 2", "cannot decode"]),
    "text-file: seq_len beyond the text": (lambda t: f'source = "text-file"\npath = "{FIX / "tiny.txt"}"\n'
                                           "seq_len = 1000000", ["tiny.txt", "seq_len"]),
    "text-file: zero seq_len": (lambda t: f'source = "text-file"\npath = "{FIX / "tiny.txt"}"\nseq_len = 0',
                                ["'seq_len'", "got 0"]),
    "text-file: unknown encoding": (lambda t: f'source = "text-file"\npath = "{FIX / "tiny.txt"}"\n'
                                    'encoding = "utf-42"', ["tiny.txt", "'utf-42'"]),
    "imdb-folder: missing": (lambda t: 'source = "imdb-folder"\npath = "nope"', ["data.path", "not found"]),
    "imdb-folder: empty folder": (lambda t: 'source = "imdb-folder"\npath = "' + _mkdir(t / "emptydir") + '"',
                                  ["emptydir", "no class folders"]),
    "imdb-folder: misspelt class": (lambda t: f'source = "imdb-folder"\npath = "{FIX / "imdb"}"\n'
                                    'classes = ["pos", "ngative"]', ["imdb/train", "'ngative'", "'classes'"]),
    "imdb-folder: no classes": (lambda t: f'source = "imdb-folder"\npath = "{FIX / "imdb"}"\nclasses = []',
                                ["imdb/train", "'classes'"]),
    "imdb-folder: label unseen in training": (lambda t: 'source = "imdb-folder"\npath = "' + _unseen_imdb(t) + '"',
                                              ["test/c/", "'c'", "never occurs"]),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_data_file_is_one_line_exit_2(tmp_path, capsys, case):
    data, expect = FILE_CASES[case]
    refused(tmp_path, "[data]\n" + data(tmp_path) + "\n" + TRAIN, capsys, *expect)
    assert not (tmp_path / "run").exists()


def test_unseen_labels_can_be_dropped(tmp_path):
    s = load("csv-text", path=str(FIX / "texts.csv"), test_path=str(FIX / "texts_test_unseen.csv"),
             unseen_labels="drop")
    assert s.meta["class_names"] == ["neg", "pos"] and len(s.test) > 0
    s = load("imdb-folder", path=_unseen_imdb(tmp_path), unseen_labels="drop")
    assert sorted(s.meta["class_names"]) == ["a", "b"] and len(s.test) == 3


# ---------------------------------------------------------------------------------------------
# huge files: load, or refuse cleanly (generated in tmp_path, never committed)
# ---------------------------------------------------------------------------------------------
def _big_series(path: Path, mb: float, bad_last: bool = False) -> int:
    rng = np.random.default_rng(0)
    n = int(mb * 2**20 / 24)
    v = rng.normal(size=(n, 2))
    with open(path, "w") as fh:
        fh.write("t,a,b\n")
        for i in range(0, n, 100_000):
            fh.write("".join(f"{i + j},{a:.6f},{b:.6f}\n" for j, (a, b) in enumerate(v[i:i + 100_000])))
        if bad_last:
            fh.write(f"{n},oops,1.0\n")
    return n


@pytest.mark.parametrize("mb", [5, pytest.param(50, marks=pytest.mark.slow)])
def test_huge_csv_loads_or_names_the_bad_row(tmp_path, capsys, mb):
    good = tmp_path / "big.csv"
    n = _big_series(good, mb)
    s = load("csv-series", path=str(good), target="a", window=12)
    assert len(s.train) + len(s.val) + len(s.test) > 0.9 * n
    bad = tmp_path / "bad.csv"
    n = _big_series(bad, mb, bad_last=True)
    refused(tmp_path, f'[data]\nsource = "csv-series"\npath = "{bad}"\ntarget = "a"\n' + TRAIN, capsys,
            f"bad.csv, row {n + 2}", "column 'a'", "'oops'")


@pytest.mark.parametrize("mb", [5, pytest.param(50, marks=pytest.mark.slow)])
def test_huge_text_file_loads(tmp_path, mb):
    words = np.array(["alpha", "beta", "gamma", "lstm", "gradient", "the", "of", "and"])
    text = " ".join(np.random.default_rng(0).choice(words, size=int(mb * 2**20 / 6)))
    path = tmp_path / "big.txt"
    path.write_text(text)
    s = load("text-file", path=str(path), seq_len=100)
    assert len(s.train) > 0 and s.meta["vocab_size"] < 64


# ---------------------------------------------------------------------------------------------
# a refused command leaves an existing run directory alone
# ---------------------------------------------------------------------------------------------
def _digest(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_refused_commands_leave_the_run_dir_unchanged(tmp_path, capsys):
    good = ADD + LSTM + TRAIN
    rc, err = train_cli(tmp_path, good, capsys)
    assert rc == 0, err
    run_dir = tmp_path / "run"
    before = _digest(run_dir)
    assert "checkpoints/last.lstmlab" in before
    broken = tmp_path / "broken.csv"
    broken.write_text("t,a\n1,2\n2,x\n")
    attempts = [
        (good, ()),                                               # exists, no --resume
        ("[data\nsource=", ("--resume",)),                        # malformed TOML
        (ADD + LSTM + "[train]\nbatch_sise = 3\n", ("--resume",)),  # misspelt key
        (ADD + '[model]\nlayers = [{type = "LSTM", units = 4}, {type = "Dense"}]\n' + TRAIN, ("--resume",)),
        (f'[data]\nsource = "csv-series"\npath = "{broken}"\n' + LSTM + TRAIN, ("--resume",)),  # bad data
        (ADD.replace("length = 5", "length = 6") + LSTM + TRAIN, ("--resume",)),  # other data
    ]
    if not torch.cuda.is_available():  # a device that is not there
        attempts.append((ADD + LSTM + TRAIN.replace("verbose = 0", 'verbose = 0\ndevice = "cuda"'), ("--resume",)))
    for text, extra in attempts:
        rc, err = train_cli(tmp_path, text, capsys, extra=extra)
        assert rc == 2 and len(err) == 1 and err[0].startswith("lstmlab train: error:"), (text, err)
        assert _digest(run_dir) == before, text
    # a truncated checkpoint is named, and nothing else is touched
    last = run_dir / "checkpoints" / "last.lstmlab"
    last.write_bytes(last.read_bytes()[:100])
    before = _digest(run_dir)
    rc, err = train_cli(tmp_path, ADD + LSTM + TRAIN.replace("epochs = 1", "epochs = 2"), capsys, extra=("--resume",))
    assert rc == 2 and "last.lstmlab" in err[0] and "truncated or corrupt" in err[0], err
    assert _digest(run_dir) == before
    # --run-dir that is a file
    (tmp_path / "afile").write_text("x")
    rc, err = train_cli(tmp_path, good, capsys, run="afile")
    assert rc == 2 and "not a directory" in err[0]
