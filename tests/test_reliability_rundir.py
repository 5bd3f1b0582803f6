"""The run directory under attack and accident (issue 12): a full disk, symlinked or odd run files,
a folder of user files, a damaged checkpoint state, two processes on one directory, a run that
diverges before its first checkpoint, a storage server that is down.

Every refusal is one line on stderr naming the file, folder or key, exit code 2, and leaves the
folder exactly as it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lstmlab import cli
from lstmlab.run import RunDir, files
from lstmlab.run.lock import RunLock, holder

SRC = Path(__file__).resolve().parents[1] / "src"

CONFIG = """
[data]
source = "adding"
length = 5
n_train = 32
n_val = 8
n_test = 8
[model]
layers = [{type = "LSTM", units = 3}, {type = "Dense"}]
[train]
epochs = EPOCHS
batch_size = 8
seed = 1
verbose = 0
[train.monitor]
every = 2
"""
TUNE = CONFIG + """
[tune]
sampler = "random"
n_trials = 1
"train.learning_rate" = {type = "float", low = 1e-3, high = 1e-2, log = true}
"""


def _cfg(tmp_path: Path, epochs: int = 1, text: str = CONFIG, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("EPOCHS", str(epochs)))
    return path


def _run(capsys, *argv: str) -> tuple[int, list[str], str]:
    """``lstmlab ARGV`` in this process: (exit code, stderr lines, stdout)."""
    rc = cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, [line for line in cap.err.splitlines() if line.strip()], cap.out


def _digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: file contents, symlink targets, kinds (the folder 'as it was')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        if p.is_symlink():
            out[key] = "-> " + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[key] = "dir" if p.is_dir() else "other"
    return out


def _refused(rc: int, err: list[str], *expect: str, tool: str = "train") -> str:
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"lstmlab {tool}: error:"), err
    assert "Traceback" not in err[0]
    for e in expect:
        assert e in err[0], (e, err[0])
    return err[0]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A finished 1-epoch run, trained once for the module."""
    tmp = tmp_path_factory.mktemp("pristine")
    assert cli.main(["train", str(_cfg(tmp)), "--run-dir", str(tmp / "run")]) == 0
    return tmp / "run"


@pytest.fixture
def trained(pristine, tmp_path, capsys):
    """A copy of the finished 1-epoch run (to resume with 2 epochs) and its config."""
    shutil.copytree(pristine, tmp_path / "run", symlinks=True)
    capsys.readouterr()
    return tmp_path / "run", _cfg(tmp_path, epochs=2)


# ---------------------------------------------------------------------------------------------
# item 5: one atomic writer, a full disk named, symlinks refused up front
# ---------------------------------------------------------------------------------------------
def _full_disk(monkeypatch, when) -> list[str]:
    """``os.write`` fails with ENOSPC for the files ``when(path)`` picks; returns the paths it refused."""
    real, refused = os.write, []

    def write(fd, data):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if when(path):
            refused.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    return refused


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_full_disk_mid_run_is_one_line_naming_the_file_and_leaves_no_debris(tmp_path, capsys, monkeypatch):
    cfg = _cfg(tmp_path, epochs=2)
    run = tmp_path / "run"
    refused = _full_disk(monkeypatch, lambda p: ".last.lstmlab." in p)
    rc, err, _ = _run(capsys, "train", cfg, "--run-dir", run)
    monkeypatch.undo()
    _refused(rc, err, str(run / "checkpoints" / "last.lstmlab"), "No space left on device")
    assert refused and all(os.path.basename(p).startswith(".last.lstmlab.") for p in refused)  # never the target
    assert not [p for p in run.rglob("*") if files.is_temporary(p.name)]
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_full_disk_for_the_report_keeps_the_run_and_names_the_page(tmp_path, capsys, monkeypatch):
    cfg = _cfg(tmp_path)
    run = tmp_path / "run"
    _full_disk(monkeypatch, lambda p: ".report.html." in p)
    rc, err, out = _run(capsys, "train", cfg, "--run-dir", run)
    monkeypatch.undo()
    assert rc == 0 and json.loads(out.splitlines()[-1])["status"] == "completed"
    assert any("report not written" in line and str(run / "report.html") in line and "No space left" in line
               for line in err), err
    assert not (run / "report.html").exists() and not [p for p in run.rglob("*") if files.is_temporary(p.name)]


