"""Doctor treatments against independent oracles: Patch == a NumPy reshape, Unpatch inverts it,
mean pooling and series standardisation == NumPy over the valid steps, chrono biases == the
formula with T taken from the data after patching; candidates follow from the diagnosis."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.config import build_layers, resolve_layers, validate
from lstmlab.doctor import Candidate, DataFacts, Diagnosis, apply, headline, propose, treatment
from lstmlab.doctor.treatments import effective_steps


def _np_patch(x: np.ndarray, k: int, lengths=None) -> np.ndarray:
    x = x.copy()
    if lengths is not None:
        for b, n in enumerate(lengths):
            x[b, n:] = 0.0
    b, t, f = x.shape
    pad = (-t) % k
    x = np.concatenate([x, np.zeros((b, pad, f), x.dtype)], axis=1)
    return x.reshape(b, (t + pad) // k, k * f)


@pytest.mark.parametrize("k,steps", [(1, 7), (3, 9), (4, 10), (5, 3)])
def test_patch_is_a_reshape_of_the_zero_padded_sequence(k, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, steps, 2)).astype(np.float32)
    got = ll.Patch(k)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, _np_patch(x, k))


def test_patch_masks_padding_and_the_next_layer_sees_ceil_lengths():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 10, 2)).astype(np.float32)
    lengths = np.array([10, 7, 1])
    got = ll.Patch(4)(torch.from_numpy(x), lengths=torch.from_numpy(lengths)).numpy()
    np.testing.assert_array_equal(got, _np_patch(x, 4, lengths))
    torch.manual_seed(0)
    lstm = ll.LSTM(5, seed=3, return_sequences=True)
    model = ll.Sequential([ll.Patch(4), lstm])
    out = model(torch.from_numpy(x), lengths=torch.from_numpy(lengths)).detach().numpy()
    ref = lstm(torch.from_numpy(_np_patch(x, 4, lengths)),
               lengths=torch.tensor([3, 2, 1])).detach().numpy()  # ceil(len / 4)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)


def test_unpatch_inverts_patch_and_causal_shifts_by_one_patch():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 10, 3)).astype(np.float32)
    p = ll.Patch(4)(torch.from_numpy(x))
    back = ll.Unpatch(4, steps=10, causal=False)(p).numpy()
    np.testing.assert_array_equal(back, x)
    causal = ll.Unpatch(4, steps=10)(p).numpy()
    np.testing.assert_array_equal(causal[:, :4], 0.0)            # nothing before the first patch
    np.testing.assert_array_equal(causal[:, 4:10], x[:, 0:6])   # patch j's outputs come from patch j-1
    with pytest.raises(ll.InputError, match="divisible by size=4"):
        ll.Unpatch(4)(torch.zeros(1, 2, 6))


def test_mean_pooling_with_masks_equals_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    lengths = np.array([6, 1, 3, 5])
    got = ll.GlobalAveragePooling1D()(torch.from_numpy(x), lengths=torch.from_numpy(lengths)).numpy()
    ref = np.stack([x[b, :n].mean(axis=0) for b, n in enumerate(lengths)])
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    np.testing.assert_allclose(ll.GlobalAveragePooling1D()(torch.from_numpy(x)).numpy(), x.mean(axis=1), rtol=1e-6)


def test_series_norm_equals_numpy_over_valid_steps():
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(3, 8, 2)) * 5 + 3).astype(np.float64)
    lengths = np.array([8, 4, 2])
    got = ll.SeriesNorm()(torch.from_numpy(x), lengths=torch.from_numpy(lengths)).numpy()
    for b, n in enumerate(lengths):
        v = x[b, :n]
        ref = (v - v.mean(axis=0)) / np.sqrt(v.var(axis=0) + 1e-8)
        np.testing.assert_allclose(got[b, :n], ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(got[b, n:], 0.0)


def test_new_layers_round_trip_through_a_model_file(tmp_path):
    model = ll.Sequential([ll.SeriesNorm(), ll.Patch(3), ll.LSTM(4, return_sequences=True, seed=1),
                           ll.GlobalAveragePooling1D(), ll.Dense(2, activation="softmax", seed=2)])
    model.compile(loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(5).normal(size=(4, 9, 2)).astype(np.float32)
    before = model.predict(x)
    model.save(tmp_path / "m.lstmlab")
    np.testing.assert_allclose(ll.load_model(tmp_path / "m.lstmlab").predict(x), before, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# treatments on configs
# ---------------------------------------------------------------------------------------------
def _facts(steps=400, kind="regression", target="sequence", continuous=True, classes=None) -> DataFacts:
    return DataFacts(steps=steps, n_features=2, kind=kind, target=target, n_classes=classes, n_train=100,
                     n_val=50, variable_length=False, input_type="features", continuous=continuous,
                     baseline={"mse": 1 / 6} if kind == "regression" else {})


BASE = {"data": {"source": "adding", "length": 400, "n_train": 8, "n_val": 4, "n_test": 4},
        "model": {"layers": [{"type": "LSTM", "units": 8}, {"type": "Dense", "units": 1}]},
        "train": {"learning_rate": 0.002}}


def _build(cfg: dict, meta: dict):
    resolved = validate(copy.deepcopy(cfg))
    return ll.Sequential(build_layers(resolve_layers(resolved["model"], meta)))


def test_patch_and_chrono_give_the_chrono_formula_for_the_steps_left():
    f = _facts()
    cfg = apply(BASE, f, [treatment("chrono"), treatment("patch", 8)])  # order is fixed by the doctor
    layers = cfg["model"]["layers"]
    assert [s["type"] for s in layers] == ["Patch", "LSTM", "Dense"]
    assert layers[1]["chrono_max_len"] == math.ceil(400 / 8) == effective_steps(layers, 1, 400)
    model = _build(cfg, {"kind": "regression", "n_outputs": 1})
    model.build(torch.zeros(2, 400, 2))
    lstm = model.layers[1]
    h = lstm.units
    bf, bi = lstm.bias_ih[h:2 * h].detach().double(), lstm.bias_ih[:h].detach().double()
    # Tallec & Ollivier 2018: b_f = log(u), u ~ U[1, T - 1], b_i = -b_f, with T = 50 steps after patching
    assert bool((bf >= 0).all()) and bool((bf <= math.log(50 - 1) + 1e-6).all())
    torch.testing.assert_close(bi, -bf)
    assert BASE["model"]["layers"][0] == {"type": "LSTM", "units": 8}  # the base config is not touched


def test_per_step_patch_adds_a_causal_unpatch_head_and_readouts_need_sequence_targets():
    f = _facts(steps=120, kind="classification", target="per_step", continuous=False, classes=10)
    base = {"data": {"source": "copy", "length": 100, "n_train": 4, "n_val": 2, "n_test": 2},
            "model": {"layers": [{"type": "LSTM", "units": 16, "return_sequences": True}, {"type": "Dense"}]}}
    cfg = apply(base, f, [treatment("patch", 10), treatment("chrono")])
    assert [s["type"] for s in cfg["model"]["layers"]] == ["Patch", "LSTM", "Dense", "Unpatch", "Dense"]
    assert cfg["model"]["layers"][2]["units"] == 160 and cfg["model"]["layers"][3]["steps"] == 120
    assert cfg["model"]["layers"][1]["chrono_max_len"] == 12
    model = _build(cfg, {"kind": "classification", "n_classes": 10, "target": "per_step"})
    x = torch.zeros(2, 120, 10)
    x[:, 5, 3] = 1.0  # an input at step 5 can only move outputs of later patches (causal Unpatch)
    with torch.no_grad():
        out = model(x) - model(torch.zeros(2, 120, 10))
    assert out.shape == (2, 120, 10) and float(out[:, :10].abs().max()) == 0.0 and float(out[:, 10:].abs().max()) > 0
    with pytest.raises(ValueError, match="one target per step"):
        apply(base, f, [treatment("readout", "mean")])


def test_readout_bidirectional_and_cell_changes_build_valid_models():
    f = _facts(steps=60, kind="classification", classes=3)
    base = {"data": {"source": "temporal-order", "length": 60, "n_train": 8, "n_val": 4, "n_test": 4},
            "model": {"layers": [{"type": "SimpleRNN", "units": 8, "activation": "relu"}, {"type": "Dense"}]}}
    meta = {"kind": "classification", "n_classes": 4, "target": "sequence"}
    for treats, types in (([treatment("cell", "LSTM"), treatment("readout", "mean")],
                           ["LSTM", "GlobalAveragePooling1D", "Dense"]),
                          ([treatment("cell", "GRU"), treatment("bidirectional")], ["Bidirectional", "Dense"]),
                          ([treatment("cell", "IRNN")], ["SimpleRNN", "Dense"])):
        cfg = apply(base, f, treats)
        assert [s["type"] for s in cfg["model"]["layers"]] == types
        model = _build(cfg, meta)
        assert model(torch.zeros(2, 60, 8)).shape == (2, 4)
    irnn = apply(base, f, [treatment("cell", "IRNN")])["model"]["layers"][0]
    assert irnn["activation"] == "relu" and irnn["recurrent_initializer"] == "identity"


# ---------------------------------------------------------------------------------------------
# candidates from a diagnosis
# ---------------------------------------------------------------------------------------------
def _diag(verdict, cells=("lstm",), learned=False, clipped=True) -> Diagnosis:
    return Diagnosis(verdict=verdict, counts={verdict: 8}, end_verdict=verdict, decay=-20.0 if verdict ==
                     "vanishing" else -1.0, cells=cells, learned=learned, clipped=clipped)


def _labels(cands: list[Candidate]) -> list[str]:
    return [c.label for c in cands]


def test_candidates_for_a_vanishing_lstm_follow_the_length_of_the_data():
    long = _labels(propose(_diag("vanishing"), _facts(steps=400)))
    assert long[0] == "plain"
    assert "patch(8) + chrono" in long and "patch(34) + chrono" in long   # ceil(400/50), ceil(400/12)
    assert "chrono" not in long                                          # 400 steps unpatched: too slow
    short = _labels(propose(_diag("vanishing"), _facts(steps=100, kind="classification", classes=4,
                                                          continuous=False), limit=10))
    assert "patch(2) + chrono" in short and "chrono" in short
    assert "patch(2) + chrono + readout(attention)" in short and not any("series_norm" in c for c in short)
    ucr = _labels(propose(_diag("vanishing"), _facts(steps=300, kind="classification", classes=3)))
    assert ucr[1] == "series_norm + patch(6) + chrono"


def test_candidates_for_other_diagnoses():
    rnn = _labels(propose(_diag("vanishing", cells=("rnn",)), _facts(steps=100), limit=10))
    assert rnn[1] == "cell(GRU)" and "cell(LSTM) + patch(2) + chrono" in rnn and "cell(IRNN)" in rnn
    boom = _labels(propose(_diag("exploding", clipped=False), _facts(steps=100)))
    assert boom[:3] == ["plain", "clip(1)", "clip(1) + learning_rate(0.3)"]
    fine = _labels(propose(_diag("healthy", learned=True), _facts(steps=20)))
    assert fine == ["plain", "learning_rate(3)", "width(2)", "depth(2)"]
    assert len(propose(_diag("vanishing"), _facts(steps=400), limit=3)) == 3


def test_headline_summarises_the_whole_training():
    assert headline({"vanishing": 29, "healthy": 3}) == ("vanishing", "vanishing in 29/32 samples")
    assert headline({"vanishing": 2, "exploding": 2})[0] == "exploding"  # a tie goes to the more severe
    assert headline({})[0] == "healthy"
