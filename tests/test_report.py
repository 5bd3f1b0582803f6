"""Figures, the self-contained HTML report and the ``lstmlab report`` command."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.layers import Attention
from lstmlab.report import figures as F
from lstmlab.report import write_report
from lstmlab.report.html import build_html, read_run
from lstmlab.tracing import trace

PNG = b"\x89PNG\r\n\x1a\n"


def make_run(run_dir: Path) -> Path:
    """A small run directory: a trained LSTM+Attention model on the adding task, with metrics,
    gradient-health records and events, a config and a result (as ``lstmlab train`` writes them)."""
    from lstmlab.data import load

    torch.manual_seed(0)
    data_cfg = {"source": "adding", "length": 20, "n_train": 96, "n_val": 16, "n_test": 16, "seed": 0}
    splits = load(**data_cfg)
    model = ll.Sequential([ll.LSTM(8, return_sequences=True, seed=0), Attention(seed=0), ll.Dense(1, seed=0)])
    model.compile(loss="mse", optimizer="adam", metrics=["mae"], learning_rate=0.01)
    hist = model.fit(splits.train.x, splits.train.y, epochs=3, batch_size=32, verbose=0,
                     validation_data=(splits.val.x, splits.val.y), seed=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.lstmlab")
    with open(run_dir / "metrics.jsonl", "w") as fh:
        for e in range(3):
            row = {"epoch": e + 1, **{k: v[e] for k, v in hist.history.items()}, "time_s": 0.1,
                   "gradient_verdict": "exploding" if e == 1 else "healthy"}
            fh.write(json.dumps(row) + "\n")
    prof = np.geomspace(1e-3, 1.0, 20)
    with open(run_dir / "gradient_health.jsonl", "w") as fh:
        samples = [("healthy", -1.0), ("exploding", 2.5), ("healthy", -0.5), ("vanishing", -4.2)]
        for s, (v, d) in enumerate(samples):
            rec = {"epoch": 1 + s // 2, "step": 3 * s, "verdict": v, "loss": 0.3 - 0.05 * s, "decay": d,
                   "grad_norm": 0.5 + s, "param_norm": 5.0 + 0.1 * s, "decay/lstm/forward": d}
            if s == 3:
                rec["per_step"] = {"lstm/forward": {"dL_dh": prof.tolist(), "dL_dc": None}}
            fh.write(json.dumps(rec) + "\n")
        fh.write(json.dumps({"step": 3, "event": "clip", "global_clipnorm": 1.0}) + "\n")
        fh.write(json.dumps({"step": 9, "event": "vanishing", "action": "warn",
                             "message": "vanishing gradients in lstm/forward",
                             "remedies": ["use an LSTM/GRU", "chrono init"]}) + "\n")
    (run_dir / "config.resolved.json").write_text(json.dumps({"data": data_cfg, "model": {"layers": []},
                                                              "train": {"epochs": 3, "loss": "mse"}}))
    (run_dir / "config.resolved.toml").write_text('[data]\nsource = "adding"\nlength = 20\n\n'
                                                  '[train]\nepochs = 3\n')
    (run_dir / "result.json").write_text(json.dumps({"status": "completed", "epochs": 3,
                                                     "test": {"loss": 0.12, "mae": 0.25},
                                                     "baseline": {"mse_predict_one": 0.167}}))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One run directory shared by the tests that only read it."""
    return make_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    return write_report(run_dir, out=run_dir / "shared-report.html").read_text()


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)]


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.S))


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def test_attention_figures(tmp_path):
    w = np.array([0.05, 0.1, 0.6, 0.25])
    fig = F.attention_text(["the", " ", "cat", "sat"], w, path=tmp_path / "text.png")
    assert "peak 0.60 on token 2" in fig.axes[0].get_title(loc="left")
    assert (tmp_path / "text.png").read_bytes()[:8] == PNG
    fig = F.attention_series(np.random.default_rng(0).normal(size=(4, 2)), w, feature_names=["a", "b"])
    assert F.png_bytes(fig)[:8] == PNG
    assert F.data_uri(fig).startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="png"):
        F.attention_series(np.zeros(4), w, path=tmp_path / "x.gif")


def test_gate_heatmap_from_trace():
    x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
    for layer in (ll.LSTM(4, return_sequences=True, seed=0), ll.GRU(4, return_sequences=True, seed=0)):
        entry = next(iter(trace(layer, x, lengths=[6, 3]).values()))
        fig = F.gate_heatmap(entry, example=1)
        assert len(fig.axes) >= 1 + len(entry["gates"])
        img = fig.axes[0].images[0].get_array()
        assert img.shape == (len(entry["gates"]) + (2 if layer.cell == "lstm" else 1), 3)  # length 3
        assert F.png_bytes(fig)[:8] == PNG


