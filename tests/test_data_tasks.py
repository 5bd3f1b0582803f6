"""Long-lag task generators: statistics, baselines, determinism."""

import math

import numpy as np
import pytest

from lstmlab.data import DataError, adding_problem, copy_memory, load, temporal_order


def test_adding_markers_one_per_half_and_target_is_marked_sum():
    s = adding_problem(length=60, n_train=500, n_val=10, n_test=10, seed=3)
    x, y = s.train.x, s.train.y
    assert x.shape == (500, 60, 2) and x.dtype == np.float32
    assert y.shape == (500, 1) and y.dtype == np.float32
    marks = x[..., 1]
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, :30].sum(axis=1) == 1) and np.all(marks[:, 30:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * marks).sum(axis=1), rtol=1e-6)
    assert 0.0 <= x[..., 0].min() and x[..., 0].max() < 1.0


def test_adding_memoryless_baseline_is_one_sixth():
    s = adding_problem(length=20, n_train=40000, n_val=0, n_test=10, seed=0)
    mse = float(np.mean((s.train.y - 1.0) ** 2))
    assert mse == pytest.approx(1 / 6, abs=0.005)
    assert s.meta["baseline"]["mse"] == pytest.approx(0.1667, abs=1e-3)
    assert s.meta["baseline"]["predict"] == 1.0
    # the constant 1.0 is the best memoryless prediction (the mean of the target)
    assert float(s.train.y.mean()) == pytest.approx(1.0, abs=0.01)


def test_tasks_are_deterministic_and_test_set_independent_of_train_size():
    a = adding_problem(length=30, n_train=50, n_val=5, n_test=20, seed=7)
    b = adding_problem(length=30, n_train=50, n_val=5, n_test=20, seed=7)
    c = adding_problem(length=30, n_train=80, n_val=5, n_test=20, seed=7)
    d = adding_problem(length=30, n_train=50, n_val=5, n_test=20, seed=8)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.x, c.test.x)
    assert not np.array_equal(a.test.x, d.test.x)
    for fn in (copy_memory, temporal_order):
        opts = dict(length=40, n_train=20, n_val=2, n_test=2, seed=1)
        p, q = fn(**opts), fn(**opts)
        np.testing.assert_array_equal(p.train.x, q.train.x)
        np.testing.assert_array_equal(p.train.y, q.train.y)


def test_copy_layout_and_targets():
    T = 25
    s = copy_memory(length=T, n_train=300, n_val=3, n_test=3, one_hot=False, seed=2)
    x, y = s.train.x, s.train.y
    assert x.shape == (300, T + 20) and y.shape == (300, T + 20)
    assert x.dtype == np.int64 and y.dtype == np.int64
    assert np.all((x[:, :10] >= 1) & (x[:, :10] <= 8))
    assert np.all(x[:, 10:10 + T - 1] == 0)
    assert np.all(x[:, 10 + T - 1] == 9)
    assert np.all(x[:, T + 10:] == 0)
    assert np.all(y[:, :T + 10] == 0)
    np.testing.assert_array_equal(y[:, -10:], x[:, :10])
    assert s.meta["n_classes"] == 10 and s.meta["target"] == "per_step"
    onehot = copy_memory(length=T, n_train=300, n_val=3, n_test=3, seed=2).train.x
    assert onehot.shape == (300, T + 20, 10)
    np.testing.assert_array_equal(onehot.argmax(-1), x)


def test_copy_baseline_matches_memoryless_cross_entropy_on_actual_labels():
    T = 50
    s = copy_memory(length=T, n_train=4000, n_val=0, n_test=1, one_hot=False, seed=0)
    y = s.train.y
    # Memoryless predictor: per time step, the marginal label distribution of that step.
    ce = 0.0
    for t in range(y.shape[1]):
        p = np.bincount(y[:, t], minlength=10) / len(y)
        p = p[p > 0]
        ce += float(-(p * np.log(p)).sum())
    ce /= y.shape[1]
    expected = 10 * math.log(8) / (T + 20)
    assert s.meta["baseline"]["cross_entropy"] == pytest.approx(expected)
    assert ce == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("classes,k", [(4, 2), (8, 3)])
def test_temporal_order_classes_from_relevant_symbols(classes, k):
    s = temporal_order(length=100, classes=classes, n_train=800, n_val=4, n_test=4, seed=0)
    x, y = s.train.x, s.train.y
    assert x.shape == (800, 100, 8) and y.dtype == np.int64
    assert np.all(x.sum(-1) == 1)  # one-hot
    ids = x.argmax(-1)
    assert np.all(ids[:, 0] == 7) and np.all(ids[:, -1] == 6)  # E first, B last
    relevant = (ids == 4) | (ids == 5)
    assert np.all(relevant.sum(1) == k)
    for i in range(50):
        bits = (ids[i][relevant[i]] == 5).astype(int)
        assert y[i] == int("".join(map(str, bits)), 2)
    counts = np.bincount(y, minlength=classes)
    assert counts.min() > 0.5 * len(y) / classes
    assert s.meta["n_classes"] == classes and len(s.meta["class_names"]) == classes
    assert s.meta["class_names"][1] == "X" * (k - 1) + "Y"


def test_temporal_order_jitter_gives_lengths():
    s = temporal_order(length=40, classes=4, length_jitter=5, n_train=200, n_val=2, n_test=2, seed=0)
    L = s.train.lengths
    assert L.min() >= 40 and L.max() <= 45 and s.train.x.shape[1] == L.max()
    ids = s.train.x.argmax(-1)
    assert np.all(ids[np.arange(200), L - 1] == 6)
    assert np.all(s.train.x[~s.train.mask] == 0)


def test_task_option_errors():
    with pytest.raises(DataError, match="classes"):
        temporal_order(classes=5)
    with pytest.raises(DataError, match="length"):
        adding_problem(length=1)
    with pytest.raises(DataError, match="n_train"):
        load("copy", n_train=-1)
