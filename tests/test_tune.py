"""``lstmlab tune`` on one machine: [tune] validation, an exhaustive grid on SQLite, the report and
best.toml that re-trains to the same score, pruning, resuming a stopped study."""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from lstmlab import cli  # noqa: E402
from lstmlab import train as T  # noqa: E402
from lstmlab.config import ConfigError  # noqa: E402
from lstmlab.tune import load_tune, tune  # noqa: E402
from lstmlab.tune.storage import fail_orphans, ledger, open_storage, storage_url  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"

BASE = """
[data]
source = "adding"
length = 10
n_train = {n_train}
n_val = 64
n_test = 64

[model]
layers = [{{type = "LSTM", units = 8}}, {{type = "Dense"}}]

[train]
epochs = {epochs}
batch_size = 32
learning_rate = 1e-2
verbose = 0
"""


def write_cfg(tmp_path: Path, tune_table: str, epochs: int = 2, n_train: int = 128,
              name: str = "cfg") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(BASE.format(epochs=epochs, n_train=n_train) + "\n[tune]\n" + tune_table)
    return p


def load_study(run_dir: Path, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(storage_url(None, run_dir)))


# ---------------------------------------------------------------------------------------------
# [tune] validation: one line naming the key path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table, expect", [
    ('"model.layers.0.units" = {type = "choice", values = []}',
     'tune."model.layers.0.units".values: expected'),
    ('"model.layers.0.unitz" = {type = "choice", values = [4]}', "did you mean 'units'?"),
    ('"model.layers.5.units" = {type = "choice", values = [4]}', "index 5 is out of range"),
    ('"model.layers.0.units" = {type = "choice", values = [4.5]}',
     "model.layers[0].units: expected an integer"),
    ('"train.learning_rate" = {type = "float", low = 0.0, high = 1e-2, log = true}',
     "log scale needs low > 0"),
    ('"train.learning_rate" = {type = "float", low = 1e-2, high = 1e-3}', "expected a value above low"),
    ('"train.learning_rate" = {type = "flaot", low = 1e-3, high = 1e-2}', "did you mean 'float'?"),
    ('"train.learning_rate" = {type = "float", lo = 1e-3, high = 1e-2}',
     'tune."train.learning_rate".lo: unknown'),
    ('"train.batch_size" = {type = "int", low = 8, high = 0}', "expected a value above low"),
    ('"optim.lr" = {type = "float", low = 1e-3, high = 1e-2}', "tune.\"optim.lr\": unknown key"),
    ('metirc = "val_loss"\n"train.epochs" = {type = "int", low = 1, high = 2}', "did you mean 'metric'?"),
    ('sampler = "bayes"\n"train.epochs" = {type = "int", low = 1, high = 2}',
     "tune.sampler: unknown sampler"),
    ('pruner = "medain"\n"train.epochs" = {type = "int", low = 1, high = 2}', "did you mean 'median'?"),
    ('direction = "up"\n"train.epochs" = {type = "int", low = 1, high = 2}', "tune.direction: expected"),
    ('n_trials = 0\n"train.epochs" = {type = "int", low = 1, high = 2}',
     "tune.n_trials: expected a positive"),
    ('sampler = "grid"\n"train.learning_rate" = {type = "float", low = 1e-3, high = 1e-2}',
     "the grid sampler needs a finite set of values"),
    ('metric = "val_loss"', "tune: no search space"),
    ('"model.layers" = {type = "choice", values = [[{type = "LSTM", units = 4}, {type = "Dense"}]]}\n'
     '"model.layers.0.units" = {type = "choice", values = [4]}', "which is searched too"),
    ('"train.clipnorm" = {type = "choice", values = [1.0]}\n'
     '"train.clipnorm.x" = {type = "choice", values = [1]}',
     "which is searched too"),
])
def test_tune_table_errors_name_the_key(tmp_path, table, expect):
    cfg = write_cfg(tmp_path, table)
    with pytest.raises(ConfigError) as exc:
        load_tune(cfg)
    msg = str(exc.value)
    assert expect in msg and "\n" not in msg and str(cfg) in msg