def test_gradient_flow_from_report_and_record():
    from lstmlab.diagnostics import diagnose

    model = ll.Sequential([ll.SimpleRNN(4, seed=0), ll.Dense(1, seed=0)])
    model.compile(loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 12, 2)).astype(np.float32)
    report = diagnose(model, x, np.zeros((8, 1), np.float32))
    fig = F.gradient_flow(report)
    assert fig.axes[0].get_yscale() == "log" and report.verdict in fig.axes[0].get_title(loc="left")
    prof = F.flow_profiles(report.to_dict())
    assert list(prof) == list(report.per_step) and len(next(iter(prof.values()))) == 12
    F.gradient_flow({"per_step": {"a/forward": {"dL_dh": [1e-4, 1e-2, None, 1.0]}}, "verdict": "vanishing"})
    with pytest.raises(ValueError, match="per-step"):
        F.flow_profiles({"step": 3, "verdict": "healthy", "decay": -1.0})  # a summary record


def test_training_curves_and_health_timeline(run_dir):
    run = run_dir
    fig = F.training_curves(run / "metrics.jsonl")
    assert [a.get_ylabel() for a in fig.axes] == ["loss", "mae"]
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["loss", "val_loss"]
    rows = F.read_jsonl(run / "gradient_health.jsonl")
    fig = F.health_timeline([r for r in rows if "event" not in r], [r for r in rows if "event" in r])
    assert F.png_bytes(fig)[:8] == PNG
    with pytest.raises(ValueError):
        F.training_curves([])


# ---------------------------------------------------------------------------------------------
# the HTML report
# ---------------------------------------------------------------------------------------------
def test_report_is_self_contained_and_complete(page):
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page), "only data: URIs and in-page anchors"
    assert "http://" not in page and "https://" not in page
    imgs = _images(page)
    assert len(imgs) == 7 and all(i[:8] == PNG for i in imgs)  # curves, timeline, flow, 3 attention, gates
    sec = _sections(page)
    assert list(sec) == ["summary", "curves", "gradients", "attention", "gates", "model", "config"]
    assert 'class="note"' not in page
    assert "0.12" in sec["summary"] and "completed" in sec["summary"]
    assert "global_clipnorm=1" in sec["gradients"] and "chrono init" in sec["gradients"]
    assert "GradientMonitor sample at training step 9" in sec["gradients"]
    assert sec["attention"].count("<figure>") == 3 and "peak at step" in sec["attention"]
    assert "forget gate f" in sec["gates"]
    assert "source = &quot;adding&quot;" in sec["config"]
    assert "Attention" in sec["model"]


def test_report_of_an_empty_or_partial_run_dir(tmp_path, run_dir):
    (tmp_path / "empty").mkdir()
    page = build_html(tmp_path / "empty")
    sec = _sections(page)
    assert len(sec) == 7 and page.count('class="note"') >= 5
    assert "No result.json" in sec["summary"] and "No model file" in sec["attention"]
    # broken lines and a model without attention: still a page, with notes
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\n{"epoch": 2, "lo')  # cut short
    model = ll.Sequential([ll.GRU(3, seed=0), ll.Dense(1)])
    model(torch.zeros(1, 20, 2))
    model.save(run / "model.lstmlab")
    (run / "config.resolved.json").write_text(json.dumps({"data": {"source": "no-such-source"}}))
    sec = _sections(build_html(run))
    assert "no Attention layer" in sec["attention"]
    assert "loading the data failed" in sec["gates"]
    assert len(read_run(run).metrics) == 1
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing")


def test_report_text_data_shades_tokens(tmp_path):
    rows = ["text,label"] + [f"{'good great fine' if k % 2 else 'bad awful poor'} movie {k},{k % 2}"
                             for k in range(40)]
    csv = tmp_path / "reviews.csv"
    csv.write_text("\n".join(rows) + "\n")
    data_cfg = {"source": "csv-text", "path": str(csv), "max_len": 6}
    from lstmlab.data import load

    splits = load(**data_cfg)
    vocab = len(splits.meta["vocab"])
    model = ll.Sequential([ll.Embedding(vocab, 4, mask_zero=True, seed=0),
                           ll.LSTM(4, return_sequences=True, seed=0), Attention("dot", seed=0),
                           ll.Dense(2, activation="softmax", seed=0)])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model(torch.as_tensor(splits.train.x[:2]))
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.lstmlab")
    (run / "config.resolved.json").write_text(json.dumps({"data": data_cfg}))
    sec = _sections(build_html(run, examples=2))
    assert sec["attention"].count("<figure>") == 2, sec["attention"]
    assert "peak at step" in sec["attention"]
    assert "lstm/forward" in sec["gates"]


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def test_cli_report(tmp_path, run_dir, capsys):
    import argparse

    from lstmlab.report import cli

    def main(argv: list[str]) -> int:  # `lstmlab report ...` (the main cli imports this module)
        parser = argparse.ArgumentParser(prog="lstmlab")
        cli.add_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        return args.func(args)

    run = run_dir
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(run), "--out", str(out), "--examples", "1"]) == 0
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out
    assert _sections(out.read_text())["attention"].count("<figure>") == 1
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_report_of_a_real_training_run(tmp_path):
    train = pytest.importorskip("lstmlab.train")
    cfg = tmp_path / "adding.toml"
    cfg.write_text('[data]\nsource = "adding"\nlength = 12\nn_train = 64\nn_val = 16\nn_test = 16\n\n'
                   '[model]\nlayers = [{type = "GRU", units = 6}, {type = "Dense"}]\n\n'
                   '[train]\nepochs = 2\nbatch_size = 32\nverbose = 0\n')
    run = tmp_path / "run"
    train.train(cfg, run, out=lambda *a, **k: None)
    path = write_report(run)
    assert path == run / "report.html"
    page = path.read_text()
    sec = _sections(page)
    assert "test loss" in sec["summary"] and "Final metrics" in sec["summary"]
    assert "<figure>" in sec["curves"] and "<figure>" in sec["gates"]
    assert "no Attention layer" in sec["attention"]
    assert "Gradient flow through time" in sec["gradients"] and "<figure>" in sec["gradients"]


