"""Bad input fails early with a message naming the argument, the expectation and what came."""

import numpy as np
import pytest
import torch

import lstmlab as ll


@pytest.fixture
def model():
    m = ll.Sequential([ll.LSTM(4), ll.Dense(3, activation="softmax")])
    m.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    m(torch.zeros(1, 5, 2))
    return m


X = np.zeros((4, 5, 2), np.float32)
Y = np.array([0, 1, 2, 1])


@pytest.mark.parametrize("x,y,pattern", [
    (np.zeros((4, 2), np.float32), Y, r"expected a 3-D tensor \(batch, time, features\), got shape \(4, 2\)"),
    (np.zeros((4, 5, 3), np.float32), Y, r"expected 2 features .* got shape \(4, 5, 3\)"),
    (np.array([["a", "b"]]), Y[:1], r"x: expected numeric data, got an array of dtype <U1"),
    (np.zeros((4, 5, 2), np.int64), Y, r"expected floating-point data .* got dtype torch.int64"),
    (np.where(np.arange(40).reshape(4, 5, 2) == 17, np.nan, 0.0), Y,
     r"x: expected finite values, got NaN/Inf at index \(1, 3, 1\)"),
    (np.zeros((0, 5, 2), np.float32), Y[:0], r"x: expected a non-empty array, got shape \(0, 5, 2\)"),
    (X, np.array([0, 1, 5, 1]), r"y: expected class ids in \[0, 2\], got min 0, max 5"),
    (X, np.array([0, 1, 2]), r"y: expected 4 rows to match x, got 3"),
    (X, np.zeros((4, 2)), r"y: expected class ids of shape \(4,\), got shape \(4, 2\)"),
])
def test_fit_rejects_bad_input(model, x, y, pattern):
    with pytest.raises(ll.InputError, match=pattern):
        model.fit(x, y, epochs=1, verbose=0)


def test_categorical_labels_shape_hint():
    m = ll.Sequential([ll.GRU(3), ll.Dense(3, activation="softmax")])
    m.compile(loss="categorical_crossentropy", optimizer="adam")
    with pytest.raises(ll.InputError, match="one-hot labels; use sparse_categorical_crossentropy"):
        m.fit(X, Y, epochs=1, verbose=0)


def test_ragged_lists_and_bad_lengths(model):
    with pytest.raises(ll.InputError, match="ragged"):
        model.fit([[[0.0, 1.0]], [[0.0, 1.0], [1.0, 2.0]]], [0, 1], verbose=0)
    with pytest.raises(ll.InputError, match=r"lengths: expected every length in \[1, 5\], got min 0"):
        model.fit(X, Y, lengths=[5, 0, 3, 2], verbose=0)
    with pytest.raises(ll.InputError, match="expected right-padded"):
        model(torch.zeros(2, 5, 2), mask=torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1]]))


def test_fit_arguments(model):
    with pytest.raises(ll.InputError, match="epochs: expected a positive integer, got 0"):
        model.fit(X, Y, epochs=0)
    with pytest.raises(ll.InputError, match="validation_split"):
        model.fit(X, Y, validation_split=1.5)
    with pytest.raises(ValueError, match="loss: expected one of"):
        model.compile(loss="hinge")
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        model.compile(loss="mse", optimizer="adagrad")
    with pytest.raises(ValueError, match="clipnorm: expected a positive number"):
        model.compile(loss="mse", clipnorm=-1)
    with pytest.raises(ValueError, match="metrics"):
        model.compile(loss="mse", metrics=["f1"])


def test_missing_and_corrupt_model_files(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="no such file"):
        ll.load_model(tmp_path / "nope.lstmlab")
    path = tmp_path / "m.lstmlab"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.lstmlab").write_bytes(data[: len(data) // 2])
    with pytest.raises(ll.ModelFileError, match="truncated or corrupt"):
        ll.load_model(tmp_path / "trunc.lstmlab")
    (tmp_path / "junk.lstmlab").write_bytes(b"hello world, not a model")
    with pytest.raises(ll.ModelFileError, match="trunc|corrupt"):
        ll.load_model(tmp_path / "junk.lstmlab")
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ll.ModelFileError, match="expected lstmlab format"):
        ll.load_model(tmp_path / "other.safetensors")
    with pytest.raises(ll.ModelFileError, match="directory"):
        ll.load_model(tmp_path)
