"""Users' own files: csv-series, csv-sequences, csv-text, text-file, imdb-folder."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lstmlab.data import DataError, Scaler, decode, encode, load, tokenize

FIX = Path(__file__).parent / "fixtures"


# ----------------------------------------------------------------------------- csv-series


def test_csv_series_shapes_and_defaults():
    s = load("csv-series", path=FIX / "series.csv", target="temperature", window=7, horizon=2)
    m = s.meta
    assert m["time_column"] == "date"
    assert m["feature_names"] == ["temperature", "humidity"]
    assert s.train.x.shape[1:] == (7, 2) and s.train.y.shape[1] == 2
    assert m["target_names"] == ["temperature[t+1]", "temperature[t+2]"]
    assert len(s.train) + len(s.val) + len(s.test) == 80 - 7 - 2 + 1
    assert m["times"]["test"][-1] == "2024-03-23"  # first target of the last window (last row: 03-24)


def test_csv_series_last_column_is_default_target_and_features_option():
    s = load("csv-series", path=FIX / "series.csv", window=5)
    assert s.meta["target_columns"] == ["humidity"]
    f = load("csv-series", path=FIX / "series.csv", target="humidity", features=["temperature"],
             autoregressive=False, window=5)
    assert f.meta["feature_names"] == ["temperature"] and f.train.x.shape[2] == 1


def test_scaler_fitted_on_train_only(tmp_path):
    src = (FIX / "series.csv").read_text().splitlines()
    changed = src[:70] + [line.rsplit(",", 2)[0] + ",999.0,1.0" for line in src[70:]]
    (tmp_path / "changed.csv").write_text("\n".join(changed) + "\n")
    a = load("csv-series", path=FIX / "series.csv", target="temperature", window=5)
    b = load("csv-series", path=tmp_path / "changed.csv", target="temperature", window=5)
    assert a.meta["rows"]["train"] < 69  # rows 70+ are in val/test only
    assert a.meta["scaler"].to_dict() == b.meta["scaler"].to_dict()
    assert a.meta["feature_scaler"].to_dict() == b.meta["feature_scaler"].to_dict()
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert not np.array_equal(a.test.y, b.test.y)


@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_inverse_transform_round_trip(method):
    s = load("csv-series", path=FIX / "series.csv", target=["temperature", "humidity"], window=6, horizon=3,
             transform="none",
             scale=method)
    sc = s.meta["scaler"]
    raw = np.loadtxt(FIX / "series.csv", delimiter=",", skiprows=1, usecols=(1, 2))
    # the first training target block = rows 6..8 of the file
    np.testing.assert_allclose(sc.inverse_transform(s.train.y[0]), raw[6:9].reshape(-1), atol=1e-4)
    np.testing.assert_allclose(sc.inverse_transform(s.train.y[:, :2]), raw[6:6 + len(s.train), :], atol=1e-4)
    np.testing.assert_allclose(sc.transform(sc.inverse_transform(s.test.y)), s.test.y, atol=1e-5)
    back = Scaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_allclose(back.inverse_transform(s.val.y), sc.inverse_transform(s.val.y))
    if method == "minmax":
        assert s.train.y.min() >= -1e-6 and s.train.y.max() <= 1 + 1e-6


def test_inverse_transform_accepts_torch():
    torch = pytest.importorskip("torch")
    s = load("airline")
    t = torch.from_numpy(s.test.y)
    sc = s.meta["scaler"]
    np.testing.assert_allclose(sc.inverse_transform(t), sc.inverse_transform(s.test.y))


def test_csv_series_missing_policies(tmp_path):
    lines = ["t,v"] + [f"{i},{'' if i in (5, 6) else i * 2.0}" for i in range(40)]
    (tmp_path / "gaps.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"gaps.csv, row 7, column 'v': expected a number, got ''"):
        load("csv-series", path=tmp_path / "gaps.csv", window=3)
    s = load("csv-series", path=tmp_path / "gaps.csv", window=3, missing="interpolate", scale=None,
             transform="none")
    assert s.meta["missing"]["cells"] == 2
    np.testing.assert_allclose(s.train.x[3, :, 0], [6.0, 8.0, 10.0])  # interpolated 10
    d = load("csv-series", path=tmp_path / "gaps.csv", window=3, missing="drop")
    assert sum(d.meta["rows"].values()) == 38


def test_csv_series_semicolon_and_no_time_column(tmp_path):
    (tmp_path / "s.csv").write_text("a;b\n" + "\n".join(f"{i};{i % 5}" for i in range(30)) + "\n")
    s = load("csv-series", path=tmp_path / "s.csv", time_column=None, target="b", window=4)
    assert s.meta["feature_names"] == ["a", "b"]


# ----------------------------------------------------------------------------- csv-sequences


def test_csv_sequences():
    s = load("csv-sequences", path=FIX / "sequences.csv", features=["x1", "x2"], time_column="step",
             val_fraction=0.2, test_fraction=0.2, seed=1)
    m = s.meta
    assert m["class_names"] == ["run", "sit", "walk"] and m["n_classes"] == 3
    assert len(s.train) + len(s.val) + len(s.test) == 30
    assert len(s.test) == 6 and np.all(np.bincount(s.test.y, minlength=3) == 2)  # stratified
    assert s.train.x.shape[2] == 2 and s.train.x.dtype == np.float32
    all_len = np.concatenate([s.train.lengths, s.val.lengths, s.test.lengths])
    assert all_len.min() >= 4 and all_len.max() <= 12 and s.train.x.shape[1] == all_len.max()
    for part in s:
        assert np.all(part.x[~part.mask] == 0)
    steps = s.train.x[s.train.mask]
    np.testing.assert_allclose(steps.mean(0), 0, atol=1e-5)
    assert set(m["ids"]["train"]).isdisjoint(m["ids"]["test"])
    again = load("csv-sequences", path=FIX / "sequences.csv", features=["x1", "x2"], time_column="step",
                 val_fraction=0.2, test_fraction=0.2, seed=1)
    assert again.meta["ids"] == m["ids"]


def test_csv_sequences_default_features_include_step_when_no_time_column():
    s = load("csv-sequences", path=FIX / "sequences.csv", stratify=False)
    assert s.meta["feature_names"] == ["step", "x1", "x2"]


# ----------------------------------------------------------------------------- text


def test_tokenizer():
    assert tokenize("It's GREAT,<br />really!") == ["it's", "great", ",", "really", "!"]


def test_csv_text():
    s = load("csv-text", path=FIX / "texts.csv", val_fraction=0.25, test_fraction=0.25, max_len=6)
    m = s.meta
    assert m["class_names"] == ["neg", "pos"] and m["input_type"] == "tokens"
    v = m["vocab"]
    assert v[0] == "<pad>" and v[1] == "<unk>"
    assert s.train.x.shape[1] == 6 and s.train.x.dtype == np.int64
    assert np.all(s.train.lengths <= 6) and np.all(s.train.lengths >= 1)
    assert np.all(s.train.x[~s.train.mask] == 0)
    assert len(s.train) == 12 and len(s.val) == 6 and len(s.test) == 6
    # vocabulary built on train only: every training token is known, some val/test tokens are not
    assert not np.any(s.train.x == 1)
    assert np.any(s.val.x == 1) or np.any(s.test.x == 1)
    words = ["a", "great", "film"]
    assert decode(encode(" ".join(words), v), v).split() == [t if t in v else "<unk>" for t in words]


def test_csv_text_vocab_limits():
    s = load("csv-text", path=FIX / "texts.csv", max_tokens=10, max_len=None)
    assert len(s.meta["vocab"]) == 10
    lengths = [len(tokenize(t)) for t in (FIX / "texts.csv").read_text().splitlines()]
    assert s.train.x.shape[1] <= max(lengths)
    f = load("csv-text", path=FIX / "texts.csv", min_freq=2)
    counts = Counter(tokenize((FIX / "texts.csv").read_text()))
    assert len(f.meta["vocab"]) > 2
    assert all(counts[t] >= 2 for t in f.meta["vocab"][2:])


def test_csv_text_unseen_labels(tmp_path):
    msg = r"texts_test_unseen.csv, row 3: label 'neutral'.*unseen_labels='drop'"
    with pytest.raises(DataError, match=msg):
        load("csv-text", path=FIX / "texts.csv", test_path=FIX / "texts_test_unseen.csv")
    s = load("csv-text", path=FIX / "texts.csv", test_path=FIX / "texts_test_unseen.csv",
             unseen_labels="drop")
    assert len(s.test) == 2 and s.meta["dropped_unseen_labels"]["test"] == 1


def test_text_file_char_lm():
    s = load("text-file", path=FIX / "tiny.txt", seq_len=32)
    m = s.meta
    assert m["kind"] == "language_model" and m["target"] == "per_step"
    v = m["vocab"]
    assert v[:2] == ["<pad>", "<unk>"] and v.char_level
    x, y = s.train.x, s.train.y
    assert x.shape[1] == 32 and y.shape == x.shape
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    text = (FIX / "tiny.txt").read_text()
    assert decode(x[0], v) == text[:32]
    np.testing.assert_array_equal(encode(text[:32], v), x[0])
    assert len(s.val) > 0 and len(s.test) > 0
    assert m["baseline"]["unigram_test_cross_entropy"] < m["baseline"]["uniform_cross_entropy"]


def test_imdb_folder_with_train_test():
    s = load("imdb-folder", path=FIX / "imdb", val_fraction=0.25)
    assert s.meta["class_names"] == ["neg", "pos"]
    assert len(s.test) == 8 and len(s.train) + len(s.val) == 16  # unsup ignored
    assert "br" not in s.meta["vocab"]


def test_imdb_folder_flat(tmp_path):
    for lab in ("pos", "neg"):
        shutil.copytree(FIX / "imdb" / "train" / lab, tmp_path / lab)
    s = load("imdb-folder", path=tmp_path, val_fraction=0.25, test_fraction=0.25, max_per_class=8)
    assert len(s.train) == 8 and len(s.val) == 4 and len(s.test) == 4
