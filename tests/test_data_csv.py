"""CSV reading: linear in rows and columns, the same cells and errors on both parsing paths, bounded reads."""

import os

import numpy as np
import pytest

from lstmlab.data import DataError, csv_io, load
from lstmlab.data.csv_io import read_table


def _no_slow_path(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("the csv-module path was taken")

    monkeypatch.setattr(csv_io, "_read_slow", fail)


@pytest.mark.timeout(120)
def test_a_one_row_file_with_200k_columns_reads_in_linear_time(tmp_path, monkeypatch):
    # Issue 12: 100k columns took 72 s (a duplicate check over header[:k] and header.index per
    # column, both quadratic); 200k would take about 5 minutes that way, hence the timeout.
    k = 200_000
    p = tmp_path / "wide.csv"
    p.write_text(",".join(f"c{j}" for j in range(k)) + "\n" + ",".join(str(j % 97) for j in range(k)) + "\n")
    t = read_table(p)
    assert len(t) == 1 and t.header[-1] == f"c{k - 1}" and t.index(f"c{k - 1}") == k - 1
    np.testing.assert_array_equal(t.numeric_block(t.header)[0], np.arange(k) % 97)
    # the csv-module path (taken for quoted files) is linear as well
    monkeypatch.setattr(csv_io, "_read_fast", lambda *a, **k: None)
    t = read_table(p)
    np.testing.assert_array_equal(t.numeric_block(t.header)[0], np.arange(k) % 97)


@pytest.mark.timeout(120)
def test_wide_sequences_and_duplicate_header_at_the_end(tmp_path):
    k = 50_000
    head = "id,label," + ",".join(f"f{j}" for j in range(k))
    rows = [f"{i // 2},{'ab'[i // 2 % 2]}," + ",".join(str((i + j) % 7) for j in range(k)) for i in range(4)]
    (tmp_path / "w.csv").write_text(head + "\n" + "\n".join(rows) + "\n")
    s = load("csv-sequences", path=tmp_path / "w.csv", scale=None, val_fraction=0, test_fraction=0)
    assert s.train.x.shape == (2, 2, k) and s.train.x[1, 1, 3] == (3 + 3) % 7
    (tmp_path / "d.csv").write_text(head + ",f7\n")
    with pytest.raises(DataError, match=r"d.csv, row 1: column name 'f7' appears twice in the header"):
        read_table(tmp_path / "d.csv")


def _both_paths(tmp_path, monkeypatch, text):
    """Read ``text`` by the pandas path and by the csv-module path; return both tables."""
    p = tmp_path / "t.csv"
    p.write_text(text)
    fast = read_table(p, text_columns=["id"])
    with monkeypatch.context() as m:
        m.setattr(csv_io, "_read_fast", lambda *a, **k: None)
        slow = read_table(p, text_columns=["id"])
    return fast, slow


def test_both_paths_give_the_same_cells_and_numbers(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    vals = rng.normal(size=(50, 3)) * 10.0 ** rng.integers(-5, 5, size=(50, 3))
    lines = ["id , a,b ,c"] + [f"{i:03d},{float(a)!r},{b:.9e}, {c}" for i, (a, b, c) in enumerate(vals)]
    lines.insert(10, "")
    lines.insert(20, "   ")
    fast, slow = _both_paths(tmp_path, monkeypatch, "\r\n".join(lines) + "\r\n")
    assert fast.header == slow.header == ["id", "a", "b", "c"]
    assert fast.column("id").tolist() == slow.column("id").tolist() == [f"{i:03d}" for i in range(50)]
    np.testing.assert_array_equal(fast.numeric_block(["a", "b", "c"]), slow.numeric_block(["a", "b", "c"]))
    np.testing.assert_allclose(fast.numeric_block(["a", "b", "c"]), vals, rtol=1e-9)
    assert fast.lines.tolist() == slow.lines.tolist()
    assert fast.lines[8:12].tolist() == [10, 12, 13, 14]  # the blank line 11 is skipped


@pytest.mark.parametrize("text,message", [
    ("a,b,c\n1,2,3\n4,5,6,7\n", r"t.csv, row 3: expected 3 fields, got 4"),
    ("a,b,c\n1,2,3\n4,5\n", r"t.csv, row 3: expected 3 fields, got 2"),
    ("a,b,c\n1,2,3\n\n4,1_0,6\n", r"t.csv, row 4, column 'b': expected a number, got '1_0'"),
    ("a,b,c\n1,2,3\n4,-inf,6\n", r"t.csv, row 3, column 'b': expected a finite number, got '-inf'"),
    ("a,b,c\n1,2,3\n4,1e400,6\n", r"t.csv, row 3, column 'b': expected a finite number, got '1e400'"),
    ("a,b,c\n1,2,3\n4,NA,6\n", r"t.csv, row 3, column 'b': expected a number, got 'NA' \(missing value"),
    ("a,,c\n1,2,3\n", r"t.csv, row 1: header field 2 is empty"),
    ('a,b,c\n1,"2,3\n', r"t.csv, row 2: expected 3 fields, got 2"),
])
def test_errors_are_the_same_on_both_paths(tmp_path, monkeypatch, text, message):
    p = tmp_path / "t.csv"
    p.write_text(text)
    for fast in (True, False):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(csv_io, "_read_fast", lambda *a, **k: None)
            with pytest.raises(DataError, match=message):
                t = read_table(p)
                t.numeric_block(t.header)


def test_missing_cells_on_the_pandas_path(tmp_path):
    (tmp_path / "m.csv").write_text("t,v\n1,1.0\n2,\n3,NaN\n4, null \n5,5\n")
    t = read_table(tmp_path / "m.csv")
    v = t.numeric("v", allow_missing=True)
    assert np.isnan(v[1:4]).all() and v[0] == 1 and v[4] == 5
    with pytest.raises(DataError, match=r"m.csv, row 3, column 'v': expected a number, got ''"):
        t.numeric("v")


def test_devices_and_huge_files_are_refused(tmp_path, monkeypatch):
    if os.path.exists("/dev/zero"):
        with pytest.raises(DataError, match=r"/dev/zero: not a regular file"):
            load("text-file", path="/dev/zero")
        with pytest.raises(DataError, match=r"not a regular file"):
            load("csv-series", path="/dev/zero")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"pipe: not a regular file"):
        load("text-file", path=fifo)
    (tmp_path / "big.txt").write_text("abcdefghij" * 100)
    monkeypatch.setattr(csv_io, "MAX_TEXT_BYTES", 500)
    with pytest.raises(DataError, match=r"big.txt: the file is larger than 500 bytes.*set max_chars"):
        load("text-file", path=tmp_path / "big.txt", seq_len=5)
    s = load("text-file", path=tmp_path / "big.txt", seq_len=5, max_chars=300)
    assert sum(s.meta["chars"].values()) == 300


def test_max_chars_cut_inside_a_multibyte_character(tmp_path):
    (tmp_path / "u.txt").write_text("é" * 400, encoding="utf-8")  # 2 bytes each
    s = load("text-file", path=tmp_path / "u.txt", seq_len=5, max_chars=201)
    assert sum(s.meta["chars"].values()) == 201
