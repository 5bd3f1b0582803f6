"""``lstmlab demo``: the files, the page and the final JSON line (``--quick``), the headline verdicts
over the whole training, the doctor's prescription from a vanishing diagnosis, and (``-m slow``)
the story itself on two seeds: plain models at chance, the treated LSTM solves the task."""

from __future__ import annotations

import json
import re

import pytest

from lstmlab import demo


def test_demo_quick_writes_the_run_dir_and_ends_with_json(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    assert demo.main(["--quick", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["task"] == "temporal-order" and summary["steps"] == 24
    assert list(summary["models"]) == ["SimpleRNN", "GRU", "LSTM", "Doctor"]
    results = json.loads((run_dir / "results.json").read_text())
    for name, m in summary["models"].items():
        assert 0 <= m["test_accuracy"] <= 1 and m["verdict"] in ("healthy", "vanishing", "exploding")
        # the headline counts every GradientMonitor sample of the run, not only the last one
        n = len([r for r in results["records"][name] if r.get("verdict")])
        assert re.match(rf"{m['verdict']} in \d+/{n} samples", m["health"]), m["health"]
    assert summary["models"]["Doctor"]["label"].startswith("LSTM + ")
    table = "\n".join(out)
    assert re.search(r"^LSTM\s+\d", table, re.M) and "chance" in table and "gradients during training" in table
    for name in ("index.html", "loss_curves.png", "gradient_flow.png", "gradient_decay.png", "results.json",
                 "diagnose_LSTM.json", "LSTM.lstmlab", "Doctor.lstmlab", "report.html"):
        assert (run_dir / name).is_file(), name
    page = (run_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page  # self-contained, no network


def test_the_doctor_prescribes_a_shorter_gradient_path_for_a_vanishing_lstm():
    from types import SimpleNamespace

    import numpy as np

    from lstmlab.data import load

    data = load("temporal-order", length=100, classes=4, n_train=16, n_val=8, n_test=8)
    end = SimpleNamespace(verdict="vanishing", worst_decay=lambda: -12.0)
    hist = SimpleNamespace(history={"val_loss": [1.39], "val_accuracy": [0.25]})
    plain = {"end": end, "history": hist, "counts": {"vanishing": 28},
             "specs": [{"type": "LSTM", "units": 8}, {"type": "Dense", "units": 4, "activation": "softmax"}]}
    label, specs, reason = demo.prescribe(plain, demo.DemoSettings(), data)
    assert label == "patch(2) + chrono" and "50 steps" in reason
    assert [s["type"] for s in specs] == ["Patch", "LSTM", "Dense"] and specs[1]["chrono_max_len"] == 50
    assert np.isfinite(specs[0]["size"])


def test_demo_rejects_bad_options(tmp_path, capsys):
    assert demo.main(["--quick", "--steps", "1", "--run-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps" in err[0]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_demo_story_holds_on_two_seeds(tmp_path, seed):
    s = demo.DemoSettings(seed=seed)
    summary = demo.run_demo(s, tmp_path / f"demo{seed}", out=lambda *a, **k: None)
    models = summary["models"]
    for name in ("SimpleRNN", "GRU", "LSTM"):
        assert not models[name]["solved"] and models[name]["test_accuracy"] < 0.5, (name, models[name])
    assert models["LSTM"]["verdict"] == "vanishing"
    assert models["Doctor"]["solved"] and models["Doctor"]["verdict"] == "healthy", models["Doctor"]
