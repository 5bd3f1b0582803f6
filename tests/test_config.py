"""Training configs: key-path errors with suggestions, types, files, TOML syntax, CLI exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstmlab import config as C
from lstmlab import train as T

FIX = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def cli(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    rc = T.main(argv)
    cap = capsys.readouterr()
    return rc, cap.out.strip().splitlines(), cap.err.strip().splitlines()


def err(tmp_path: Path, text: str) -> str:
    with pytest.raises(C.ConfigError) as exc:
        C.load_config(write(tmp_path, text))
    return str(exc.value)


def test_minimal_config_fills_defaults(tmp_path):
    cfg = C.load_config(write(tmp_path, '[data]\nsource = "adding"\nlength = 30\n'))
    assert cfg["data"] == {"source": "adding", "length": 30, "n_train": 10000, "n_val": 1000, "n_test": 1000,
                           "seed": 0}
    assert cfg["train"]["epochs"] == 10 and cfg["train"]["learning_rate"] == 1e-3
    assert cfg["model"]["layers"] is None  # chosen from the data later


def test_unknown_keys_name_the_path_and_suggest(tmp_path):
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train]\nbatch_sise = 3\n')
    assert "train.batch_sise: unknown key; did you mean 'batch_size'?" in msg
    assert msg.startswith(str(tmp_path / "cfg.toml"))
    msg = err(tmp_path, '[data]\nsource = "adding"\nlenght = 3\n')
    assert "data.lenght: unknown key; did you mean 'length'?" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[model]\nlayers = [{type = "LSTM", unit = 4}]\n')
    assert "model.layers[0].unit: unknown key; did you mean 'units'?" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[model]\nlayers = [{type = "LSTN", units = 4}]\n')
    assert "model.layers[0].type: unknown layer 'LSTN'; did you mean 'LSTM'?" in msg
    msg = err(tmp_path, '[data]\nsource = "addding"\n')
    assert "data.source: unknown source 'addding'; did you mean 'adding'?" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[trian]\nepochs = 1\n')
    assert "trian: unknown key; did you mean 'train'?" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train.monitor]\nevrey = 3\n')
    assert "train.monitor.evrey: unknown key; did you mean 'every'?" in msg


def test_wrong_types_say_expected_and_got(tmp_path):
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train]\nepochs = "10"\n')
    assert "train.epochs: expected an integer, got a string '10'" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\nlength = 1.5\n')
    assert "data.length: expected an integer, got a float 1.5" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[model]\nlayers = [{type = "LSTM", units = "8"}]\n')
    assert "model.layers[0].units: expected an integer, got a string '8'" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train]\nlearning_rate = -1.0\n')
    assert "train.learning_rate: expected a positive number, got -1.0" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train]\noptimizer = "adan"\n')
    assert "train.optimizer: unknown optimizer 'adan'; did you mean 'adam'?" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train]\nloss = "mse2"\n')
    assert "train.loss: unknown loss 'mse2'; did you mean 'mse'?" in msg


def test_missing_things(tmp_path):
    msg = err(tmp_path, '[data]\nsource = "csv-series"\npath = "nope.csv"\n')
    assert "data.path: file not found: 'nope.csv'" in msg and str(tmp_path / "nope.csv") in msg
    msg = err(tmp_path, '[data]\nsource = "csv-series"\n')
    assert "data.path: missing; data source 'csv-series' needs it" in msg
    msg = err(tmp_path, '[train]\nepochs = 1\n')
    assert "data: missing section" in msg
    msg = err(tmp_path, '[data]\nsource = "adding"\n[model]\nlayers = [{type = "LSTM"}]\n')
    assert "model.layers[0].units: missing" in msg
    with pytest.raises(C.ConfigError, match="no such config file"):
        C.load_config(tmp_path / "absent.toml")


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "s.csv").write_text((FIX / "series.csv").read_text())
    cfg = C.load_config(write(tmp_path / "d", '[data]\nsource = "csv-series"\npath = "s.csv"\n'))
    assert cfg["data"]["path"] == str((tmp_path / "d" / "s.csv").resolve())


def test_bad_toml_names_file_and_line(tmp_path):
    msg = err(tmp_path, '[data\nsource = "adding"\n')
    assert "invalid TOML" in msg and "line 1" in msg


def test_resolved_config_round_trips_through_toml(tmp_path):
    text = ('[data]\nsource = "adding"\nlength = 30\n[model]\nlayers = [{type = "LSTM", units = 8}, '
            '{type = "Dense"}]\n[train]\nepochs = 2\nclipnorm = 1.0\n[train.early_stopping]\npatience = 2\n')
    cfg = C.load_config(write(tmp_path, text))
    again = C.validate(C.tomllib.loads(C.dumps_toml(cfg)), tmp_path / "x.toml")
    assert again == cfg
    assert cfg["model"]["layers"][0]["unit_forget_bias"] is True  # layer defaults filled in


def test_layers_sized_from_the_data():
    from lstmlab.data import load

    meta = load("temporal-order", n_train=8, n_val=4, n_test=4).meta
    specs = C.resolve_layers({"layers": [{"type": "LSTM", "units": 4}, {"type": "Dense"}]}, meta)
    assert specs[-1]["units"] == 4 and specs[-1]["activation"] == "softmax"
    with pytest.raises(C.ConfigError, match="return_sequences = true"):
        meta = load("copy", length=5, n_train=8, n_val=4, n_test=4).meta
        C.resolve_layers({"layers": [{"type": "LSTM", "units": 4}, {"type": "Dense"}]}, meta)
    tokens = {"kind": "classification", "input_type": "tokens", "n_classes": 2, "vocab_size": 50,
              "target": "sequence", "name": "t"}
    with pytest.raises(C.ConfigError, match="start the model with an Embedding"):
        C.resolve_layers({"layers": [{"type": "LSTM", "units": 4}, {"type": "Dense"}]}, tokens)
    specs = C.resolve_layers({"layers": [{"type": "Embedding", "output_dim": 4}, {"type": "LSTM", "units": 4},
                                         {"type": "Dense"}]}, tokens)
    assert specs[0]["input_dim"] == 50


# --- through the command: exit 2 and one line -----------------------------------------------
@pytest.mark.parametrize("text, needle", [
    ('[data]\nsource = "adding"\n[train]\nbatch_sise = 3\n', "did you mean 'batch_size'?"),
    ('[data]\nsource = "adding"\n[train]\nepochs = "10"\n',
     "train.epochs: expected an integer, got a string"),
    ('[data]\nsource = "csv-series"\npath = "missing.csv"\n', "data.path: file not found: 'missing.csv'"),
    ('[data\nsource = "adding"\n', "invalid TOML"),
    ('[data]\nsource = "adding"\nlength = 5\n[model]\n'
     'layers = [{type = "LSTM", units = -1}, {type = "Dense"}]\n',
     "model.layers[0]: units: expected a positive integer, got -1"),
])
def test_cli_config_errors_exit_2_with_one_line(tmp_path, capsys, text, needle):
    rc, out, errl = cli([str(write(tmp_path, text)), "--run-dir", str(tmp_path / "run")], capsys)
    assert rc == 2
    assert len(errl) == 1 and errl[0].startswith("lstmlab train: error: ") and needle in errl[0]
    assert "Traceback" not in "\n".join(errl)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_data_error_names_file_and_row(tmp_path, capsys):
    text = f'[data]\nsource = "csv-series"\npath = "{FIX / "bad" / "non_numeric.csv"}"\nwindow = 3\n'
    rc, _, errl = cli([str(write(tmp_path, text)), "--run-dir", str(tmp_path / "run")], capsys)
    assert rc == 2 and len(errl) == 1
    assert "non_numeric.csv, row 17, column 'value': expected a number, got 'abc'" in errl[0]


def test_cli_missing_config_file(tmp_path, capsys):
    rc, _, errl = cli([str(tmp_path / "nope.toml"), "--run-dir", str(tmp_path / "run")], capsys)
    assert rc == 2 and "nope.toml: no such config file" in errl[0]


def test_debug_shows_the_exception(tmp_path):
    p = write(tmp_path, '[data]\nsource = "adding"\n[train]\nbatch_sise = 3\n')
    with pytest.raises(C.ConfigError):
        T.main([str(p), "--run-dir", str(tmp_path / "run"), "--debug"])


def test_main_cli_wires_train(tmp_path, capsys, monkeypatch):
    cli_mod = pytest.importorskip("lstmlab.cli")
    monkeypatch.setattr(cli_mod, "SUBCOMMANDS", ("lstmlab.train", "lstmlab.demo", "lstmlab.generate"))
    p = write(tmp_path, '[data]\nsource = "adding"\n[train]\nbatch_sise = 3\n')
    rc = cli_mod.main(["train", str(p), "--run-dir", str(tmp_path / "run")])
    assert rc == 2
    assert "did you mean 'batch_size'?" in capsys.readouterr().err


# --- NaN / Inf, 64-bit integers, nesting, odd values: refused naming the key (issue 12 items 8, 9) ---
ADD = {"source": "adding", "length": 5}
LSTM = [{"type": "LSTM", "units": 3}, {"type": "Dense"}]


def refused(raw: dict) -> str:
    with pytest.raises(C.ConfigError) as exc:
        C.validate(raw, "c.toml")
    return str(exc.value)


@pytest.mark.parametrize("value, want", [(float("nan"), "a number >= 0, got nan"),
                                         (float("inf"), "a number >= 0, got inf"),
                                         (-0.5, "a number >= 0, got -0.5")])
def test_early_stopping_min_delta_must_be_a_finite_number_at_least_0(value, want):
    msg = refused({"data": ADD, "train": {"early_stopping": {"min_delta": value}}})
    assert msg == f"c.toml: train.early_stopping.min_delta: expected {want}"


@pytest.mark.parametrize("train, key", [
    ({"monitor": {"clip_to": float("inf")}}, "train.monitor.clip_to"),
    ({"monitor": {"good_loss_factor": float("nan")}}, "train.monitor.good_loss_factor"),
    ({"optimizer_options": {"beta_1": float("nan")}}, "train.optimizer_options.beta_1"),
])
def test_every_float_in_train_is_finite(train, key):
    assert refused({"data": ADD, "train": train}).startswith(f"c.toml: {key}: expected a finite number")


def test_floats_in_untyped_data_and_layer_options_are_finite():
    masking = [{"type": "Masking", "mask_value": float("-inf")}] + LSTM
    msg = refused({"data": ADD, "model": {"layers": masking}})
    assert msg == "c.toml: model.layers[0].mask_value: expected a finite number, got -inf"
    bidi = [{"type": "Bidirectional", "layer": {"type": "LSTM", "units": 3, "dropout": float("nan")}}, LSTM[1]]
    assert refused({"data": ADD, "model": {"layers": bidi}}).startswith(
        "c.toml: model.layers[0].layer.dropout: expected a finite number, got nan")
    csv = {"source": "csv-series", "path": "x.csv", "features": ["a", [1.0, float("nan")]]}
    with pytest.raises(C.ConfigError, match=r"data\.features\[1\]\[1\]: expected a finite number, got nan"):
        C.validate({"data": csv}, "c.toml", check_files=False)


def test_optimizer_option_values_are_numbers_or_booleans():
    msg = refused({"data": ADD, "train": {"optimizer_options": {"beta_1": "high"}}})
    assert msg == "c.toml: train.optimizer_options.beta_1: expected a finite number or a boolean, got 'high'"


def test_monitor_arguments_are_checked_by_the_monitor_up_front():
    msg = refused({"data": ADD, "train": {"monitor": {"enabled": False, "on_nan": "explode"}}})
    assert msg.startswith("c.toml: train.monitor.on_nan: expected one of ") and msg.endswith("got 'explode'")
    msg = refused({"data": ADD, "train": {"monitor": {"growth_window": 1}}})
    assert msg == "c.toml: train.monitor.growth_window: expected an integer >= 2, got 1"


def test_integers_beyond_64_bits_are_refused_not_overflowed(tmp_path):
    msg = err(tmp_path, '[data]\nsource = "adding"\n[train]\nlearning_rate = 1' + "0" * 400 + "\n")
    assert msg.endswith("train.learning_rate: expected an integer that fits in 64 bits, got an integer of 1329 bits")
    msg = err(tmp_path, '[data]\nsource = "adding"\nlength = 1' + "0" * 5000 + "\n")
    assert "cfg.toml: invalid TOML: " in msg


def test_dates_and_impossible_file_names_are_refused(tmp_path):
    msg = err(tmp_path, '[data]\nsource = "csv-series"\npath = "s.csv"\ndelimiter = 1979-05-27\n')
    assert "data.delimiter: expected a number, a string, a boolean, an array or a table, got a date" in msg
    for name, why in (("~no-such-user-here/s.csv", "home directory"), ("a" * 5000, "File name too long"),
                      ("a\x00b.csv", "NUL")):
        msg = refused({"data": {"source": "csv-series", "path": name}})
        assert msg.startswith("c.toml: data.path: expected a file name, got ") and why in msg, msg
        assert len(msg) < 200


def nest(depth: int, kind: str) -> str:
    return {"array": "[" * depth + "1" + "]" * depth, "inline": "{a = " * depth + "1" + "}" * depth}[kind]


@pytest.mark.parametrize("text", [
    '[data]\nsource = "adding"\nlength = ' + nest(1000, "array") + "\n",
    '[data]\nsource = "adding"\n[model]\nname = ' + nest(1000, "inline") + "\n",
    '[data]\nsource = "adding"\n[train.optimizer_options]\n' + ".".join(["a"] * 1000) + " = 1\n",
    '[data]\nsource = "adding"\n[' + ".".join(["model"] + ["a"] * 999) + "]\n",
    '[data]\nsource = "adding"\nlength = ' + nest(40, "array") + "\n",
])
def test_deep_nesting_is_one_line_exit_2(tmp_path, capsys, text):
    rc, out, errl = cli([str(write(tmp_path, text)), "--run-dir", str(tmp_path / "run")], capsys)
    assert rc == 2 and len(errl) == 1, errl
    assert errl[0].startswith(f"lstmlab train: error: {tmp_path / 'cfg.toml'}: ") and "nested too deep" in errl[0]
    assert not (tmp_path / "run").exists()


def test_deep_dicts_are_refused_before_anything_recurses():
    deep: dict = {"units": 3}
    for _ in range(5000):
        deep = {"a": deep}
    msg = refused({"data": ADD, "model": {"layers": [{"type": "Bidirectional", "layer": deep}, LSTM[1]]}})
    assert msg.startswith("c.toml: model.layers[0].layer.a.a.") and "nested too deep" in msg
    tune = pytest.importorskip("lstmlab.tune")
    with pytest.raises(C.ConfigError, match="nested too deep"):
        tune.load_tune({"data": dict(ADD, seed=deep), "tune": {}})


def test_resolved_config_with_odd_keys_and_strings_round_trips():
    data = {"source": "csv-series", "path": "/x.csv", "features": {"é key": {"x.y": [1, {"z": "\x01"}]}}}
    cfg = C.validate({"data": data, "model": {"name": "n\x7fé\"\\\n", "layers": LSTM}}, "c.toml",
                     check_files=False)
    text = C.dumps_toml(cfg)
    assert C.validate(C.tomllib.loads(text), "c.toml", check_files=False) == cfg


def test_schema_defaults_types_and_constraints_come_from_one_declaration():
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(C.Train)}
    assert list(fields) == list(C.TRAIN_DEFAULTS)
    resolved = C.validate({"data": ADD}, "c.toml")["train"]
    for name, f in fields.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if name not in ("learning_rate", "monitor"):  # filled from the optimizer / the monitor
            assert resolved[name] == default, name
    # the monitor table builds the monitor it describes, with its defaults
    from lstmlab.diagnostics import GradientMonitor

    mon = resolved["monitor"]
    gm = GradientMonitor(**{k: v for k, v in mon.items() if k != "enabled"} | {"every": 3})
    assert gm.clip_to == mon["clip_to"] and gm.max_restores == mon["max_restores"]
