"""``lstmlab demo --quick``: the files, the page and the final JSON line."""

from __future__ import annotations

import json
import re

from lstmlab import demo


def test_demo_quick_writes_the_run_dir_and_ends_with_json(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    assert demo.main(["--quick", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["task"] == "adding" and summary["steps"] == 20
    assert list(summary["models"]) == ["SimpleRNN", "GRU", "LSTM"]
    for m in summary["models"].values():
        assert m["test_mse"] > 0 and m["verdict"] in ("healthy", "vanishing", "exploding")
    # the table names every model and the baseline
    table = "\n".join(out)
    assert re.search(r"^LSTM\s+\d", table, re.M) and "baseline" in table
    for name in ("index.html", "loss_curves.png", "gradient_flow.png", "gradient_decay.png", "results.json",
                 "diagnose_LSTM.json", "LSTM.lstmlab"):
        assert (run_dir / name).is_file(), name
    page = (run_dir / "index.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page and "https://" not in page  # self-contained, no network
    results = json.loads((run_dir / "results.json").read_text())
    assert results["summary"]["models"].keys() == summary["models"].keys()
    assert all(results["records"][m] for m in summary["models"])  # GradientMonitor samples


def test_demo_rejects_bad_options(tmp_path, capsys):
    assert demo.main(["--quick", "--steps", "1", "--run-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps" in err[0]
