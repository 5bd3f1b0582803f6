"""Crash-safe runs: SIGKILL at a random moment, ``--resume``, and the weights are bit-identical to
an uninterrupted run; no checkpoint is ever half-written; NaN never overwrites the last good one.

The random kill time is printed (and can be fixed with ``LSTMLAB_KILL_SEED``) so a failure can
be replayed.  Subprocesses run with one thread so the machine's load does not matter.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lstmlab import saving
from lstmlab.run import cli as T
from lstmlab.run.checkpoint import RunCheckpoint, read_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"

CONFIG = """
[data]
source = "adding"
length = 10
n_train = 64
n_val = 16
n_test = 16
[model]
layers = [{{type = "LSTM", units = 6, dropout = 0.2}}, {{type = "Dense"}}]
[train]
epochs = {epochs}
batch_size = 8
learning_rate = {lr}
checkpoint_every = {every}
seed = 11
verbose = 1
[train.monitor]
every = 3
"""


def _config(path: Path, epochs: int = 4, every: int = 2, lr: float = 0.01) -> Path:
    path.write_text(CONFIG.format(epochs=epochs, every=every, lr=lr))
    return path


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def _cmd(cfg: Path, run_dir: Path, resume: bool = False) -> list[str]:
    return [sys.executable, "-m", "lstmlab", "train", str(cfg), "--run-dir", str(run_dir)] + \
        (["--resume"] if resume else [])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return saving.model_state(saving.read(path)[0])


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def _check_checkpoints(run_dir: Path) -> None:
    """Every checkpoint file present loads; state.json parses (never half-written)."""
    ckpt = run_dir / "checkpoints"
    if not ckpt.exists():
        return
    for f in ckpt.glob("*.lstmlab"):
        weights, _, state = read_checkpoint(f)
        assert weights and state is not None and all(torch.isfinite(w).all() for w in weights.values()), f
    if (ckpt / "state.json").exists():
        json.loads((ckpt / "state.json").read_text())


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: its final weights, metrics and how long training took."""
    tmp = tmp_path_factory.mktemp("straight")
    cfg = _config(tmp / "cfg.toml")
    t0 = time.time()
    proc = subprocess.Popen(_cmd(cfg, tmp / "run"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    started = None
    while proc.poll() is None:
        if started is None and (tmp / "run" / "metrics.jsonl").exists():
            started = time.time()
        time.sleep(0.01)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    end = time.time()
    return {"weights": _weights(tmp / "run" / "model.lstmlab"), "rows": _rows(tmp / "run"),
            "train_s": end - (started or t0), "health": (tmp / "run" / "gradient_health.jsonl").read_text()}


def _kill_at_random(cfg: Path, run_dir: Path, resume: bool, window: float, rng: random.Random) -> bool:
    """Start a run, SIGKILL it a random time after training starts; False if it finished first."""
    proc = subprocess.Popen(_cmd(cfg, run_dir, resume), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    marker = run_dir / "metrics.jsonl"
    before = marker.stat().st_mtime_ns if marker.exists() else None
    delay = rng.uniform(0.0, window)
    t_start = None
    while proc.poll() is None:
        if t_start is None and marker.exists() and (not resume or marker.stat().st_mtime_ns != before):
            t_start = time.time()  # the run directory is set up: training has begun
        if t_start is not None and time.time() - t_start >= delay:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            print(f"killed {'the resumed' if resume else 'the'} run {delay:.2f}s into training")
            return True
        time.sleep(0.005)
    return False


def test_sigkill_then_resume_is_bit_exact(straight, tmp_path):
    seed = int(os.environ.get("LSTMLAB_KILL_SEED", random.SystemRandom().randrange(10**6)))
    print(f"LSTMLAB_KILL_SEED={seed}")
    rng = random.Random(seed)
    cfg = _config(tmp_path / "cfg.toml")
    run_dir = tmp_path / "run"
    kills = 0
    for _ in range(2):  # kill the first run and then the first resume
        has_ckpt = (run_dir / "checkpoints" / "last.lstmlab").exists()
        kills += _kill_at_random(cfg, run_dir, has_ckpt, straight["train_s"], rng)
        _check_checkpoints(run_dir)
    has_ckpt = (run_dir / "checkpoints" / "last.lstmlab").exists()
    done = subprocess.run(_cmd(cfg, run_dir, has_ckpt), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert kills >= 1
    assert json.loads(done.stdout.strip().splitlines()[-1])["status"] == "completed"
    assert _same(_weights(run_dir / "model.lstmlab"), straight["weights"])
    assert _rows(run_dir) == straight["rows"]
    assert (run_dir / "gradient_health.jsonl").read_text() == straight["health"]
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))  # leftovers of a cut write are cleaned


class _Crash(BaseException):
    """Stands in for a crash inside the training loop (in-process, deterministic)."""


@pytest.mark.parametrize("crash_step", [3, 9, 13])  # mid-epoch 1, first step of epoch 2, mid-epoch 2
def test_resume_mid_epoch_in_process(tmp_path, monkeypatch, crash_step):
    torch.set_num_threads(1)
    cfg = _config(tmp_path / "cfg.toml", epochs=2, every=1)
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "a")]) == 0
    original = RunCheckpoint.batch_done

    def crash(self, done):  # after the step and its callbacks, before a pending snapshot is written
        if self.model.global_step == crash_step:
            raise _Crash
        original(self, done)

    monkeypatch.setattr(RunCheckpoint, "batch_done", crash)
    with pytest.raises(_Crash):
        T.main([str(cfg), "--run-dir", str(tmp_path / "b")])
    monkeypatch.setattr(RunCheckpoint, "batch_done", original)
    state = json.loads((tmp_path / "b" / "checkpoints" / "state.json").read_text())
    # a snapshot is written once the next step's loss is finite: the crash at step c leaves the one
    # of step c - 2, or the end-of-epoch checkpoint (step 8) when c is the first step of epoch 2
    expected = {3: (1, 1), 9: (8, 0), 13: (11, 3)}[crash_step]
    assert (state["global_step"], state["batch"]) == expected
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "b"), "--resume"]) == 0
    assert _same(_weights(tmp_path / "a" / "model.lstmlab"), _weights(tmp_path / "b" / "model.lstmlab"))
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")


