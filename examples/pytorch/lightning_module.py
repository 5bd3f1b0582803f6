"""lstmlab layers in a Lightning module.

``configure_optimizers`` runs before the first batch reaches the model, so the optimizer
receives the GRU's lazy parameters; the first call materialises them in place and they train.
The checkpoint Lightning would write is the module's ``state_dict``, which loads into a fresh,
never-called module.

Task: the adding problem.  Needs ``lightning`` (``pip install lightning``; it is in lstmlab's
``test`` extra).

Run: ``python examples/pytorch/lightning_module.py [--epochs N]``
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lstmlab as ll

try:
    import lightning as L
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("examples/pytorch/lightning_module.py needs the 'lightning' package: "
                      "pip install lightning") from exc


class SequenceRegressor(L.LightningModule):
    """``ll.GRU`` (lazy input size) -> ``nn.Linear``, trained with MSE."""

    def __init__(self, units: int = 32, lr: float = 2e-2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.rnn = ll.GRU(units)
        self.head = nn.Linear(units, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def _loaders(length: int, n: int, seed: int) -> tuple[DataLoader, DataLoader, float]:
    splits = ll.data.adding_problem(length=length, n_train=n, n_val=n // 4, n_test=0, seed=seed)
    train, val = (TensorDataset(torch.as_tensor(s.x), torch.as_tensor(s.y)) for s in (splits.train, splits.val))
    baseline = float(torch.as_tensor(splits.val.y).var())
    return DataLoader(train, batch_size=64, shuffle=True), DataLoader(val, batch_size=256), baseline


def main(epochs: int = 10, length: int = 20, n: int = 1024, seed: int = 0) -> dict:
    """Fit with a Lightning Trainer on the CPU; returns the validation loss and the mean baseline."""
    L.seed_everything(seed, verbose=False)
    train, val, baseline = _loaders(length, n, seed)
    model = SequenceRegressor()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train, val)
    val_loss = float(trainer.callback_metrics["val_loss"])
    fresh = SequenceRegressor()
    fresh.load_state_dict(model.state_dict())
    x = next(iter(val))[0]
    model.eval()
    fresh.eval()
    with torch.no_grad():
        exact = torch.equal(fresh(x), model(x))
    print(f"validation loss {val_loss:.4f} (predicting the mean: {baseline:.4f}); reload exact: {exact}")
    return {"val_loss": val_loss, "baseline": baseline, "reload_exact": exact}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    main(epochs=parser.parse_args().epochs)