def test_tune_cli_error_exits_2(tmp_path, capsys):
    cfg = write_cfg(tmp_path, '"train.learning_rate" = {type = "float", low = -1.0, high = 1e-2, log = true}')
    assert cli.main(["tune", str(cfg), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstmlab tune: error:") and "train.learning_rate" in err[0]
    no_tune = tmp_path / "plain.toml"
    no_tune.write_text(BASE.format(epochs=1, n_train=64))
    assert cli.main(["tune", str(no_tune), "--run-dir", str(tmp_path / "run2")]) == 2
    assert "tune: missing section" in capsys.readouterr().err


def test_search_space_forms(tmp_path):
    """Nested (unquoted) key paths, [n] indices, int steps, and choices of whole tables."""
    cfg = write_cfg(tmp_path, """
sampler = "grid"
train.batch_size = {type = "int", low = 16, high = 48, step = 16}
"model.layers[0]" = {type = "choice", values = [{type = "LSTM", units = 4}, {type = "GRU", units = 4}]}
""")
    spec = load_tune(cfg)
    assert spec.grid_space()["train.batch_size"] == [16, 32, 48]
    assert spec.grid_size() == 6
    layer = json.loads(spec.grid_space()["model.layers[0]"][1])
    out = spec.config_for({"model.layers[0]": layer, "train.batch_size": 32})
    assert out["model"]["layers"][0] == {"type": "GRU", "units": 4} and out["train"]["batch_size"] == 32
    assert "tune" not in out and spec.direction == "minimize"


# ---------------------------------------------------------------------------------------------
# an exhaustive grid on SQLite, the report, best.toml
# ---------------------------------------------------------------------------------------------
GRID = """
sampler = "grid"
metric = "val_loss"
"model.layers.0.units" = {type = "choice", values = [4, 8]}
"train.learning_rate" = {type = "choice", values = [1e-3, 1e-2, 3e-2]}
"""


def test_grid_on_sqlite_visits_exactly_the_grid(tmp_path, capsys):
    cfg = write_cfg(tmp_path, GRID, name="grid")
    run = tmp_path / "run"
    assert cli.main(["tune", str(cfg), "--run-dir", str(run)]) == 0
    printed = capsys.readouterr().out
    study = load_study(run, "grid")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = [(t.params["model.layers.0.units"], t.params["train.learning_rate"]) for t in done]
    assert len(study.trials) == 6
    assert sorted(points) == sorted(itertools.product([4, 8], [1e-3, 1e-2, 3e-2]))
    # one lstmlab train run per trial, with its gradient health next to its score
    for t in done:
        tdir = run / "trials" / f"{t.number:04d}"
        assert (tdir / "result.json").exists() and (tdir / "gradient_health.jsonl").stat().st_size > 0
        assert t.user_attrs["verdict"] in ("healthy", "vanishing", "exploding")
    rows = list(csv.DictReader((run / "trials.csv").open()))
    values = [float(r["val_loss"]) for r in rows]
    assert len(rows) == 6 and values == sorted(values)
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 7)]
    assert all(r["gradients"] not in ("", "-") for r in rows)
    md = (run / "trials.md").read_text()
    assert "| rank | trial | state | val_loss |" in md and md.count("| complete |") == 6
    for fig in ("history.png", "importance.png", "health.png"):
        assert (run / fig).stat().st_size > 1000
    assert "rank  trial" in printed and "best: trial" in printed
    best = json.loads((run / "best.json").read_text())["best"]
    assert best["value"] == study.best_value and best["trial"] == study.best_trial.number

    # best.toml is a plain training config that re-trains to the same score
    text = (run / "best.toml").read_text()
    assert "[tune]" not in text
    res = T.train(run / "best.toml", tmp_path / "retrain", out=lambda *a, **k: None)
    assert res["val"]["loss"] == pytest.approx(study.best_value, rel=1e-6, abs=1e-9)

    # running the worker again finds nothing left to do; --n-trials 0 only rewrites the report
    assert cli.main(["tune", str(cfg), "--run-dir", str(run), "--no-figures"]) == 0
    assert cli.main(["tune", str(cfg), "--run-dir", str(run), "--n-trials", "0", "--no-figures"]) == 0
    assert len(load_study(run, "grid").trials) == 6
    capsys.readouterr()
    # the run dir belongs to its study
    assert cli.main(["tune", str(cfg), "--run-dir", str(run), "--study", "other"]) == 2
    assert "holds trials of study 'grid'" in capsys.readouterr().err


def _grid_seed_running_first(name: str, choices: list, first) -> int:
    """A sampler seed with which optuna's (shuffled) grid runs ``first`` as trial 0."""
    for seed in range(50):
        study = optuna.create_study(sampler=optuna.samplers.GridSampler({name: choices}, seed=seed))
        if study.ask().suggest_categorical(name, choices) == first:
            return seed
    raise AssertionError("no seed found")


def test_pruning_stops_hopeless_trials(tmp_path):
    """An optimizer that learns too slowly is pruned after its first epoch by the median rule."""
    seed = _grid_seed_running_first("train.optimizer", ["adam", "sgd"], "adam")
    cfg = write_cfg(tmp_path, f"""
sampler = "grid"
seed = {seed}
pruner = "median"
pruner_options = {{n_startup_trials = 1, n_warmup_steps = 0}}
"train.optimizer" = {{type = "choice", values = ["adam", "sgd"]}}
""", epochs=4, n_train=256, name="prune")
    lines: list[str] = []
    res = tune(cfg, tmp_path / "run", out=lines.append, figures=False)
    study = load_study(tmp_path / "run", "prune")
    by_opt = {t.params["train.optimizer"]: t for t in study.trials}
    assert by_opt["adam"].state == optuna.trial.TrialState.COMPLETE and by_opt["adam"].number == 0
    assert by_opt["sgd"].state == optuna.trial.TrialState.PRUNED
    assert by_opt["sgd"].user_attrs["epochs"] < 4 and by_opt["sgd"].user_attrs["outcome"] == "pruned"
    assert res["complete"] == 1 and res["pruned"] == 1
    assert res["best"]["params"]["train.optimizer"] == "adam"
    assert any("pruned at epoch" in line for line in lines)


