"""Data-parallel ``lstmlab train`` under torchrun: 2 gloo ranks on localhost take the same steps as
1 process with the same global batch.

Tolerance: float64 models, weights within 1e-10 (absolute) after training; the only difference
is the order in which the ranks' gradient shares are summed.  The data set size is chosen so
the last global batch holds one sample: rank 1's slice is empty and it runs a weight-0 stand-in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmlab import distributed as D
from lstmlab import saving

SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _sequences_csv(path: Path, n: int = 41, seed: int = 0) -> None:
    """Variable-length sequences (3 to 9 steps, 2 features) with a label from their mean."""
    rng = np.random.default_rng(seed)
    lines = ["id,step,x1,x2,label"]
    for i in range(n):
        length = int(rng.integers(3, 10))
        xs = rng.normal(size=(length, 2))
        label = "up" if xs[:, 0].mean() > 0 else "down"
        lines += [f"s{i:03d},{t},{xs[t, 0]:.4f},{xs[t, 1]:.4f},{label}" for t in range(length)]
    path.write_text("\n".join(lines) + "\n")


def _config(tmp: Path, batch_size: int, epochs: int = 2) -> Path:
    csv = tmp / "seq.csv"
    if not csv.exists():
        _sequences_csv(csv)
    cfg = tmp / f"cfg{batch_size}_{epochs}.toml"
    cfg.write_text(f"""
[data]
source = "csv-sequences"
path = "{csv}"
time_column = "step"
val_fraction = 0.1
test_fraction = 0.1
[model]
dtype = "float64"
layers = [{{type = "LSTM", units = 5, engine = "fused"}}, {{type = "Dense"}}]
[train]
epochs = {epochs}
batch_size = {batch_size}
learning_rate = 0.02
clipnorm = 1.0
verbose = 0
seed = 3
[train.monitor]
every = 2
""")
    return cfg


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return saving.model_state(saving.read(path)[0])


def _run(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=timeout)
    if "torch.distributed.run" in argv and "(SIGABRT)" in out.stderr and "exitcode  : 2" not in out.stderr:
        # seen once in ~40 runs on a loaded 2-core VM: a rank aborted ("terminate called without an active
        # exception") around process-group teardown; retry once so that the flake does not fail CI, but say so
        print(f"torchrun run aborted (SIGABRT), retrying once:\n{out.stderr[-2000:]}", file=sys.stderr)
        argv = [a if not a.isdigit() or argv[i - 1] != "--master_port" else str(_free_port())
                for i, a in enumerate(argv)]
        out = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=timeout)
    return out


def _torchrun(n: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--nnodes", "1",
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "lstmlab", "train", *args]


def test_sharding_covers_each_global_batch_once():
    order = D.epoch_order(23, seed=5, epoch=1)
    assert torch.equal(order, D.epoch_order(23, seed=5, epoch=1))
    assert not torch.equal(order, D.epoch_order(23, seed=5, epoch=2))
    for batch in D.global_batches(order, batch_size=4, world=3):
        parts = [D.shard(batch, r, 3) for r in range(3)]
        real = torch.cat([p for p, ok in parts if ok])
        assert torch.equal(real, batch)
        assert all(len(p) >= 1 for p, _ in parts)
    last = D.global_batches(order, 4, 3)[-1]  # 23 = 12 + 11: the last batch has 11 samples
    assert len(last) == 11


def test_two_ranks_match_one_process(tmp_path):
    one = _run([sys.executable, "-m", "lstmlab", "train", str(_config(tmp_path, 8)), "--run-dir",
                str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-3000:]
    two = _run(_torchrun(2, str(_config(tmp_path, 4)), "--run-dir", str(tmp_path / "two")))
    assert two.returncode == 0, two.stderr[-3000:]
    res1 = json.loads(one.stdout.strip().splitlines()[-1])
    lines = [line for line in two.stdout.strip().splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 prints
    res2 = json.loads(lines[0])
    assert res2["world_size"] == 2 and res2["status"] == res1["status"] == "completed"

    w1, w2 = _weights(tmp_path / "one" / "model.lstmlab"), _weights(tmp_path / "two" / "model.lstmlab")
    assert set(w1) == set(w2)
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"max |w(1 process) - w(2 ranks)| = {worst:.3g}")
    assert worst < 1e-10, worst
    # metrics reduced over the ranks, validation on rank 0
    m1 = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(m1) == len(m2) == 2
    for a, b in zip(m1, m2):
        for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert a[k] == pytest.approx(b[k], abs=1e-10), k
    # gradient diagnostics from the whole global batch: same records, same verdicts
    h1 = [json.loads(x) for x in (tmp_path / "one" / "gradient_health.jsonl").read_text().splitlines()]
    h2 = [json.loads(x) for x in (tmp_path / "two" / "gradient_health.jsonl").read_text().splitlines()]
    assert [r.get("step") for r in h1] == [r.get("step") for r in h2] and h1
    for a, b in zip(h1, h2):
        assert a.get("verdict") == b.get("verdict")
        for k in ("loss", "grad_norm", "decay", "saturation"):
            if isinstance(a.get(k), float):
                assert a[k] == pytest.approx(b[k], rel=1e-8, abs=1e-12), k
    # rank 0 wrote the same run directory layout as a single process
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "one").iterdir())


def test_a_single_process_run_resumes_on_two_ranks(tmp_path):
    """Rank 0 reads the checkpoint and broadcasts it; the continued run matches 1 process throughout."""
    ref = _run([sys.executable, "-m", "lstmlab", "train", str(_config(tmp_path, 8)), "--run-dir",
                str(tmp_path / "ref")])
    assert ref.returncode == 0, ref.stderr[-3000:]
    first = _run([sys.executable, "-m", "lstmlab", "train", str(_config(tmp_path, 8, epochs=1)), "--run-dir",
                  str(tmp_path / "mixed")])
    assert first.returncode == 0, first.stderr[-3000:]
    rest = _run(_torchrun(2, str(_config(tmp_path, 4)), "--run-dir", str(tmp_path / "mixed"), "--resume"))
    assert rest.returncode == 0, rest.stderr[-3000:]
    res = json.loads(rest.stdout.strip().splitlines()[-1])
    assert res["epochs"] == 2 and res["world_size"] == 2
    assert len((tmp_path / "mixed" / "metrics.jsonl").read_text().splitlines()) == 2
    w1, w2 = _weights(tmp_path / "ref" / "model.lstmlab"), _weights(tmp_path / "mixed" / "model.lstmlab")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-10
    # a refused command under torchrun: every rank exits 2 with no traceback of ours, one line from
    # rank 0 only (torchrun then prints its own ChildFailedError report)
    bad = tmp_path / "bad.toml"
    bad.write_text(_config(tmp_path, 4).read_text().replace("batch_size = 4", "batch_sise = 4"))
    out = _run(_torchrun(2, str(bad), "--run-dir", str(tmp_path / "bad")))
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("lstmlab train: error:")]
    assert len(lines) == 1 and "train.batch_sise" in lines[0] and "did you mean 'batch_size'" in lines[0]
    # torchrun stops the other rank (SIGTERM) as soon as one exits non-zero, so one or both report exit code 2
    assert "exitcode  : 2" in out.stderr and "lstmlab/train.py" not in out.stderr
    assert not (tmp_path / "bad").exists()
