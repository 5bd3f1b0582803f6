"""``lstmlab diagnose MODEL_FILE|RUN_DIR``: model files, run directories, options and errors."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import lstmlab as ll
from lstmlab.diagnostics.cli import add_parser, parse_options, resolve_target


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lstmlab")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["diagnose"] + argv)
    return args.func(args)


@pytest.fixture()
def model_file(tmp_path):
    model = ll.Sequential([ll.SimpleRNN(6, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse")
    model.build(torch.zeros(2, 4, 2))
    path = tmp_path / "rnn.lstmlab"
    model.save(path)
    return path


DATA = ["--data", "adding", "-o", "length=120", "-o", "n_train=16", "-o", "n_val=4", "-o", "n_test=4"]


def test_model_file(model_file, capsys):
    assert run_cli([str(model_file)] + DATA + ["--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "verdict: vanishing" in out and "replace SimpleRNN with LSTM or GRU" in out
    assert "simplernn/forward" in out and "(train, 8 sequences)" in out
    folder = model_file.with_name("rnn_diagnostics")
    for name in ("gradients.png", "gradients.svg", "report.json"):
        assert (folder / name).stat().st_size > 100
    assert json.loads((folder / "report.json").read_text())["verdict"] == "vanishing"


def test_run_dir_supplies_its_data(model_file, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.lstmlab").write_bytes(model_file.read_bytes())
    cfg = {"data": {"source": "adding", "length": 30, "n_train": 8, "n_val": 4, "n_test": 4, "seed": 0}}
    (run / "config.resolved.json").write_text(json.dumps(cfg))
    assert run_cli([str(run), "--split", "test", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert len(rep["per_step"]["simplernn/forward"]["dL_dh"]) == 30
    assert (run / "diagnostics" / "gradients.png").exists()
    out = tmp_path / "elsewhere"
    assert run_cli([str(run), "-o", "length=12", "--out", str(out)]) == 0   # options override the run's
    assert len(json.loads((out / "report.json").read_text())["per_step"]["simplernn/forward"]["dL_dh"]) == 12


def test_uncompiled_model_gets_loss_from_data_kind(tmp_path, capsys):
    model = ll.Sequential([ll.LSTM(4, seed=0), ll.Dense(1)])
    model.build(torch.zeros(2, 3, 2))
    path = tmp_path / "plain.lstmlab"
    model.save(path)
    assert run_cli([str(path)] + DATA[:2] + ["-o", "length=10", "-o", "n_train=4", "-o", "n_val=1",
                                             "-o", "n_test=1"]) == 0
    assert "verdict:" in capsys.readouterr().out


def test_errors(model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        run_cli([str(tmp_path / "missing.lstmlab")] + DATA)
    with pytest.raises(FileNotFoundError, match="model.lstmlab or checkpoints/last.lstmlab"):
        resolve_target(str(tmp_path))
    with pytest.raises(ValueError, match="--data"):
        run_cli([str(model_file)])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        run_cli([str(model_file), "--data", "adding", "-o", "length"])
    with pytest.raises(ValueError, match="unknown option 'lenght'"):
        run_cli([str(model_file), "--data", "adding", "-o", "lenght=3"])


def test_parse_options():
    assert parse_options(["a=1", "b=0.5", "c=true", "d=None", "e=text", "f=[1, 2]", "g= x=y "]) == \
        {"a": 1, "b": 0.5, "c": True, "d": None, "e": "text", "f": [1, 2], "g": "x=y"}


def test_main_cli_dispatch(model_file, capsys):
    cli = pytest.importorskip("lstmlab.cli")
    rc = cli.main(["diagnose", str(model_file)] + DATA)
    assert rc == 0 and "verdict: vanishing" in capsys.readouterr().out
    assert cli.main(["diagnose", str(model_file)]) == 2