def test_random_budget_and_resume_after_kill(tmp_path):
    """A worker killed mid-trial (SIGKILL) loses nothing finished; the next worker retries its trial
    once the heartbeat is stale and finishes the budget exactly."""
    cfg = write_cfg(tmp_path, """
sampler = "random"
n_trials = 4
heartbeat_interval = 1
grace_period = 2
"train.learning_rate" = {type = "float", low = 1e-3, high = 1e-2, log = true}
""", epochs=3, n_train=384, name="rand")
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "lstmlab", "tune", str(cfg), "--run-dir", str(run), "--no-figures"]
    log = (tmp_path / "w1.log").open("w")
    w1 = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        dirs = sorted((run / "trials").glob("[0-9]*")) if (run / "trials").exists() else []
        done = [d for d in dirs if (d / "result.json").exists()]
        if done and any(not (d / "result.json").exists() for d in dirs):
            break
        assert w1.poll() is None, (tmp_path / "w1.log").read_text()
        time.sleep(0.05)
    else:
        pytest.fail("the worker never got to a second trial")
    os.kill(w1.pid, signal.SIGKILL)
    w1.wait()
    finished_before = {int(d.name) for d in done}
    killed = max(int(d.name) for d in dirs if not (d / "result.json").exists())

    lines: list[str] = []
    res = tune(cfg, run, out=lines.append, figures=False)  # a new worker: resumes the study
    study = load_study(run, "rand")
    states = {t.number: t.state for t in study.trials}
    assert all(states[n] == optuna.trial.TrialState.COMPLETE for n in finished_before)
    assert states[killed] == optuna.trial.TrialState.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
    assert retry[0].params == next(t.params for t in study.trials if t.number == killed)
    led = ledger(study.trials)
    assert len(led.finished) == 4 == res["finished"] and res["complete"] == 4
    rows = list(csv.DictReader((run / "trials.csv").open()))
    assert any(r["state"] == "killed" and f"retried as {retry[0].number}" in r["note"] for r in rows)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_trial_orphaned_before_its_first_heartbeat_is_retried(tmp_path):
    """optuna's heartbeat check never fails a trial that has no heartbeat yet (its worker died right
    after creating it); fail_orphans does, and re-queues it."""
    storage = open_storage(storage_url(None, tmp_path), heartbeat_interval=1, grace_period=1, max_retry=1)
    study = optuna.create_study(study_name="orphan", storage=storage)
    orphan = study.ask()  # RUNNING, never started, no heartbeat
    started = study.ask()
    started.set_user_attr("started", f"elsewhere#{started.number}")
    assert fail_orphans(study, 60.0, max_retry=1) == 0  # too young
    assert fail_orphans(study, 0.0, max_retry=1) == 1
    states = {t.number: t.state for t in study.get_trials()}
    assert states[orphan.number] == optuna.trial.TrialState.FAIL
    assert states[started.number] == optuna.trial.TrialState.RUNNING
    retry = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == orphan.number]
    assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.WAITING
    assert ledger(study.get_trials()).counted == [t for t in study.get_trials() if t.number != orphan.number]


def test_failing_trials_stop_the_search_with_the_reason(tmp_path, capsys):
    """A space whose trials all fail at run time (here: an output layer that does not match the
    data's 9 classes) stops after three failures with the trials' own error, exit code 2."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("""
[data]
source = "japanese-vowels"
val_fraction = 0.2
[model]
layers = [{type = "LSTM", units = 4}, {type = "Dense", units = 9}]
[train]
epochs = 1
verbose = 0
[tune]
sampler = "random"
n_trials = 10
"model.layers.1.units" = {type = "choice", values = [5, 7, 8]}
""")
    assert cli.main(["tune", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "the first 3 trials all failed" in err and "expected 9 (the number of classes" in err
    study = load_study(tmp_path / "run", "bad")
    assert len(study.trials) == 3 and all(t.user_attrs["outcome"] == "error" for t in study.trials)


def test_metric_that_is_not_logged(tmp_path):
    table = 'metric = "val_acuracy"\n"train.learning_rate" = {type = "choice", values = [1e-2]}'
    cfg = write_cfg(tmp_path, table, epochs=1, n_train=64, name="metric")
    with pytest.raises(ConfigError, match=r"'val_acuracy' is not logged.*logged: val_loss, val_mae"):
        tune(cfg, tmp_path / "run", out=lambda *a: None, figures=False)