def test_report_of_a_multi_model_run_like_the_demo(tmp_path):
    """Several models side by side (SimpleRNN.lstmlab, LSTM.lstmlab, results.json with history,
    records and settings, diagnose_*.json): every model gets its curves, health and gates."""
    from lstmlab.diagnostics import diagnose

    run = tmp_path / "demo"
    run.mkdir()
    x = np.random.default_rng(0).uniform(size=(8, 10, 2)).astype(np.float32)
    y = np.zeros((8, 1), np.float32)
    results = {"summary": {"task": "adding", "steps": 10, "models": {}}, "history": {}, "records": {},
               "settings": {"steps": 10, "seed": 0, "models": ["SimpleRNN", "LSTM"]}}
    for name, cls in (("SimpleRNN", ll.SimpleRNN), ("LSTM", ll.LSTM)):
        model = ll.Sequential([cls(4, seed=0), ll.Dense(1, seed=0)])
        model.compile(loss="mse")
        rep = diagnose(model, x, y)
        model.save(run / f"{name}.lstmlab")
        (run / f"diagnose_{name}.json").write_text(json.dumps({"end": rep.to_dict()}))
        results["summary"]["models"][name] = {"test_mse": 0.1, "verdict": rep.verdict}
        results["history"][name] = {"loss": [0.5, 0.3], "val_loss": [0.6, 0.4]}
        results["records"][name] = [{"step": 0, "verdict": "healthy", "decay": -1.0, "grad_norm": 0.1},
                                    {"step": 2, "verdict": rep.verdict, "decay": -2.0, "grad_norm": 0.2}]
    (run / "results.json").write_text(json.dumps(results))
    page = build_html(run, examples=1)
    sec = _sections(page)
    assert "SimpleRNN" in sec["summary"] and "test_mse" in sec["summary"]
    assert sec["curves"].count("<figure>") == 1 and "SimpleRNN, LSTM" in sec["curves"]
    assert "diagnose_SimpleRNN.json, diagnose_LSTM.json" in sec["gradients"]
    assert sec["gates"].count("<figure>") == 2 and "<h3>LSTM</h3>" in sec["gates"]
    assert "None of the models (SimpleRNN, LSTM) has an Attention layer" in sec["attention"]
    assert "settings (results.json)" in sec["config"]
    assert len(_images(page)) == 5


@pytest.mark.parametrize("label", ["a$_$b", "$^$", r"$\frac$", "cost $5 or $6", r"$\nosuchcommand$"])
def test_dollar_signs_in_users_labels_are_drawn_as_written(tmp_path, label):
    # Issue 12 (smaller defects): a class label with '$' broke the attention figure (mathtext).
    from lstmlab.report import figures as F

    fig = F.attention_text([label, "b"], np.array([0.2, 0.8]), title=f"class {label}")
    assert F.png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    fig = F.attention_series(np.random.default_rng(0).random((12, 2)), np.linspace(0, 1, 12),
                             title=f"class {label}", feature_names=[label, "x"])
    F.save_figure(fig, tmp_path / "a.svg")
    svg = (tmp_path / "a.svg").read_text()
    assert "<svg" in svg
    texts = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_parse_math"))]
    assert any(label in t for t in texts)
