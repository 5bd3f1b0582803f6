"""Bad files raise DataError naming the file, row (editor line) and column."""

from pathlib import Path

import pytest

from lstmlab.data import DataError, load

FIX = Path(__file__).parent / "fixtures"
BAD = FIX / "bad"


def _err(source, **opts) -> DataError:
    with pytest.raises(DataError) as info:
        load(source, **opts)
    assert isinstance(info.value, ValueError)
    return info.value


def test_non_numeric_cell():
    e = _err("csv-series", path=BAD / "non_numeric.csv", window=3)
    assert str(e).endswith("non_numeric.csv, row 17, column 'value': expected a number, got 'abc'")
    assert (e.row, e.column, e.got) == (17, "value", "abc")


def test_ragged_row():
    e = _err("csv-series", path=BAD / "ragged.csv", window=2)
    assert "ragged.csv, row 6: expected 3 fields, got 2" in str(e)


@pytest.mark.parametrize("name,row,got", [("nan.csv", 8, "nan"), ("inf.csv", 11, "inf")])
def test_nan_and_inf_cells(name, row, got):
    e = _err("csv-series", path=BAD / name, window=2)
    assert f"{name}, row {row}, column 'value': expected a" in str(e) and repr(got) in str(e)


def test_inf_is_an_error_even_when_interpolating():
    e = _err("csv-series", path=BAD / "inf.csv", window=2, missing="interpolate")
    assert "row 11" in str(e) and "finite" in str(e)


def test_empty_and_header_only_files():
    assert "empty.csv: the file is empty" in str(_err("csv-series", path=BAD / "empty.csv"))
    assert "header_only.csv, row 1: no data rows" in str(_err("csv-text", path=BAD / "header_only.csv"))


def test_missing_file_and_directory(tmp_path):
    e = _err("csv-series", path=tmp_path / "nope.csv")
    assert "nope.csv: CSV file not found" in str(e)
    assert "is a directory" in str(_err("csv-text", path=tmp_path))
    assert "not found" in str(_err("text-file", path=tmp_path / "none.txt"))
    assert "folder not found" in str(_err("imdb-folder", path=tmp_path / "none"))


def test_missing_column_suggests_closest():
    e = _err("csv-series", path=BAD / "missing_column.csv", target="value")
    assert "missing_column.csv, row 1: no column 'value'" in str(e) and "did you mean 'valeu'" in str(e)
    e = _err("csv-text", path=FIX / "texts.csv", label_column="lable")
    assert "did you mean 'label'" in str(e)
    e = _err("csv-sequences", path=FIX / "sequences.csv", id_column="ID")
    assert "did you mean 'id'" in str(e)


def test_label_not_constant_within_id():
    e = _err("csv-sequences", path=BAD / "label_not_constant.csv")
    s = str(e)
    assert "label_not_constant.csv, row 5, column 'label'" in s
    assert "sequence 'b'" in s and "'yes'" in s and "'no' on row 4" in s


def test_time_not_increasing():
    e = _err("csv-series", path=BAD / "not_sorted.csv", window=1, val_fraction=0, test_fraction=0)
    assert "not_sorted.csv, row 5, column 'year': expected a time after '2004' (row 4), got '2003'" in str(e)


def test_undecodable_file(tmp_path):
    (tmp_path / "latin.csv").write_bytes(b"t,v\n1,2\n2,caf\xe9\n")
    e = _err("csv-series", path=tmp_path / "latin.csv")
    assert "latin.csv, row 3" in str(e) and "encoding" in str(e)


def test_empty_label_and_text_file(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhello,a\nworld,\n")
    e = _err("csv-text", path=tmp_path / "t.csv")
    assert "t.csv, row 3, column 'label': expected a label, got ''" in str(e)
    (tmp_path / "e.txt").write_text("  \n")
    assert "e.txt: the file is empty" in str(_err("text-file", path=tmp_path / "e.txt"))
    (tmp_path / "short.txt").write_text("abc")
    assert "seq_len" in str(_err("text-file", path=tmp_path / "short.txt", seq_len=10))


def test_bad_options():
    assert "expected a fraction" in str(_err("airline", test_fraction=1.5))
    assert "below 1" in str(_err("airline", val_fraction=0.6, test_fraction=0.5))
    assert "window" in str(_err("airline", window=0))
    assert "fewer than window + horizon" in str(_err("airline", window=120))
    assert "did you mean 'minmax'" in str(_err("airline", scale="minmx"))
    assert "did you mean 'interpolate'" in str(_err("co2", missing="interpolat"))
    assert "did you mean 'drop'" in str(_err("csv-text", path=FIX / "texts.csv", unseen_labels="dorp"))
