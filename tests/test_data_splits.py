"""Official splits (val_path / test_path / test_size), time columns as people write them, DataFrames."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmlab.data import SOURCES, DataError, from_dataframe, load

FIX = Path(__file__).parent / "fixtures"


def test_every_file_source_takes_val_path_and_test_path():
    for name in ("csv-series", "csv-sequences", "csv-text", "text-file", "imdb-folder", "ts-file"):
        opts = SOURCES[name].options
        assert opts["val_path"] is None and opts["test_path"] is None, name
    assert SOURCES["csv-series"].options["test_size"] is None


# ----------------------------------------------------------------------------- csv-sequences


def _split_file(tmp_path, test_ids):
    df = pd.read_csv(FIX / "sequences.csv", dtype=str)
    test = df[df["id"].isin(test_ids)]
    train = df[~df["id"].isin(test_ids)]
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    return df, train, test


def test_csv_sequences_test_path_keeps_the_official_split(tmp_path):
    df, train, test = _split_file(tmp_path, ["s00", "s01", "s05"])
    s = load("csv-sequences", path=tmp_path / "train.csv", test_path=tmp_path / "test.csv", time_column="step",
             val_fraction=0.0)
    assert s.meta["ids"]["test"] == ["s00", "s01", "s05"] and len(s.val) == 0
    assert len(s.train) == train["id"].nunique()
    # the scaler is fitted on the training file only: changing the test file changes nothing else
    changed = test.copy()
    changed["x1"] = "999"
    changed.to_csv(tmp_path / "test2.csv", index=False)
    t = load("csv-sequences", path=tmp_path / "train.csv", test_path=tmp_path / "test2.csv", time_column="step",
             val_fraction=0.0)
    assert s.meta["feature_scaler"].to_dict() == t.meta["feature_scaler"].to_dict()
    np.testing.assert_array_equal(s.train.x, t.train.x)
    # rows of the test file, scaled with the training statistics
    sc = s.meta["feature_scaler"]
    s00 = test[test["id"] == "s00"].sort_values("step", key=lambda c: c.astype(int))
    np.testing.assert_allclose(sc.inverse_transform(s.test.x[0, : s.test.lengths[0]]),
                               s00[["x1", "x2"]].astype(float).to_numpy(), atol=1e-5)


def test_csv_sequences_val_path_and_unknown_test_label(tmp_path):
    _split_file(tmp_path, ["s00", "s03"])
    s = load("csv-sequences", path=tmp_path / "train.csv", val_path=tmp_path / "test.csv",
             test_path=tmp_path / "test.csv")
    assert s.meta["ids"]["val"] == s.meta["ids"]["test"] == ["s00", "s03"]
    (tmp_path / "odd.csv").write_text("id,step,x1,x2,label\nq,0,1,2,swim\n")
    with pytest.raises(DataError, match=r"odd.csv, row 2, column 'label': label 'swim' never occurs in the training"):
        load("csv-sequences", path=tmp_path / "train.csv", test_path=tmp_path / "odd.csv")
    (tmp_path / "nocol.csv").write_text("id,step,x1,label\nq,0,1,walk\n")
    with pytest.raises(DataError, match=r"nocol.csv, row 1: no column 'x2'"):
        load("csv-sequences", path=tmp_path / "train.csv", test_path=tmp_path / "nocol.csv")


def test_from_dataframe_equals_the_csv_loader(tmp_path):
    df = pd.read_csv(FIX / "sequences.csv")
    opts = {"seed": 3, "val_fraction": 0.2, "test_fraction": 0.2}
    a = load("csv-sequences", path=FIX / "sequences.csv", time_column="step", **opts)
    b = from_dataframe(df, id="id", time="step", label="label", **opts)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part).x, getattr(b, part).x)
        np.testing.assert_array_equal(getattr(a, part).y, getattr(b, part).y)
        np.testing.assert_array_equal(getattr(a, part).lengths, getattr(b, part).lengths)
    assert a.meta["class_names"] == b.meta["class_names"] and a.meta["ids"] == b.meta["ids"]
    shuffled = df.sample(frac=1.0, random_state=0)  # time column orders the steps again
    c = from_dataframe(shuffled, time="step", test=df[df["id"] == "s00"], val_fraction=0.0)
    assert c.meta["ids"]["test"] == ["s00"] and len(c.test) == 1


def test_from_dataframe_errors_name_the_row():
    df = pd.DataFrame({"id": ["a", "a", "b"], "t": [0, 1, 0], "v": [1.0, "x", 2.0], "label": ["p", "p", "q"]})
    with pytest.raises(DataError, match=r"DataFrame, row 1, column 'v': expected a number, got 'x'"):
        from_dataframe(df, time="t")
    with pytest.raises(DataError, match=r"expected a pandas DataFrame, got list"):
        from_dataframe([1, 2])


# ----------------------------------------------------------------------------- csv-series


def _lines(n, start=2000, freq="MS"):
    times = pd.date_range(f"{start}-01-01", periods=n, freq=freq)
    return times, [10 + 0.5 * i + (i % 4) for i in range(n)]


def test_csv_series_test_path_and_test_size_give_the_same_split(tmp_path):
    times, v = _lines(60)
    rows = [f"{t:%Y-%m},{x}" for t, x in zip(times, v)]
    (tmp_path / "all.csv").write_text("month,v\n" + "\n".join(rows) + "\n")
    (tmp_path / "train.csv").write_text("month,v\n" + "\n".join(rows[:48]) + "\n")
    (tmp_path / "test.csv").write_text("month,v\n" + "\n".join(rows[48:]) + "\n")
    a = load("csv-series", path=tmp_path / "all.csv", test_size=12, window=4, transform="diff")
    b = load("csv-series", path=tmp_path / "train.csv", test_path=tmp_path / "test.csv", window=4,
             transform="diff")
    assert a.meta["rows"] == b.meta["rows"] and a.meta["rows"]["test"] == 12
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part).x, getattr(b, part).x)
    assert a.meta["times"]["test"][0] == "2004-01" and b.meta["splits_from"]["test"].endswith("test.csv")
    (tmp_path / "late.csv").write_text("month,v\n" + "\n".join(rows[40:]) + "\n")
    with pytest.raises(DataError, match=r"late.csv, row 2, column 'month': expected a time after '2003-12' "
                                        r"\(the last row of .*train.csv\), got '2003-05'"):
        load("csv-series", path=tmp_path / "train.csv", test_path=tmp_path / "late.csv")
    with pytest.raises(DataError, match=r"either test_path or test_size"):
        load("csv-series", path=tmp_path / "train.csv", test_path=tmp_path / "test.csv", test_size=3)
    with pytest.raises(DataError, match=r"val_path needs test_path"):
        load("csv-series", path=tmp_path / "train.csv", val_path=tmp_path / "test.csv")


@pytest.mark.parametrize("cells,kind,period", [
    (["1959Q1", "1959Q2", "1959Q3", "1959Q4", "1960Q1"], "quarter", 4),
    (["1959 Q1", "1959-Q2", "1959q3", "1959Q4", "Q1 1960"], "quarter", 4),
    (["1959-01", "1959-02", "1959-03", "1959-04", "1959-05"], "month", 12),
    (["1959M01", "1959M02", "1959M03", "1959M04", "1959M05"], "month", 12),
    (["1959-01-31", "1959-02-28", "1959-03-31", "1959-04-30", "1959-05-31"], "datetime", 12),
    (["1959-01-01", "1959-04-01", "1959-07-01", "1959-10-01", "1960-01-01"], "datetime", 4),
    (["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"], "datetime", 7),
    (["2024-01-01 00:00", "2024-01-01T01:00:00", "2024-01-01 02:00", "2024-01-01 03:00+00:00",
      "2024-01-01T04:00Z"], "datetime", 24),
    (["1959", "1960", "1961", "1962", "1963"], "year", 1),
    (["0.5", "1", "1.5", "2", "2.5"], "number", None),
])
def test_time_columns_as_people_write_them(tmp_path, cells, kind, period):
    p = tmp_path / "q.csv"
    p.write_text("quarter,gdp\n" + "\n".join(f"{c},{i}" for i, c in enumerate(cells)) + "\n")
    s = load("csv-series", path=p, window=1, val_fraction=0.0, test_fraction=0.0, transform="none")
    assert s.meta["time_column"] == "quarter" and s.meta["time_format"] == kind
    assert s.meta["forecast"].period == (period or 1)


def test_not_a_time_names_file_row_and_column(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("quarter,gdp\n1959Q1,1\n1959Q2,2\n1959Q5,3\n1960Q1,4\n")
    with pytest.raises(DataError, match=r"q.csv, row 4, column 'quarter': expected a time \(.*YYYYQn.*\), "
                                        r"got '1959Q5'"):
        load("csv-series", path=p, window=1, val_fraction=0, test_fraction=0)
    p.write_text("date,v\n2024-01-01,1\n2024-01-02,2\nyesterday,3\n")
    with pytest.raises(DataError, match=r"q.csv, row 4, column 'date': expected a time .*got 'yesterday'"):
        load("csv-series", path=p, window=1, val_fraction=0, test_fraction=0)
    p.write_text("date,v\n2024-01-01,1\n2024-01-03,2\n2024-01-02,3\n")
    with pytest.raises(DataError, match=r"row 4, column 'date': expected a time after '2024-01-03' \(row 3\)"):
        load("csv-series", path=p, window=1, val_fraction=0, test_fraction=0)


def test_sequences_sorted_by_a_date_column(tmp_path):
    (tmp_path / "d.csv").write_text("id,when,v,label\na,2024-01-03,3,x\na,2024-01-01,1,x\na,2024-01-02,2,x\n"
                                    "b,2024Q2,5,y\nb,2024Q1,4,y\n")
    with pytest.raises(DataError, match=r"d.csv, row 5, column 'when': expected a time"):
        load("csv-sequences", path=tmp_path / "d.csv", time_column="when", scale=None)
    (tmp_path / "d.csv").write_text("id,when,v,label\na,2024-01-03,3,x\na,2024-01-01,1,x\na,2024-01-02,2,x\n"
                                    "b,2024-02-02,5,y\nb,2024-02-01,4,y\n")
    s = load("csv-sequences", path=tmp_path / "d.csv", time_column="when", scale=None, val_fraction=0,
             test_fraction=0)
    assert s.train.x[:, :, 0].tolist() == [[1, 2, 3], [4, 5, 0]]


# ----------------------------------------------------------------------------- text sources


def test_text_file_val_and_test_paths(tmp_path):
    (tmp_path / "train.txt").write_text("abcabcabc " * 30)
    (tmp_path / "test.txt").write_text("xyz abc " * 20)
    s = load("text-file", path=tmp_path / "train.txt", test_path=tmp_path / "test.txt", seq_len=10)
    vocab = s.meta["vocab"]
    assert "x" not in vocab and s.meta["chars"]["test"] == 160 and s.meta["chars"]["train"] == 270
    assert s.meta["unknown_chars"]["test"] == 60  # x, y and z only occur in the test file
    assert s.meta["splits_from"]["test"].endswith("test.txt")


def test_imdb_folder_val_and_test_paths(tmp_path):
    shutil.copytree(FIX / "imdb" / "train", tmp_path / "tr")
    shutil.copytree(FIX / "imdb" / "test", tmp_path / "te")
    s = load("imdb-folder", path=tmp_path / "tr", test_path=tmp_path / "te", val_path=tmp_path / "te",
             max_len=20)
    n_test = sum(1 for _ in (tmp_path / "te").rglob("*.txt"))
    assert len(s.test) == len(s.val) == n_test and len(s.train) == sum(1 for _ in (tmp_path / "tr").glob("[pn]*/*.txt"))
    with pytest.raises(DataError, match=r"folder not found \(option 'test_path'\)"):
        load("imdb-folder", path=tmp_path / "tr", test_path=tmp_path / "none")
