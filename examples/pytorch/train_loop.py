"""lstmlab layers in a plain PyTorch training loop.

A user's ``nn.Module`` holds an ``ll.LSTM`` (its input size comes from the first batch) and a
``torch.nn.Linear`` head.  The optimizer is built *before* the first call, as PyTorch code
usually does: the LSTM's weights are lazy parameters (``torch.nn.UninitializedParameter``)
that the first call materialises in place, so the optimizer trains them.  After training the
weights go through ``state_dict`` into a fresh, never-called model: ``load_state_dict`` sizes it.

Task: the adding problem (sum of the two marked numbers of a sequence).

Run: ``python examples/pytorch/train_loop.py [--steps N]``
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import lstmlab as ll


class Adder(nn.Module):
    """``ll.LSTM`` -> ``nn.Linear``: the last hidden state to one number."""

    def __init__(self, units: int = 32) -> None:
        super().__init__()
        self.rnn = ll.LSTM(units)  # no input_size: sized by the first batch
        self.head = nn.Linear(units, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x))


def main(steps: int = 300, length: int = 20, n: int = 512, batch_size: int = 64, seed: int = 0) -> dict:
    """Train, reload into a fresh model; returns the losses and whether the reload is exact."""
    torch.manual_seed(seed)
    split = ll.data.adding_problem(length=length, n_train=n, n_val=0, n_test=0, seed=seed).train
    x, y = torch.as_tensor(split.x), torch.as_tensor(split.y)
    model = Adder()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)  # before the first call
    losses = []
    for step in range(steps):
        idx = torch.randint(0, n, (batch_size,))
        loss = nn.functional.mse_loss(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {losses[-1]:.4f}")
    fresh = Adder()
    fresh.load_state_dict(model.state_dict())  # materialises the fresh model's lazy weights
    model.eval()
    fresh.eval()
    with torch.no_grad():
        exact = torch.equal(fresh(x), model(x))
    baseline = float(y.var())  # predicting the mean
    print(f"final loss {losses[-1]:.4f} (predicting the mean: {baseline:.4f}); reload exact: {exact}")
    return {"losses": losses, "baseline": baseline, "reload_exact": exact}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    main(steps=parser.parse_args().steps)
