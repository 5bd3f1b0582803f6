"""``lstmlab.Ensemble`` against independent oracles: its training loss is the mean of the members'
own losses (torch.autograd on each member alone), its prediction the mean of the members'
probabilities over the series and its crop views (a NumPy window-slicing reference), its file and
TOML forms round-trip, and bad arguments or hostile files get one clear line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.layers.timeaxis import crop_stretch, crop_views
from lstmlab.saving import ModelFileError


def _np_crop_stretch(x: np.ndarray, starts: np.ndarray, w: int) -> np.ndarray:
    """The research reference (benchmarks/doctor_research/treat.py): linear interpolation."""
    n, length, _ = x.shape
    idx = starts[:, None] + np.linspace(0, w - 1, length)[None, :]
    lo = np.floor(idx).astype(int)
    hi = np.minimum(lo + 1, length - 1)
    frac = (idx - lo)[:, :, None]
    rows = np.arange(n)[:, None]
    return (1 - frac) * x[rows, lo] + frac * x[rows, hi]


def _model(members=3, augment=0.0, views=0, units=5, classes=3, seed=None):
    torch.manual_seed(0)
    layers = [ll.SeriesNorm(difference=True), ll.Patch(2), ll.LSTM(units, seed=seed),
              ll.Dense(classes, activation="softmax")]
    m = ll.Sequential([ll.Ensemble(layers, members=members, augment=augment, views=views)])
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return m


def test_crop_stretch_equals_the_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 17, 2))
    starts = rng.integers(0, 17 - 12 + 1, size=5)
    got = crop_stretch(torch.tensor(x), torch.tensor(starts), 12).numpy()
    np.testing.assert_allclose(got, _np_crop_stretch(x, starts, 12), rtol=1e-12, atol=1e-12)
    views = crop_views(torch.tensor(x), 3, 0.7)
    assert len(views) == 4 and torch.equal(views[0], torch.tensor(x))
    np.testing.assert_allclose(views[3].numpy(), _np_crop_stretch(x, np.full(5, 17 - 12), 12), atol=1e-12)


def test_series_norm_difference_channels_equal_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 30, 2)).cumsum(1)
    got = ll.SeriesNorm(difference=True, epsilon=1e-12)(torch.tensor(x)).numpy()
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    d = np.concatenate([np.zeros_like(z[:, :1]), np.diff(z, axis=1)], axis=1)
    d = (d - d.mean(1, keepdims=True)) / d.std(1, keepdims=True)
    assert got.shape == (4, 30, 4)
    np.testing.assert_allclose(got, np.concatenate([z, d], axis=2), atol=1e-9)


def test_the_training_loss_is_the_mean_of_the_members_own_losses_and_so_are_the_gradients():
    m = _model(members=3).double()
    x = torch.randn(8, 12, 1, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    m.build(x)
    m.train()
    loss = m.compute_loss(x, y)
    loss.backward()
    ens = m.layers[0]
    own = []
    for member in ens.members:  # oracle: each member alone, plain torch cross-entropy
        probs = member(x)
        lk = torch.nn.functional.nll_loss(probs.log(), y)
        own.append(lk.item())
        grads = torch.autograd.grad(lk / 3, list(member.parameters()))
        for p, g in zip(member.parameters(), grads, strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)
    assert loss.item() == pytest.approx(np.mean(own), rel=1e-12)
    assert len({round(v, 12) for v in own}) == 3  # members start from different weights


def test_prediction_is_the_mean_probability_over_members_and_views():
    m = _model(members=2, views=2)
    x = torch.randn(6, 20, 1)
    m.build(x)
    m.eval()
    ens = m.layers[0]
    with torch.no_grad():
        want = np.mean([member(v).numpy() for member in ens.members for v in crop_views(x, 2, 0.9)], axis=0)
    got = m.predict(x.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    ev = m.evaluate(x.numpy(), np.zeros(6, dtype=int), return_dict=True)
    assert ev["loss"] == pytest.approx(float(-np.log(want[:, 0]).mean()), rel=1e-4)


def test_training_crops_each_series_per_member_and_fit_learns():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=64)
    t = np.linspace(0, 6, 40)
    x = np.stack([np.sin(t * (1 + c)) + 0.1 * rng.normal(size=40) for c in y])[:, :, None].astype(np.float32)
    m = _model(members=2, augment=0.9, classes=2)
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"], learning_rate=1e-2)
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: []}
    hooks = [member.layers[0].register_forward_pre_hook(
        lambda mod, args, k=k: seen[k].append(args[0].clone()) if mod.training else None)
        for k, member in enumerate(m.layers[0].members)]
    h = m.fit(x, y, epochs=15, batch_size=32, verbose=0, seed=0)
    for hk in hooks:
        hk.remove()
    a, b = seen[0][0], seen[1][0]  # the first training step of each member
    assert a.shape == b.shape == (32, 40, 1) and not torch.equal(a, b)  # each member draws its own crops
    rows = {tuple(r.ravel().tolist()) for r in x}
    as_given = sum(tuple(r.ravel().tolist()) in rows for r in a)
    assert as_given < 16  # ~10% of the series are left whole (augment = 0.9)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert m.evaluate(x, y, return_dict=True)["accuracy"] >= 0.9


def test_file_round_trip_and_seeded_members_differ(tmp_path):
    m = _model(members=3, views=1, seed=7)
    x = np.random.default_rng(3).normal(size=(4, 10, 1)).astype(np.float32)
    p = m.predict(x)
    seeds = [member.layers[2].seed for member in m.layers[0].members]
    assert seeds == [7, 8, 9]
    m.save(tmp_path / "e.lstmlab")
    again = ll.load_model(tmp_path / "e.lstmlab")
    np.testing.assert_array_equal(again.predict(x), p)
    cfg = again.layers[0].get_config()
    assert (cfg["members"], cfg["views"], len(cfg["layers"])) == (3, 1, 4)


def test_a_hostile_nested_spec_is_refused_with_its_key_path(tmp_path):
    m = _model(members=2)
    m.build(torch.zeros(2, 10, 1))
    m.save(tmp_path / "e.lstmlab")
    from lstmlab import loading
    cfg = json.loads(json.dumps(m.get_config()))
    cfg["layers"][0]["config"]["layers"][2]["config"]["units"] = "many"
    with pytest.raises(ModelFileError, match=r"layers\[0\]\.config\.layers\[2\]\.config\.units"):
        loading.check_config(cfg, "e.lstmlab")
    cfg["layers"][0]["config"]["layers"] = [{"class_name": "Nope", "config": {}}]
    with pytest.raises(ModelFileError, match="class_name"):
        loading.check_config(cfg, "e.lstmlab")


@pytest.mark.parametrize("kwargs, match", [
    ({"members": 0}, "members"), ({"augment": 1.5}, "augment"), ({"crop": 0.0}, "crop"), ({"views": -1}, "views"),
    ({"layers": []}, "layers"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    args = {"layers": [ll.LSTM(3), ll.Dense(2)], **kwargs}
    with pytest.raises(ValueError, match=match):
        ll.Ensemble(**args)


def test_an_ensemble_must_be_the_last_layer():
    m = ll.Sequential([ll.Ensemble([ll.LSTM(3), ll.Dense(2)], members=2), ll.Dense(1)])
    with pytest.raises(ValueError, match="must be the last layer"):
        m(torch.zeros(2, 5, 1))


def test_per_step_outputs_with_crops_are_refused_clearly():
    m = ll.Sequential([ll.Ensemble([ll.LSTM(3, return_sequences=True), ll.Dense(1)], members=2)])
    m.compile(loss="mse")
    with pytest.raises(ValueError, match="per-step targets"):
        m.fit(np.zeros((4, 6, 1), np.float32), np.zeros((4, 6, 1), np.float32), epochs=1, verbose=0)
    ok = ll.Sequential([ll.Ensemble([ll.LSTM(3, return_sequences=True), ll.Dense(1)], members=2, augment=0,
                                    views=0)])
    ok.compile(loss="mse")
    ok.fit(np.zeros((4, 6, 1), np.float32), np.zeros((4, 6, 1), np.float32), epochs=1, verbose=0)
    assert ok.predict(np.zeros((4, 6, 1), np.float32)).shape == (4, 6, 1)


TOML = """
[data]
source = "temporal-order"
length = 20
n_train = 64
n_val = 16
n_test = 16

[model]
layers = [{type = "LSTM", units = 4}, {type = "Dense"}]
ensemble = ENS

[train]
epochs = 2
batch_size = 32
"""


def test_toml_ensemble_wraps_the_layers_and_bad_keys_are_named(tmp_path, capsys):
    from lstmlab import cli

    cfg = tmp_path / "e.toml"
    cfg.write_text(TOML.replace("ENS", "{members = 2, views = 1, augment = 0.5, crop = 0.8}"))
    assert cli.main(["train", str(cfg), "--run-dir", str(tmp_path / "run")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= result["test"]["accuracy"] <= 1
    model = ll.load_model(tmp_path / "run" / "model.lstmlab")
    assert isinstance(model.layers[0], ll.Ensemble) and len(model.layers[0].members) == 2
    cfg.write_text(TOML.replace("ENS", "{member = 2}"))
    assert cli.main(["train", str(cfg), "--run-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.ensemble" in err[0] and "member" in err[0]
    cfg.write_text(TOML.replace("ENS", "{members = 0}"))
    assert cli.main(["train", str(cfg), "--run-dir", str(tmp_path / "bad2")]) == 2
    assert "model.ensemble: members" in capsys.readouterr().err