def test_nan_never_overwrites_the_last_good_checkpoint(tmp_path, capsys):
    torch.set_num_threads(1)
    cfg = _config(tmp_path / "cfg.toml", epochs=1, every=1)
    run_dir = tmp_path / "run"
    assert T.main([str(cfg), "--run-dir", str(run_dir)]) == 0
    last = run_dir / "checkpoints" / "last.lstmlab"
    digest = hashlib.sha256(last.read_bytes()).hexdigest()
    # resumed with an absurd learning rate: the first step's weights are finite but give NaN
    _config(cfg, epochs=3, every=1, lr=1e30)
    cfg.write_text(cfg.read_text().replace("[train.monitor]\nevery = 3", "[train.monitor]\nenabled = false"))
    rc = T.main([str(cfg), "--run-dir", str(run_dir), "--resume"])
    cap = capsys.readouterr()
    assert rc == 1 and json.loads(cap.out.strip().splitlines()[-1])["status"] == "diverged"
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest
    _check_checkpoints(run_dir)
    assert all(torch.isfinite(w).all() for w in _weights(run_dir / "model.lstmlab").values())


# ---------------------------------------------------------------------------------------------
# the gradient monitor's fixes survive a resume (issue 12, item 1)
# ---------------------------------------------------------------------------------------------
FIX_CONFIG = """
[data]
source = "adding"
length = 20
n_train = 64
n_val = 16
n_test = 16
[model]
layers = [{{type = "SimpleRNN", units = 8, activation = "relu", recurrent_initializer = "identity"}},
          {{type = "Dense"}}]
[train]
epochs = 4
batch_size = 8
optimizer = "sgd"
learning_rate = {lr}
checkpoint_every = 8
seed = 2
verbose = 0
[train.monitor]
{monitor}
"""
NAN_FIX = 'every = 2\non_nan = "fix"'  # the case: the rate is halved at each rollback
CLIP_FIX = 'every = 1\non_exploding = "fix"\non_param_growth = "fix"\ngrowth_window = 2\ngrowth_ratio = 1.0'


def _health(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "gradient_health.jsonl").read_text().splitlines()]


def _crash_at(monkeypatch, step: int):
    """Make ``RunCheckpoint.batch_done`` raise once the run reaches ``step``; returns the undo."""
    original = RunCheckpoint.batch_done

    def crash(self, done):
        if self.model.global_step == step:
            raise _Crash
        original(self, done)

    monkeypatch.setattr(RunCheckpoint, "batch_done", crash)
    return lambda: monkeypatch.setattr(RunCheckpoint, "batch_done", original)


