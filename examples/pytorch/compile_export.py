"""lstmlab layers under ``torch.compile`` and ``torch.export`` (and ONNX when installed).

* ``torch.compile(model)`` compiles forward and backward; the result equals eager.  Input
  checks that read tensor values (NaN scan, length ranges) are skipped while tracing only.
* ``torch.export.export(model, (x,))`` gives a self-contained program for inference.  Under
  export the recurrent layers run on torch's own kernels (``aten.lstm`` / ``gru`` / ``rnn``), so the
  program holds only standard ATen operators; ``torch.export.save`` / ``load`` store it and
  ``torch.onnx.export(model, (x,), dynamo=True)`` writes ONNX (needs ``onnx`` and ``onnxscript``).
* ``ll.to_torch(model)`` turns a stack of recurrent layers into a ``torch.nn.LSTM/GRU/RNN``,
  for tools that want torch's module itself (TorchScript included).

Run: ``python examples/pytorch/compile_export.py [--out DIR] [--backend inductor]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile

import torch
from torch import nn

import lstmlab as ll


class Pooler(nn.Module):
    """``ll.GRU`` (all steps) -> ``ll.Attention`` -> ``nn.Linear``."""

    def __init__(self, units: int = 16) -> None:
        super().__init__()
        self.rnn = ll.GRU(units, return_sequences=True)
        self.attention = ll.Attention()
        self.head = nn.Linear(units, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attention(self.rnn(x)))


def _compiled_step(model: nn.Module, compiled, x: torch.Tensor, y: torch.Tensor) -> float:
    """One compiled training step, checked against eager; returns the largest difference."""
    eager = nn.functional.mse_loss(model(x), y)
    g_eager = torch.autograd.grad(eager, list(model.parameters()))
    loss = nn.functional.mse_loss(compiled(x), y)
    g_fast = torch.autograd.grad(loss, list(model.parameters()))
    diffs = [float((loss - eager).detach().abs())] + [float((a - b).abs().max()) for a, b in zip(g_fast, g_eager)]
    return max(diffs)


def _export(model: nn.Module, x: torch.Tensor, out: str) -> tuple[float, str | None]:
    """Export for inference, save, load, compare; ONNX as well when its packages are there."""
    model.eval()
    batch = torch.export.Dim("batch", min=2, max=1024)
    program = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    path = os.path.join(out, "pooler.pt2")
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    with torch.no_grad():
        diff = float((loaded(x[:5]) - model(x[:5])).abs().max())
    onnx_path = None
    if importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxscript"):
        onnx_path = os.path.join(out, "pooler.onnx")
        torch.onnx.export(model, (x,), onnx_path, dynamo=True)
    return diff, onnx_path


def main(out: str | None = None, backend: str = "inductor", length: int = 12, n: int = 64, seed: int = 0) -> dict:
    """Compile a training step, export the model; returns the largest differences to eager."""
    torch.manual_seed(seed)
    split = ll.data.adding_problem(length=length, n_train=n, n_val=0, n_test=0, seed=seed).train
    x, y = torch.as_tensor(split.x), torch.as_tensor(split.y)
    model = Pooler()
    compiled = torch.compile(model, backend=backend)  # the first compiled call sizes the lazy weights
    compiled(x[:2])
    compile_diff = _compiled_step(model, compiled, x, y)
    with tempfile.TemporaryDirectory() as tmp:
        export_diff, onnx_path = _export(model, x, out or tmp)
    print(f"compiled vs eager: {compile_diff:.2e}; exported vs eager: {export_diff:.2e}; "
          f"ONNX: {onnx_path or 'not written (install onnx and onnxscript)'}")
    return {"compile_diff": compile_diff, "export_diff": export_diff, "onnx": onnx_path}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="keep the exported files here")
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    main(out=args.out, backend=args.backend)
