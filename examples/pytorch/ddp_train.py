"""lstmlab layers under DistributedDataParallel (gloo, processes on the CPU).

DDP broadcasts the parameters of rank 0 when it wraps a model, so they must have their shapes
by then: run the model once on a batch (a "dry run") before wrapping it.  Wrapping a model
whose lstmlab layers were never called fails with torch's own clear error ("Modules with
uninitialized parameters can't be used with DistributedDataParallel").

Each of ``world_size`` processes trains on its own shard of every batch; DDP averages the
gradients, so the run equals one process training on the whole batch (:func:`train_single`).

Run: ``python examples/pytorch/ddp_train.py [--world-size 2] [--steps N]``
(the same model trains under ``torchrun``: call :func:`train` from your own entry point).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lstmlab as ll


class BiAdder(nn.Module):
    """``ll.Bidirectional(ll.LSTM)`` -> ``ll.Dense`` -> ``nn.Linear``."""

    def __init__(self, units: int = 16) -> None:
        super().__init__()
        self.rnn = ll.Bidirectional(ll.LSTM(units))
        self.dense = ll.Dense(units, activation="tanh")
        self.head = nn.Linear(units, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dense(self.rnn(x)))


def _data(length: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    split = ll.data.adding_problem(length=length, n_train=n, n_val=0, n_test=0, seed=seed).train
    return torch.as_tensor(split.x), torch.as_tensor(split.y)


def _model(x: torch.Tensor, seed: int) -> BiAdder:
    torch.manual_seed(seed)
    model = BiAdder()
    with torch.no_grad():
        model(x[:2])  # the dry run: materialise the lazy weights before DDP sees them
    return model


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int, rank: int = 0,
          world: int = 1) -> list[float]:
    """SGD on batches ``[k*batch_size, (k+1)*batch_size)``; this rank takes every ``world``-th row."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for step in range(steps):
        lo = (step * batch_size) % x.shape[0]
        xb, yb = x[lo:lo + batch_size][rank::world], y[lo:lo + batch_size][rank::world]
        loss = nn.functional.mse_loss(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _worker(rank: int, world: int, init_file: str, out: str, steps: int, batch_size: int, seed: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x, y = _data(20, 256, seed)
        model = DistributedDataParallel(_model(x, seed))
        losses = train(model, x, y, steps, batch_size, rank, world)
        if rank == 0:
            torch.save({"state": model.module.state_dict(), "losses": losses}, out)
    finally:
        dist.destroy_process_group()


def main(world_size: int = 2, steps: int = 20, batch_size: int = 32, seed: int = 0) -> dict:
    """Train with ``world_size`` processes; returns rank 0's final ``state`` and its ``losses``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.pt")
        mp.spawn(_worker, args=(world_size, os.path.join(tmp, "init"), out, steps, batch_size, seed),
                 nprocs=world_size, join=True)
        result = torch.load(out, weights_only=True)
    print(f"{world_size} processes, {steps} steps: rank 0 loss {result['losses'][0]:.4f} -> {result['losses'][-1]:.4f}")
    return result


def train_single(steps: int = 20, batch_size: int = 32, seed: int = 0) -> dict:
    """The same training in one process on whole batches (what DDP must reproduce)."""
    x, y = _data(20, 256, seed)
    model = _model(x, seed)
    losses = train(model, x, y, steps, batch_size)
    return {"state": model.state_dict(), "losses": losses}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    main(world_size=args.world_size, steps=args.steps)
