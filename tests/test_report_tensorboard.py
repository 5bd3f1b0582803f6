"""TensorBoardWriter: event files read back with tensorboard's EventAccumulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.report.figures import training_curves
from lstmlab.report.tensorboard import VERDICT_CODES, TensorBoardWriter

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(log_dir):
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0,
                                                                           "images": 0})
    acc.Reload()
    return acc


def test_scalars_histograms_and_figures_round_trip(tmp_path):
    from lstmlab.diagnostics import diagnose

    model = ll.Sequential([ll.LSTM(4, seed=0), ll.Dense(1, seed=0)])
    model.compile(loss="mse")
    x = np.random.default_rng(0).normal(size=(6, 5, 3)).astype(np.float32)
    y = np.zeros((6, 1), np.float32)
    report = diagnose(model, x, y)
    loss = torch.nn.functional.mse_loss(model(torch.as_tensor(x)), torch.as_tensor(y))
    loss.backward()
    with TensorBoardWriter(tmp_path / "tb") as tb:
        tb.log_epoch(1, {"loss": 0.5, "val_loss": 0.7, "accuracy": 0.25, "note": "skip me",
                         "nan": float("nan")})
        tb.log_epoch(2, {"loss": 0.25, "val_loss": 0.5, "accuracy": 0.5})
        assert tb.log_scalars({"lr": 1e-3, "bad": None}, step=2, prefix="opt/") == 1
        tb.log_gradients(report, step=10)
        tb.log_gradients({"step": 20, "verdict": "exploding", "decay": 2.5, "grad_norm": 40.0,
                          "decay/lstm/forward": 2.5})
        n = tb.log_histograms(model, step=10)
        fig = training_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}])
        tb.log_figure("figures/curves", fig, step=2)
    acc = _read(tmp_path / "tb")
    tags = acc.Tags()
    assert {"train/loss", "val/loss", "train/accuracy", "opt/lr"} <= set(tags["scalars"])
    assert "train/note" not in tags["scalars"] and "train/nan" not in tags["scalars"]
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 0.5), (2, 0.25)]
    assert [e.value for e in acc.Scalars("val/loss")] == pytest.approx([0.7, 0.5])
    decay = {e.step: e.value for e in acc.Scalars("gradients/decay")}
    assert decay[10] == pytest.approx(report.worst_decay(), rel=1e-5) and decay[20] == pytest.approx(2.5)
    verdicts = {e.step: e.value for e in acc.Scalars("gradients/verdict")}
    assert verdicts == {10: VERDICT_CODES[report.verdict], 20: VERDICT_CODES["exploding"]}
    assert "gradients/decay/lstm/forward" in tags["scalars"]
    per_layer = [t for t in tags["scalars"] if t.startswith("grad_norm/")]
    assert "grad_norm/model/total" in per_layer
    assert any(t.startswith("grad_norm/lstm/forward/") for t in per_layer)
    value = acc.Scalars("grad_norm/model/total")[0].value
    assert value == pytest.approx(report.grad_norms["model"]["total"], rel=1e-5)
    params = dict(model.named_parameters())
    assert n == 2 * len(params)
    hist = set(tags["histograms"])
    assert {f"weights/{k.replace('.', '/')}" for k in params} <= hist
    assert {f"grads/{k.replace('.', '/')}" for k in params} <= hist
    h = acc.Histograms("weights/layers/0/weight_hh")[0].histogram_value
    w = params["layers.0.weight_hh"].detach().numpy()
    assert h.num == w.size and h.min == pytest.approx(w.min()) and h.max == pytest.approx(w.max())
    img = acc.Images("figures/curves")[0]
    assert img.step == 2 and img.width > 100 and img.height > 100
    assert img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
