"""``lstmlab train``: a short run per data kind, the run directory, resume, divergence, generate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from lstmlab import generate as G
from lstmlab import train as T

FIX = Path(__file__).parent / "fixtures"

TINY_TRAIN = """
[train]
epochs = {epochs}
batch_size = 32
learning_rate = {lr}
clipnorm = 1.0
verbose = {verbose}
[train.monitor]
every = 2
"""


def run_cli(tmp_path: Path, data: str, model: str, epochs: int = 1, run: str = "run", extra: list[str] = (),
            capsys=None, lr: float = 0.01, verbose: int = 1) -> tuple[int, list[str], Path]:
    cfg = tmp_path / "cfg.toml"
    train = TINY_TRAIN.format(epochs=epochs, lr=lr, verbose=verbose)
    cfg.write_text(data + "\n[model]\n" + model + "\n" + train)
    run_dir = tmp_path / run
    rc = T.main([str(cfg), "--run-dir", str(run_dir), *extra])
    out = capsys.readouterr().out.strip().splitlines() if capsys is not None else []
    return rc, out, run_dir


def last_json(lines: list[str]) -> dict:
    assert lines, "nothing printed"
    return json.loads(lines[-1])


def check_run_dir(run_dir: Path, epochs: int) -> None:
    for name in ("config.resolved.toml", "config.resolved.json", "data_meta.json", "metrics.jsonl",
                 "gradient_health.jsonl", "model.lstmlab", "checkpoints/last.lstmlab",
                 "checkpoints/best.lstmlab", "checkpoints/state.json"):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == epochs and set(state["rng"]) == {"python", "numpy", "torch"}
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    health = [json.loads(line) for line in (run_dir / "gradient_health.jsonl").read_text().splitlines()]
    assert health and all("verdict" in h or "event" in h for h in health)


KINDS = {
    "task": ('[data]\nsource = "temporal-order"\nlength = 20\nn_train = 64\nn_val = 16\nn_test = 16',
             'layers = [{type = "LSTM", units = 6}, {type = "Dense"}]'),
    "packaged": ('[data]\nsource = "airline"\nwindow = 6',
                 'layers = [{type = "GRU", units = 4}, {type = "Dense"}]'),
    "csv-series": (f'[data]\nsource = "csv-series"\npath = "{FIX / "series.csv"}"\ntarget = "temperature"\n'
                   'window = 5', 'layers = [{type = "LSTM", units = 4}, {type = "Dense"}]'),
    "csv-sequences": (f'[data]\nsource = "csv-sequences"\npath = "{FIX / "sequences.csv"}"\n'
                      'time_column = "step"', 'layers = [{type = "LSTM", units = 4}, {type = "Dense"}]'),
    "csv-text": (f'[data]\nsource = "csv-text"\npath = "{FIX / "texts.csv"}"\nmax_len = 8',
                 'layers = [{type = "Embedding", output_dim = 4, mask_zero = true}, '
                 '{type = "LSTM", units = 4}, {type = "Dense"}]'),
    "text-file": (f'[data]\nsource = "text-file"\npath = "{FIX / "tiny.txt"}"\nseq_len = 16',
                  'layers = [{type = "Embedding", output_dim = 4}, {type = "LSTM", units = 8, '
                  'return_sequences = true}, {type = "Dense"}]'),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_train_each_data_kind(tmp_path, capsys, kind):
    data, model = KINDS[kind]
    rc, out, run_dir = run_cli(tmp_path, data, model, epochs=1, capsys=capsys)
    assert rc == 0, out
    res = last_json(out)
    assert res["status"] == "completed" and res["epochs"] == 1
    assert res["test"] is not None and res["test"]["loss"] > 0
    check_run_dir(run_dir, 1)
    if kind == "packaged":  # forecasting with a scaler: errors in the data's own units too
        assert res["test"]["rmse_original_units"] > 0 and res["baseline"]["persistence_test_rmse"] > 0
    if kind == "text-file":
        assert res["test"]["bits_per_char"] > 0
        vocab = json.loads((run_dir / "vocab.json").read_text())
        assert vocab["char_level"] and vocab["tokens"][:2] == ["<pad>", "<unk>"]


def test_default_model_when_layers_are_omitted(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[data]\nsource = "copy"\nlength = 5\nn_train = 32\nn_val = 8\nn_test = 8\n'
                   '[train]\nepochs = 1\nverbose = 0\n[train.monitor]\nenabled = false\n')
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and last_json(out)["status"] == "completed"  # verbose = 0: only the JSON line
    resolved = json.loads((tmp_path / "r" / "config.resolved.json").read_text())
    layers = resolved["model"]["layers"]
    assert [spec["type"] for spec in layers] == ["LSTM", "Dense"] and layers[0]["return_sequences"]
    assert layers[-1]["units"] == 10 and resolved["train"]["loss"] == "sparse_categorical_crossentropy"


ADDING = '[data]\nsource = "adding"\nlength = 12\nn_train = 96\nn_val = 32\nn_test = 32'
LSTM = 'layers = [{type = "LSTM", units = 6}, {type = "Dense"}]'


def test_resume_continues_exactly(tmp_path, capsys):
    rc, out, _ = run_cli(tmp_path, ADDING, LSTM, epochs=3, run="straight", capsys=capsys)
    assert rc == 0
    straight = last_json(out)
    rc, out, run_dir = run_cli(tmp_path, ADDING, LSTM, epochs=1, run="resumed", capsys=capsys)
    assert rc == 0 and last_json(out)["epochs"] == 1
    rc, out, _ = run_cli(tmp_path, ADDING, LSTM, epochs=1, run="resumed", capsys=capsys)
    assert rc == 2  # the run dir holds a run and --resume was not given
    rc, out, _ = run_cli(tmp_path, ADDING, LSTM, epochs=3, run="resumed", extra=["--resume"], capsys=capsys)
    assert rc == 0
    assert any("resuming after epoch 1" in line for line in out)
    resumed = last_json(out)
    assert resumed["epochs"] == 3
    check_run_dir(run_dir, 3)
    assert resumed["test"]["loss"] == pytest.approx(straight["test"]["loss"], rel=1e-4)
    assert resumed["val"]["loss"] == pytest.approx(straight["val"]["loss"], rel=1e-4)
    # resuming a finished run changes nothing; a changed [model] is refused
    rc, out, _ = run_cli(tmp_path, ADDING, LSTM, epochs=3, run="resumed", extra=["--resume"], capsys=capsys)
    assert rc == 0 and last_json(out)["epochs"] == 3
    assert T.main(["--run-dir", str(run_dir), "--resume"]) == 0  # the stored config is enough
    assert last_json(capsys.readouterr().out.strip().splitlines())["epochs"] == 3
    other = LSTM.replace("units = 6", "units = 7")
    rc, out, _ = run_cli(tmp_path, ADDING, other, epochs=4, run="resumed", extra=["--resume"], capsys=capsys)
    assert rc == 2


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    rc, out, run_dir = run_cli(tmp_path, ADDING, LSTM, epochs=1, capsys=capsys)
    assert rc == 0
    last = run_dir / "checkpoints" / "last.lstmlab"
    digest = hashlib.sha256(last.read_bytes()).hexdigest()
    # same run, resumed with an absurd learning rate and no clipping: the loss overflows
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(cfg.read_text().replace("epochs = 1", "epochs = 3").replace("learning_rate = 0.01",
                                                                              "learning_rate = 1e30")
                   .replace("clipnorm = 1.0\n", ""))
    rc = T.main([str(cfg), "--run-dir", str(run_dir), "--resume"])
    cap = capsys.readouterr()
    res = last_json(cap.out.strip().splitlines())
    assert rc == 1 and res["status"] == "diverged" and res["diverged_epoch"] == 2
    assert "NaN/Inf" in cap.err
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest
    assert json.loads((run_dir / "checkpoints" / "state.json").read_text())["epoch"] == 1


def test_generate_from_a_char_lm(tmp_path, capsys):
    data, model = KINDS["text-file"]
    rc, out, run_dir = run_cli(tmp_path, data, model, epochs=1, capsys=capsys, verbose=0)
    assert rc == 0
    argv = [str(run_dir / "checkpoints" / "best.lstmlab"), "--prime", "The ", "--length", "25", "--seed", "3"]
    assert G.main(argv) == 0
    text = capsys.readouterr().out.rstrip("\n")
    assert text.startswith("The ") and len(text) == 29
    assert G.main(argv) == 0
    assert capsys.readouterr().out.rstrip("\n") == text  # seeded
    assert G.main([str(tmp_path / "nope.lstmlab")]) == 2
    assert "vocab.json" in capsys.readouterr().err


def test_example_configs_are_valid():
    from lstmlab.config import load_config

    examples = sorted((Path(__file__).parents[1] / "examples" / "configs").glob("*.toml"))
    assert examples
    for path in examples:
        cfg = load_config(path)
        assert cfg["data"]["source"] and cfg["train"]["epochs"] >= 1, path


def test_callbacks_of_the_caller_run_after_the_epoch_is_written(tmp_path):
    """``train(callbacks=...)`` (what a pruner or the doctor plugs in) sees each epoch's metrics row
    and checkpoint already on disk, and may stop the run there."""
    import lstmlab as ll
    from lstmlab.run import RunDir

    cfg = tmp_path / "cfg.toml"
    cfg.write_text(ADDING + "\n[model]\n" + LSTM + "\n" + TINY_TRAIN.format(epochs=4, lr=0.01, verbose=0))
    rd = RunDir(tmp_path / "run")
    seen = []

    class Prune(ll.Callback):
        def on_epoch_end(self, epoch, logs=None):
            state = json.loads(rd.state.read_text())
            seen.append((len(rd.read_jsonl(rd.metrics)), state["epoch"], logs["val_loss"]))
            if epoch == 1:
                self.model.stop_training = True

    res = T.train(cfg, rd.root, out=lambda *a, **k: None, callbacks=[Prune()])
    assert [(n, e) for n, e, _ in seen] == [(1, 1), (2, 2)]
    rows = rd.read_jsonl(rd.metrics)
    assert [r["val_loss"] for r in rows] == pytest.approx([v for _, _, v in seen])
    assert res["epochs"] == 2 and res["status"] == "stopped"
