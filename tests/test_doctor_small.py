"""The doctor on a small set of continuous series (``lstmlab.doctor.small``): the answer is an
ensemble trained on the training and validation series, ``best.toml`` says so and ``lstmlab train``
repeats its test score, the summary's ``val`` is the check run's, and the stage is skipped where it
does not apply."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lstmlab as ll
from lstmlab import cli
from lstmlab.config import read_toml
from lstmlab.doctor import DataFacts, DoctorSettings
from lstmlab.doctor.small import _whole_split, applies


def _write(path, n: int, seed: int) -> None:
    """Two classes of noisy series that differ in frequency, long format."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, 48)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("id,step,value,label\n")
        for i in range(n):
            c = i % 2
            v = np.sin(t * (1.0 + 0.6 * c) + rng.uniform(0, 6)) * rng.uniform(0.5, 3) + rng.uniform(-5, 5)
            v = v + 0.3 * rng.normal(size=t.size)
            for s, x in enumerate(v):
                fh.write(f"s{seed}_{i},{s},{x:.6g},{'ab'[c]}\n")


CONFIG = """
[data]
source = "csv-sequences"
path = "train.csv"
test_path = "test.csv"
time_column = "step"
val_fraction = 0.25

[model]
layers = [{type = "LSTM", units = 8}, {type = "Dense"}]

[train]
epochs = 20
batch_size = 16
learning_rate = 3e-3
"""


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    _write(root / "train.csv", 32, 0)
    _write(root / "test.csv", 40, 1)
    (root / "c.toml").write_text(CONFIG)
    lines: list[str] = []
    result = ll.doctor(root / "c.toml", root / "run", budget_minutes=0.5,
                       out=lambda *a, **k: lines.append(" ".join(map(str, a))),
                       settings=DoctorSettings(min_slice_s=1.0, threads=1, max_candidates=3, ensemble_steps=60,
                                               min_ensemble_steps=10))
    return root, result, lines


def test_the_answer_is_an_ensemble_on_all_the_series(small_run):
    root, result, lines = small_run
    assert "ensemble(4)" in result["after"]["remedies"] and "difference" in result["after"]["remedies"]
    best = read_toml(root / "run" / "best.toml")
    assert best["model"]["ensemble"] == {"members": 4}  # series of one length: window slices and views on
    assert best["data"]["val_fraction"] == 0.0 and "early_stopping" not in best["train"]
    assert best["model"]["layers"][0] == {"type": "SeriesNorm", "epsilon": 1e-8, "difference": True} \
        or best["model"]["layers"][0].get("difference") is True
    summary = json.loads((root / "run" / "doctor.json").read_text())
    check, final = summary["probes"][-2], summary["probes"][-1]
    assert check["label"] == final["label"] == summary["answer"]
    assert result["after"]["val"] == check["slices"][-1]["val"]  # the check run's, trained without val
    assert result["after"]["test"] == final["slices"][-1]["test"]
    assert "without the validation series" in summary["message"]
    assert any(line.startswith("small training set") for line in lines)


def test_lstmlab_train_best_toml_repeats_the_ensembles_test_score(small_run, capsys):
    root, result, _ = small_run
    assert cli.main(["train", str(root / "run" / "best.toml"), "--run-dir", str(root / "again")]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k, v in result["after"]["test"].items():
        assert math.isclose(again["test"][k], v, rel_tol=1e-5), (k, again["test"][k], v)


def test_the_stage_applies_to_few_continuous_series_only():
    base = dict(steps=100, n_features=1, kind="classification", target="sequence", n_classes=3, n_train=60,
                n_val=20, variable_length=False, input_type="features", continuous=True)

    def plan(**kw):
        return type("P", (), {"facts": DataFacts(**{**base, **kw})})()

    assert applies(plan())
    assert not applies(plan(n_train=400))                      # enough series for one model
    assert not applies(plan(continuous=False))                 # one-hot symbols
    assert not applies(plan(kind="regression", n_classes=None))
    assert not applies(plan(target="per_step"))
    assert not applies(plan(input_type="tokens", n_features=None))
    assert _whole_split({"source": "csv-sequences", "path": "a.csv", "val_fraction": 0.2})["val_fraction"] == 0.0
    assert _whole_split({"source": "csv-sequences", "path": "a.csv", "val_path": "v.csv"}) is None
    assert _whole_split({"source": "adding", "length": 20}) is None  # no val_fraction: keep the split


def test_the_ensemble_is_made_of_the_validated_recipe_not_a_noisy_winner(tmp_path):
    from lstmlab.doctor import Candidate
    from lstmlab.doctor.probe import Probe
    from lstmlab.doctor.small import base_probe
    from lstmlab.doctor.treatments import treatment

    facts = DataFacts(steps=300, n_features=1, kind="classification", target="sequence", n_classes=3, n_train=27,
                      n_val=9, variable_length=False, input_type="features", continuous=True)

    def probe(i, *ts):
        return Probe(i, Candidate(tuple(ts), "r"), {"train": {}}, tmp_path, facts, "val_accuracy", (None,) * 3)

    plain = probe(0)
    recipe = probe(1, treatment("series_norm"), treatment("patch", 6), treatment("chrono"))
    attention = probe(2, treatment("patch", 6), treatment("chrono"), treatment("readout", "attention"))
    assert base_probe([plain, recipe, attention], attention) is recipe
    assert base_probe([plain, attention], attention) is attention  # no such probe: the winner


def test_a_plain_config_that_is_healthy_and_right_on_validation_keeps_its_place(tmp_path):
    from types import SimpleNamespace

    from lstmlab.doctor import Candidate
    from lstmlab.doctor.probe import Probe, Slice
    from lstmlab.doctor.small import plain_solves

    facts = DataFacts(steps=100, n_features=6, kind="classification", target="sequence", n_classes=4, n_train=30,
                      n_val=10, variable_length=False, input_type="features", continuous=True)
    plain = Probe(0, Candidate((), "plain"), {"train": {}}, tmp_path, facts, "val_accuracy", (None,) * 3)

    def with_val(acc):
        plain.slices = [Slice(rung=0, seconds=1.0, epochs=3, status="stopped", val={"accuracy": acc, "loss": 0.1},
                              test=None, key=acc, verdict="healthy")]
        return plain

    healthy = SimpleNamespace(verdict="healthy", learned=True)
    assert plain_solves(healthy, with_val(1.0))
    assert not plain_solves(healthy, with_val(0.9))
    assert not plain_solves(SimpleNamespace(verdict="vanishing", learned=True), with_val(1.0))
    assert not plain_solves(SimpleNamespace(verdict="healthy", learned=False), with_val(1.0))