def test_an_append_cut_short_is_cut_back(tmp_path, monkeypatch):
    """A JSON line that could be written only in part is removed, so the next line is whole."""
    path = tmp_path / "metrics.jsonl"
    files.append_jsonl(path, {"epoch": 1})
    real = os.write

    def half(fd, data):
        real(fd, bytes(data)[:5])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(files.WriteError, match="metrics.jsonl: cannot write"):
        files.append_jsonl(path, {"epoch": 2})
    monkeypatch.undo()
    files.append_jsonl(path, {"epoch": 3})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"epoch": 1}, {"epoch": 3}]


def test_a_train_log_is_never_opened_through_a_symlink(tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text("keep")
    (tmp_path / "train.log").symlink_to(outside)
    with pytest.raises(files.WriteError, match="symbolic link"):
        files.open_append(tmp_path / "train.log")
    assert outside.read_text() == "keep"


@pytest.mark.parametrize("name, make", [
    ("metrics.jsonl", "link"), ("metrics.jsonl", "dangling"), ("gradient_health.jsonl", "fifo"),
    ("checkpoints/state.json", "link"), ("report.html", "link"), ("tb", "dirlink"), ("result.json", "dir"),
])
def test_resume_refuses_symlinked_or_odd_run_files_up_front(trained, tmp_path, capsys, name, make):
    """Nothing is trained, read through or written: one line naming the file, the folder unchanged."""
    run, cfg = trained
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    target = run / name
    if target.is_dir():
        for p in sorted(target.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        target.rmdir()
    else:
        target.unlink(missing_ok=True)
    if make == "link":
        target.symlink_to(outside / "victim")
    elif make == "dangling":
        target.symlink_to(outside / "nothing-here")
    elif make == "dirlink":
        target.symlink_to(outside, target_is_directory=True)
    elif make == "fifo":
        os.mkfifo(target)
    else:
        target.mkdir()
    before, outside_before = _digest(run), _digest(outside)
    rc, err, _ = _run(capsys, "train", cfg, "--run-dir", run, "--resume")
    _refused(rc, err, str(target))
    assert _digest(run) == before and _digest(outside) == outside_before


def test_resume_from_the_stored_config_never_reads_a_planted_pipe(trained):
    """Without CONFIG, --resume reads config.resolved.json: a pipe there is refused, not waited on."""
    run, _ = trained
    (run / "config.resolved.json").unlink()
    os.mkfifo(run / "config.resolved.json")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run([sys.executable, "-m", "lstmlab", "train", "--run-dir", str(run), "--resume"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "config.resolved.json: expected a regular file, found a pipe" in done.stderr


# ---------------------------------------------------------------------------------------------
# item 6: a folder of user files is not a run directory
# ---------------------------------------------------------------------------------------------
def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    for name, text in (("notes", "my notes"), ("metrics.jsonl", '{"mine": 1}\n'), ("report.html", "<p>mine"),
                       (".notes.tmp", "draft"), (".notes.0123abcd.tmp", "also mine")):
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("argv", [("train", "CFG"), ("train", "CFG", "--resume"), ("tune", "TUNE")])
def test_a_folder_of_user_files_is_refused_and_left_alone(tmp_path, capsys, argv):
    folder = _user_folder(tmp_path)
    if "--resume" in argv:  # even with what looks like a checkpoint
        (folder / "checkpoints" / "last.lstmlab").write_bytes(b"x")
    before = _digest(folder)
    paths = {"CFG": _cfg(tmp_path), "TUNE": _cfg(tmp_path, text=TUNE, name="tune.toml")}
    rc, err, _ = _run(capsys, *[paths.get(a, a) for a in argv], "--run-dir", folder)
    _refused(rc, err, str(folder), "not an lstmlab run directory", tool=argv[0])
    assert _digest(folder) == before


def test_an_empty_folder_becomes_a_run_directory_and_kinds_do_not_mix(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rc, err, _ = _run(capsys, "train", _cfg(tmp_path), "--run-dir", run)
    assert rc == 0, err
    assert json.loads((run / RunDir.MARKER).read_text())["kind"] == "train" and RunDir(run).kind() == "train"
    before = _digest(run)
    rc, err, _ = _run(capsys, "tune", _cfg(tmp_path, text=TUNE, name="tune.toml"), "--run-dir", run)
    _refused(rc, err, str(run), "a train run directory", tool="tune")
    assert _digest(run) == before


def test_prepare_removes_only_its_own_temporary_files(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.create("train")
    rd.prepare()
    (rd.root / ".notes.tmp").write_text("user")
    (rd.root / ".x.ZZZZZZZZ.tmp").write_text("user")
    (rd.root / ".metrics.jsonl.0123abcd.tmp").write_text("ours: cut short")
    rd.prepare()
    assert sorted(p.name for p in rd.root.iterdir() if p.name.endswith(".tmp")) == [".notes.tmp", ".x.ZZZZZZZZ.tmp"]


# ---------------------------------------------------------------------------------------------
# item 9 (checkpoint part): a damaged training state is one line naming the file and the key
# ---------------------------------------------------------------------------------------------
def set_train_state(path: Path, edit) -> None:
    """Rewrite a checkpoint with ``edit(state)`` applied to its training state (or its JSON text,
    when ``edit`` returns a string)."""
    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as fh:
        meta = dict(fh.metadata())
    state = json.loads(meta["train_state"])
    new = edit(state)
    meta["train_state"] = new if isinstance(new, str) else json.dumps(state if new is None else new)
    save_file(tensors, str(path), metadata=meta)


def _set(path: str, value):
    def edit(state):
        *outer, last = path.split(".")
        d = state
        for k in outer:
            d = d[k]
        d[last] = value
    return edit


@pytest.mark.parametrize("edit, key", [
    (_set("rng", "garbage"), "train_state.rng"),
    (_set("global_step", None), "train_state.global_step"),
    (_set("epoch", -5), "train_state.epoch"),
    (_set("epoch", "1"), "train_state.epoch"),
    (_set("batch", 10**6), "train_state.batch"),
    (_set("status", "bogus"), "train_state.status"),
    (_set("rng.torch", [1, 2, 3]), "train_state.rng.torch"),
    (_set("rng.numpy", ["MT19937", [0] * 624, 10**6, 0, 0.0]), "train_state.rng.numpy"),
    (_set("rng.python", [3, [0] * 625, "x"]), "train_state.rng.python"),
    (_set("monitor_state.findings", 5), "train_state.monitor_state.findings"),
    (_set("settings", {"global_clipnorm": -1}), "train_state.settings.global_clipnorm"),
    (_set("epoch_sums", {"loss": [1.0]}), "train_state.epoch_sums.loss"),
    (lambda s: "{not json", "train_state: not valid JSON"),
    (lambda s: "[" * 100_000, "train_state: not valid JSON"),
    (lambda s: [1, 2], "train_state: expected a JSON object"),
])
def test_a_damaged_checkpoint_state_is_refused_naming_file_and_key(trained, capsys, edit, key):
    run, cfg = trained
    last = run / "checkpoints" / "last.lstmlab"
    set_train_state(last, edit)
    before = _digest(run)
    rc, err, _ = _run(capsys, "train", cfg, "--run-dir", run, "--resume")
    _refused(rc, err, f"{last}: {key}")
    assert _digest(run) == before


# ---------------------------------------------------------------------------------------------
# item 10: one process per run directory
# ---------------------------------------------------------------------------------------------
def _hold(run: Path, kind: str) -> subprocess.Popen:
    """Another process that claims ``run`` (as lstmlab train/tune do) and keeps it until killed."""
    code = ("import sys, time; from lstmlab.run import RunDir; lock = RunDir(sys.argv[1]).claim(sys.argv[2]); "
            "print('held', flush=True); time.sleep(600)")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen([sys.executable, "-c", code, str(run), kind], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("tool", ["train", "tune"])
def test_a_second_process_is_refused_naming_the_holder_until_it_dies(trained, tmp_path, capsys, tool):
    run, cfg = trained
    if tool == "tune":
        run, cfg = tmp_path / "study", _cfg(tmp_path, text=TUNE, name="tune.toml")
    holder_proc = _hold(run, tool)
    try:
        before = _digest(run)
        argv = ("train", cfg, "--run-dir", run, "--resume") if tool == "train" else ("tune", cfg, "--run-dir", run)
        rc, err, _ = _run(capsys, *argv)
        line = _refused(rc, err, str(run), "in use by", f"pid {holder_proc.pid}", socket.gethostname(), "-c",
                        tool=tool)
        assert "started" in line and _digest(run) == before
    finally:
        holder_proc.send_signal(signal.SIGKILL)  # the kernel releases a flock with its process
        holder_proc.wait()
    assert holder(run / RunDir.LOCK) is None
    if tool == "train":
        rc, err, out = _run(capsys, "train", cfg, "--run-dir", run, "--resume")
        assert rc == 0 and json.loads(out.splitlines()[-1])["epochs"] == 2, err
        assert (run / RunDir.LOCK).read_text() == ""  # released, the holder forgotten


def test_the_lock_is_exclusive_within_one_process_and_released(tmp_path):
    path = tmp_path / RunDir.LOCK
    with RunLock(path).acquire("train") as lock:
        assert lock.held and holder(path)["pid"] == os.getpid()
        with pytest.raises(Exception, match="held by pid"):
            RunLock(path).acquire("train")
    assert holder(path) is None and path.read_text() == ""


# ---------------------------------------------------------------------------------------------
# smaller: no model after an early divergence; tune and a storage that is down
# ---------------------------------------------------------------------------------------------
def test_a_run_that_diverges_before_its_first_checkpoint_writes_no_model(tmp_path, capsys):
    """SGD at lr 20 on a relu RNN with identity init: the loss overflows in epoch 1 while the weights
    are still finite (around 1e34); the docs promise the last good checkpoint's weights: there is none."""
    text = CONFIG.replace('{type = "LSTM", units = 3}', '{type = "SimpleRNN", units = 16, activation = "relu", '
                          'recurrent_initializer = "identity"}').replace("length = 5", "length = 20")
    text = text.replace("batch_size = 8", 'batch_size = 8\noptimizer = "sgd"\nlearning_rate = 20.0')
    text = text.replace("n_train = 32", "n_train = 64").replace("every = 2", "enabled = false")
    rc, err, out = _run(capsys, "train", _cfg(tmp_path, epochs=2, text=text), "--run-dir", tmp_path / "run")
    result = json.loads(out.splitlines()[-1])
    assert rc == 1 and result["status"] == "diverged" and result["model"] is None
    assert not (tmp_path / "run" / "model.lstmlab").exists()
    assert not (tmp_path / "run" / "checkpoints" / "last.lstmlab").exists()
    assert any("no model.lstmlab written: the run diverged before its first checkpoint" in line for line in err)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["model"] is None


def test_tune_creates_no_run_directory_when_the_storage_is_down(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "study"
    rc, err, _ = _run(capsys, "tune", _cfg(tmp_path, text=TUNE, name="tune.toml"), "--run-dir", run,
                      "--storage", f"postgresql://alice:secret@127.0.0.1:{port}/db")
    line = _refused(rc, err, "--storage", tool="tune")
    assert "secret" not in line and not run.exists()


def _two_group_model(lr: float):
    import lstmlab as ll

    model = ll.Sequential([ll.LSTM(3), ll.Dense(1)])
    model.compile(loss="mse", optimizer="sgd")
    model(torch.zeros(2, 4, 2))
    params = list(model.parameters())
    model.optimizer = torch.optim.SGD([{"params": params[:2], "lr": lr, "weight_decay": 0.0},
                                       {"params": params[2:], "lr": lr, "weight_decay": 0.0}])
    return model


@pytest.mark.parametrize("changed", [{}, {"learning_rate": (0.1, 0.3)}])
def test_every_parameter_groups_rate_and_decay_come_back_unless_the_config_changed_them(tmp_path, changed):
    """The monitor halves each group's rate and sets a weight decay; a checkpoint holds them per group
    and a resume restores them, unless [train] learning_rate changed (then every group takes it)."""
    from lstmlab.run.checkpoint import model_bytes
    from lstmlab.run.resume import load_weights, read_resume

    model = _two_group_model(0.1)
    groups = model.optimizer.param_groups
    groups[0]["lr"], groups[1]["lr"], groups[1]["weight_decay"] = 0.05, 0.0125, 1e-4
    path = tmp_path / "last.lstmlab"
    path.write_bytes(model_bytes(model, {"version": 1, "epoch": 1, "global_step": 4}))
    fresh = _two_group_model(0.3 if changed else 0.1)
    res = read_resume(path, tmp_path / "state.json")
    res.changed = changed
    load_weights(fresh, res, path)
    lrs = [g["lr"] for g in fresh.optimizer.param_groups]
    assert lrs == ([0.3, 0.3] if changed else [0.05, 0.0125])
    assert [g["weight_decay"] for g in fresh.optimizer.param_groups] == [0.0, 1e-4]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
