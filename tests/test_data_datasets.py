"""Packaged data sets (offline) and the Debian-provided text sets."""

from pathlib import Path

import numpy as np
import pytest

from lstmlab.data import DataError, load
from lstmlab.data.datasets import FILES, FORTUNES_PATH, WORDNET_PATH

HAVE_FORTUNES = Path(FORTUNES_PATH, "fortunes").is_file()
HAVE_WORDNET = Path(WORDNET_PATH, "data.noun").is_file()


def test_shipped_files_are_small():
    total = sum(p.stat().st_size for p in FILES.iterdir())
    assert total < 450_000


@pytest.mark.parametrize("name,rows,first_time,window", [
    ("airline", 144, "1949-01", 12), ("sunspots", 309, "1700", 22), ("co2", 2284, "1958-03-29", 52)])
def test_forecasting_sets(name, rows, first_time, window):
    s = load(name)
    m = s.meta
    assert m["kind"] == "regression" and m["n_features"] == 1 and m["window"] == window
    assert sum(m["rows"].values()) == rows
    assert len(s.train) + len(s.val) + len(s.test) == rows - window - m["transform"]["lag"]
    assert s.train.x.shape[1:] == (window, 1) and s.train.y.shape[1] == 1
    assert s.train.x.dtype == np.float32
    assert m["times"]["train"][0] != first_time  # first target comes after the first window
    # scaled on train only: training targets have mean ~0 and std ~1
    assert abs(float(s.train.y.mean())) < 0.2
    # inverse transform gives original units
    orig = m["scaler"].inverse_transform(s.test.y)
    assert np.all(np.isfinite(orig))
    assert m["baseline"]["persistence_test_mse"] > 0


def test_airline_values_round_trip():
    s = load("airline", window=4, scale="minmax", transform="none")
    first = s.meta["scaler"].inverse_transform(s.train.x[0, :, 0][:, None])[:, 0]
    np.testing.assert_allclose(first, [112, 118, 132, 129], atol=1e-3)
    assert s.meta["times"]["train"][0] == "1949-05"


def test_co2_missing_values_interpolated_and_reported():
    s = load("co2")
    assert s.meta["missing"]["cells"] == 59
    assert "interpolation" in s.meta["missing"]["note"]
    d = load("co2", missing="drop")
    assert sum(d.meta["rows"].values()) == 2284 - 59


def test_japanese_vowels():
    s = load("japanese-vowels")
    assert len(s.train) == 270 and len(s.test) == 370 and len(s.val) == 0
    assert s.train.x.shape[2] == 12 and s.meta["n_features"] == 12
    lengths = np.concatenate([s.train.lengths, s.test.lengths])
    assert lengths.min() == 7 and lengths.max() == 29 and s.test.x.shape[1] == 29
    assert s.meta["n_classes"] == 9
    assert set(np.unique(s.train.y)) == set(range(9))
    assert np.all(np.bincount(s.train.y) == 30)
    np.testing.assert_array_equal(np.bincount(s.test.y), [31, 35, 88, 44, 29, 24, 40, 50, 29])
    assert np.all(s.train.x[~s.train.mask] == 0)
    # first training frame, first coefficient, as in the UCI file
    assert s.train.x[0, 0, 0] == pytest.approx(1.860936, abs=1e-6)
    v = load("japanese-vowels", val_fraction=0.2, scale="standard")
    assert len(v.train) + len(v.val) == 270 and len(v.val) == 54
    assert abs(float(v.train.x[v.train.mask].mean())) < 1e-3


def test_digits():
    s = load("digits")
    assert s.train.x.shape[1:] == (8, 8) and s.meta["n_classes"] == 10
    assert len(s.train) + len(s.val) + len(s.test) == 1797
    assert 0 <= s.train.x.min() and s.train.x.max() <= 1.0


def test_missing_debian_files_raise_with_package_name(tmp_path):
    with pytest.raises(DataError, match=r"apt-get install fortunes"):
        load("fortunes", path=tmp_path / "nope")
    with pytest.raises(DataError, match=r"wordnet-base"):
        load("wordnet", path=tmp_path / "nope")
    with pytest.raises(DataError, match=r"data.noun.*wordnet-base"):
        load("wordnet", path=tmp_path)


def test_fortunes_from_any_folder(tmp_path):
    (tmp_path / "mine").write_text("First fortune, quite short.\n%\nSecond one here.\n%\n" * 30)
    (tmp_path / "mine.dat").write_bytes(b"\0\1")
    s = load("fortunes", path=tmp_path, seq_len=20, val_fraction=0.1, test_fraction=0.1)
    assert s.meta["kind"] == "language_model" and s.meta["entries"] == 60
    assert "%" not in s.meta["vocab"]


def test_wordnet_from_any_folder(tmp_path):
    lines = ["  1 licence text | not a gloss"]
    for i in range(40):
        lex = ["05", "13", "18"][i % 3]
        word = ["dog", "bread", "teacher"][i % 3]
        lines.append(f"{i:08d} {lex} n 01 {word} 0 000 | a {word} of kind {i}; \"an example\"  ")
    (tmp_path / "data.noun").write_text("\n".join(lines) + "\n")
    s = load("wordnet", path=tmp_path, parts=["noun"], val_fraction=0.2, test_fraction=0.2)
    assert s.meta["class_names"] == ["noun.animal", "noun.food", "noun.person"]
    assert "example" not in s.meta["vocab"]
    assert len(s.train) + len(s.val) + len(s.test) == 40


@pytest.mark.skipif(not HAVE_FORTUNES, reason=f"Debian package 'fortunes' not installed ({FORTUNES_PATH})")
def test_fortunes_debian():
    s = load("fortunes", seq_len=50, max_chars=200_000)
    assert s.train.x.shape[1] == 50 and s.meta["vocab_size"] > 50
    np.testing.assert_array_equal(s.train.x[0, 1:], s.train.y[0, :-1])
    text = s.meta["vocab"].decode(s.train.x[0])
    assert len(text) == 50


@pytest.mark.skipif(not HAVE_WORDNET, reason=f"Debian package 'wordnet-base' not installed ({WORDNET_PATH})")
def test_wordnet_debian():
    s = load("wordnet", top_classes=10, max_examples=5000)
    assert s.meta["n_classes"] == 10
    assert len(s.train) + len(s.val) + len(s.test) == 5000
    full = load("wordnet", max_len=8)
    assert full.meta["n_classes"] == 45
    assert len(full.train) + len(full.val) + len(full.test) > 100_000