@pytest.mark.parametrize("lr, monitor, crash_step, events", [
    (5.0, NAN_FIX, 13, {"restore"}),  # SGD lr 5, relu identity RNN: killed in epoch 2 after 6 rollbacks
    (5.0, NAN_FIX, 20, {"restore"}),  # killed in epoch 3, after the rollbacks of epoch 2
    (0.1, CLIP_FIX, 11, {"clip", "weight_decay"}),  # clipping and weight decay switched on in epoch 1
])
def test_resume_is_exact_after_the_monitors_fixes(tmp_path, monkeypatch, lr, monitor, crash_step, events):
    """Every learning rate the monitor halved, the clipping and weight decay it switched on and its
    rollback snapshot are in the checkpoint: the resumed run is the uninterrupted one, bit for bit."""
    torch.set_num_threads(1)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FIX_CONFIG.format(lr=lr, monitor=monitor))
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "a")]) == 0
    straight = _health(tmp_path / "a")
    fixes = [e for e in straight if e.get("event") in events and e["step"] < crash_step]
    assert {e["event"] for e in fixes} == events  # the fixes happened before the crash
    if "restore" in events:  # and more rollbacks after the checkpoint the resume starts from
        assert [e["step"] for e in straight if e.get("event") == "restore" and 8 < e["step"] <= crash_step]
    undo = _crash_at(monkeypatch, crash_step)
    with pytest.raises(_Crash):
        T.main([str(cfg), "--run-dir", str(tmp_path / "b")])
    undo()
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "b"), "--resume"]) == 0
    assert _same(_weights(tmp_path / "a" / "model.lstmlab"), _weights(tmp_path / "b" / "model.lstmlab"))
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")  # the rows hold each epoch's learning rate
    assert _health(tmp_path / "b") == straight  # rollbacks name the same restored steps and rates


def test_a_changed_learning_rate_on_resume_applies_and_is_said(tmp_path, monkeypatch, capsys):
    """A config whose learning rate differs from the run's is an explicit change: it wins, with a
    warning naming train.learning_rate; the same config keeps the checkpoint's (halved) rates."""
    torch.set_num_threads(1)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(FIX_CONFIG.format(lr=5.0, monitor=NAN_FIX).replace("epochs = 4", "epochs = 1"))
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    halved = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["lr"]
    assert halved < 5.0
    cfg.write_text(cfg.read_text().replace("epochs = 1", "epochs = 2"))
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "run"), "--resume"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["lr"] <= halved  # continued from the checkpoint's rate (or halved again)
    capsys.readouterr()
    cfg.write_text(cfg.read_text().replace("epochs = 2", "epochs = 3").replace("learning_rate = 5.0",
                                                                              "learning_rate = 0.001"))
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "run"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "train.learning_rate: 0.001 in the config, 5.0 when the run started" in err
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[2]["lr"] == 0.001


# ---------------------------------------------------------------------------------------------
# a kill between the metrics row and the checkpoint (issue 12, item 7)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("crash_epoch", [0, 1])
def test_a_crash_between_the_row_and_the_checkpoint_keeps_every_epoch_once(tmp_path, monkeypatch, crash_epoch):
    """The epoch's metrics row is written before its checkpoint; a crash right after the row leaves
    a row the checkpoint has not seen: the resume drops it and writes it again, once."""
    torch.set_num_threads(1)
    cfg = _config(tmp_path / "cfg.toml", epochs=3, every=5)
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "a")]) == 0
    original = RunCheckpoint.on_epoch_end
    seen: list[int] = []

    def crash(self, epoch, logs=None):  # the recorder (before it in the list) has written the row
        seen.append(len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()))
        if epoch == crash_epoch:
            raise _Crash
        original(self, epoch, logs)

    monkeypatch.setattr(RunCheckpoint, "on_epoch_end", crash)
    with pytest.raises(_Crash):
        T.main([str(cfg), "--run-dir", str(tmp_path / "b")])
    monkeypatch.setattr(RunCheckpoint, "on_epoch_end", original)
    assert seen[-1] == crash_epoch + 1  # the crashed epoch's row was on disk, its checkpoint was not
    assert T.main([str(cfg), "--run-dir", str(tmp_path / "b"), "--resume"]) == 0
    rows = _rows(tmp_path / "b")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows == _rows(tmp_path / "a")
    assert _same(_weights(tmp_path / "a" / "model.lstmlab"), _weights(tmp_path / "b" / "model.lstmlab"))
