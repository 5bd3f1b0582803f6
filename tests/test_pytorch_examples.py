"""The examples of docs/pytorch.md (examples/pytorch/), run small: the same code users run."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import torch

import lstmlab as ll

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pytorch"


@pytest.fixture
def example(monkeypatch):
    """Import an example by module name (its folder on sys.path, which spawned DDP workers inherit)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))

    def load(name: str):
        return importlib.import_module(name)

    return load


def test_plain_training_loop_learns_and_reloads_exactly(example):
    res = example("train_loop").main(steps=150, length=6, n=256)
    assert res["losses"][-1] < 0.5 * res["baseline"]
    assert res["reload_exact"]


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                    reason="lightning not installed (pip install lightning; it is in the test extra)")
def test_lightning_module_trains_with_an_optimizer_made_before_the_first_batch(example):
    res = example("lightning_module").main(epochs=10, length=6, n=1024)
    assert res["val_loss"] < 0.5 * res["baseline"]
    assert res["reload_exact"]


def test_ddp_with_two_gloo_processes_equals_one_process_on_whole_batches(example):
    ex = example("ddp_train")
    ddp = ex.main(world_size=2, steps=6, batch_size=32)
    single = ex.train_single(steps=6, batch_size=32)
    assert ddp["state"].keys() == single["state"].keys()
    for k, v in single["state"].items():
        torch.testing.assert_close(ddp["state"][k], v, atol=1e-5, rtol=1e-4, msg=k)
    assert not torch.equal(ddp["state"]["rnn.forward_layer.weight_hh"],
                           ex._model(torch.zeros(2, 20, 2), 0).state_dict()["rnn.forward_layer.weight_hh"])


def test_ddp_refuses_an_unbuilt_model_with_torchs_clear_error(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="uninitialized parameters.*dummy forward pass"):
            DistributedDataParallel(torch.nn.Sequential(ll.LSTM(3), torch.nn.Linear(3, 1)))
        built = torch.nn.Sequential(ll.GRU(3, input_size=2), torch.nn.Linear(3, 1))
        DistributedDataParallel(built)(torch.randn(2, 4, 2)).sum().backward()
        assert all(p.grad is not None for p in built.parameters())
    finally:
        dist.destroy_process_group()


def test_compile_and_export_example(example, tmp_path):
    res = example("compile_export").main(out=str(tmp_path), backend="aot_eager", length=8, n=16)
    assert res["compile_diff"] < 1e-5 and res["export_diff"] < 1e-5
    assert (tmp_path / "pooler.pt2").stat().st_size > 0
