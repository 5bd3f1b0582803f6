"""``lstmlab tune --storage postgresql://...``: several workers, one study, on a real PostgreSQL server.

The fixture starts a throw-away cluster (initdb + pg_ctl, as the ``postgres`` OS user when the
tests run as root) on a free localhost port with its unix socket in a temporary directory; the
tests skip, saying why, when the server binaries or a driver are missing
(``scripts/system-deps.sh`` installs Debian's ``postgresql``)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from lstmlab.tune.storage import _pg_driver, ledger, open_storage, storage_url  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"

CFG = """
[data]
source = "adding"
length = 20
n_train = 1536                  # ~1 s a trial on a quiet 2-core machine: a worker can't finish the
                                # whole budget while the test waits for the heartbeat to expire
n_val = 64
n_test = 64

[model]
layers = [{type = "LSTM", units = 8}, {type = "Dense"}]

[train]
epochs = 3
batch_size = 32
verbose = 0

[tune]
sampler = "grid"
n_trials = 14                   # of a grid of 16: the budget, not the grid, ends this study
heartbeat_interval = 1
grace_period = 2
"model.layers.0.units" = {type = "choice", values = [4, 8, 12, 16]}
"train.learning_rate" = {type = "choice", values = [1e-3, 3e-3, 1e-2, 3e-2]}
"""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; run scripts/system-deps.sh")
    if _pg_driver() is None:
        pytest.skip("no PostgreSQL driver for SQLAlchemy; pip install 'psycopg[binary]'")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' OS user to run the server")
        if not runuser:
            pytest.skip("running as root without runuser to start the server as 'postgres'")
        as_user = [runuser, "-u", "postgres", "--"]
    tmp = tempfile.mkdtemp(prefix="lstmlab-pg-")
    if as_user:
        shutil.chown(tmp, "postgres", "postgres")
    os.chmod(tmp, 0o700)
    data, port = os.path.join(tmp, "data"), _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(as_user + list(args), cwd=tmp, capture_output=True, text=True, timeout=60)

    r = pg(initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.skip(f"initdb failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    opts = f"-p {port} -k {tmp} -c listen_addresses=localhost -c fsync=off -c max_connections=50"
    r = pg(pg_ctl, "-D", data, "-l", os.path.join(tmp, "server.log"), "-w", "-o", opts, "start")
    if r.returncode != 0:
        log = Path(tmp, "server.log").read_text() if Path(tmp, "server.log").exists() else r.stderr
        shutil.rmtree(tmp, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {log[-500:]}")
    try:
        yield f"postgresql://postgres@localhost:{port}/postgres"
    finally:
        pg(pg_ctl, "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


def _worker(cfg: Path, run_dir: Path, url: str, study: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "lstmlab", "tune", str(cfg), "--run-dir", str(run_dir), "--storage", url,
           "--study", study, "--no-figures"]
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _trial_dirs(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(finished, in progress) trial directories of one worker's run dir."""
    dirs = sorted((run_dir / "trials").glob("[0-9]*")) if (run_dir / "trials").exists() else []
    done = [d for d in dirs if (d / "result.json").exists()]
    return done, [d for d in dirs if d not in done]


def _kill_mid_trial(proc: subprocess.Popen, run_dir: Path, log: Path, min_done: int, timeout: float = 90,
                    also=lambda: True):
    """SIGKILL a worker while it trains, after it finished ``min_done`` trials (and ``also()``
    holds); return (numbers it finished, number it was running)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"worker exited early:\n{log.read_text()[-2000:]}"
        done, running = _trial_dirs(run_dir)
        if len(done) >= min_done and running and also():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return {int(d.name) for d in done}, int(running[-1].name)
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"worker never reached trial {min_done + 1}:\n{log.read_text()[-2000:]}")


def test_workers_share_a_study_survive_sigkill_and_resume(tmp_path, pg_url):
    """Two workers (separate run dirs, as on two machines) share one grid study.  Worker A is
    killed mid-trial: the heartbeat fails its trial and B runs it again.  Then B is killed too,
    so no worker is left; a third worker resumes the study.  In the end exactly ``n_trials``
    trials finished, no grid point ran twice, and nothing a killed worker finished was lost."""
    cfg = tmp_path / "pg_grid.toml"
    cfg.write_text(CFG)
    study_name = f"grid-{os.getpid()}"
    logs = {k: tmp_path / f"{k}.log" for k in "abc"}
    runs = {k: tmp_path / f"run_{k}" for k in "abc"}
    a = _worker(cfg, runs["a"], pg_url, study_name, logs["a"])
    b = _worker(cfg, runs["b"], pg_url, study_name, logs["b"])
    # both at work: A is killed in a trial once each has finished one
    a_done, a_killed = _kill_mid_trial(a, runs["a"], logs["a"], min_done=1,
                                       also=lambda: len(_trial_dirs(runs["b"])[0]) >= 1)
    # B, still working, finds A's trial silent (no heartbeat for grace_period) and runs it again
    storage = open_storage(storage_url(pg_url, tmp_path))
    deadline = time.time() + 60
    while not any(a_killed in t.system_attrs.get("retry_history", []) and t.state.is_finished()
                  for t in optuna.load_study(study_name=study_name, storage=storage).get_trials()):
        assert b.poll() is None and time.time() < deadline, logs["b"].read_text()[-2000:]
        time.sleep(0.2)
    b_done, b_killed = _kill_mid_trial(b, runs["b"], logs["b"], min_done=1)  # in its next trial

    c = _worker(cfg, runs["c"], pg_url, study_name, logs["c"])
    assert c.wait(timeout=120) == 0, logs["c"].read_text()[-3000:]

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    by_number = {t.number: t for t in trials}
    led = ledger(trials)
    complete = [t for t in led.finished if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(led.finished) == 14 == len(complete), [(t.number, t.state) for t in trials]
    assert not led.running and not led.waiting
    points = [(t.params["model.layers.0.units"], t.params["train.learning_rate"]) for t in complete]
    info = [(t.number, t.state.name, t.system_attrs.get("grid_id"), t.system_attrs.get("retry_history"),
             t.user_attrs.get("outcome"), t.user_attrs.get("worker"), t.params) for t in trials]
    assert len(set(points)) == len(points) == 14, info  # no grid point twice
    # what the killed workers finished is still there, as they left it
    for n in a_done | b_done:
        assert by_number[n].state == optuna.trial.TrialState.COMPLETE and n in {t.number for t in complete}
    assert {by_number[n].user_attrs["worker"] for n in a_done}.isdisjoint(
        {by_number[n].user_attrs["worker"] for n in b_done})
    # each killed trial was failed by the heartbeat and retried with the same parameters: A's by the
    # surviving worker B, B's by C, the worker that resumed the study
    workers = {}
    for killed in (a_killed, b_killed):
        assert by_number[killed].state == optuna.trial.TrialState.FAIL
        retry = [t for t in complete if killed in t.system_attrs.get("retry_history", [])]
        assert len(retry) == 1 and retry[0].params == by_number[killed].params
        workers[killed] = retry[0].user_attrs["worker"]
    assert workers[a_killed] == by_number[min(b_done)].user_attrs["worker"]
    assert workers[b_killed] not in {by_number[n].user_attrs["worker"] for n in a_done | b_done}
    # the resuming worker wrote the report over the whole study
    table = (runs["c"] / "trials.md").read_text()
    assert table.count("| complete |") == 14 and table.count("| killed |") == 2
    assert (runs["c"] / "best.toml").exists()
