"""The SOURCES registry, load() dispatch, option validation, containers."""

import json

import numpy as np
import pytest

from lstmlab.data import REQUIRED, SOURCES, DataError, DataSplits, SequenceData, check_options, describe, load

EXPECTED = {"adding", "copy", "temporal-order", "airline", "sunspots", "co2", "japanese-vowels", "digits",
            "fortunes", "wordnet", "csv-series", "csv-sequences", "csv-text", "text-file", "imdb-folder",
            "ts-file"}


def test_every_source_is_registered_with_options():
    assert set(SOURCES) == EXPECTED
    for s in SOURCES.values():
        assert s.summary and s.doc
        assert isinstance(s.options, dict)
    assert SOURCES["csv-series"].options["path"] is REQUIRED
    assert SOURCES["csv-series"].required == ["path"]
    assert SOURCES["adding"].options["length"] == 100
    assert "window" in describe("airline")


def test_unknown_source_and_option_suggest_closest():
    with pytest.raises(DataError, match=r"unknown data source 'aidding'.*did you mean 'adding'"):
        load("aidding")
    with pytest.raises(DataError, match=r"unknown option 'widnow'.*did you mean 'window'"):
        load("airline", widnow=3)
    with pytest.raises(DataError, match=r"needs option 'path'"):
        load("csv-text")
    assert check_options("temporal_order", {"classes": 8}).name == "temporal-order"


def test_aliases_and_meta_records_request():
    s = load("Adding_Problem", length=10, n_train=4, n_val=1, n_test=1)
    assert s.meta["loader"] == "adding" and s.meta["options"]["length"] == 10


@pytest.mark.parametrize("name", ["adding", "copy", "temporal-order", "airline", "digits", "japanese-vowels"])
def test_meta_contract(name):
    opts = {"n_train": 16, "n_val": 4, "n_test": 4} if SOURCES[name].group == "task" else {}
    s = load(name, **opts)
    m = s.meta
    for key in ("kind", "n_classes", "class_names", "n_features", "vocab", "scaler", "baseline", "source"):
        assert key in m, key
    assert m["kind"] in ("regression", "classification", "language_model")
    assert m["target"] in ("sequence", "per_step")
    for part in s:
        assert isinstance(part, SequenceData)
        if part.x.dtype.kind == "f":
            assert part.x.dtype == np.float32 and part.x.shape[2] == m["n_features"]
        if m["kind"] == "classification":
            assert part.y.dtype == np.int64
            assert len(part) == 0 or part.y.max() < m["n_classes"]
        else:
            assert part.y.dtype == np.float32
    json.dumps({k: v for k, v in m.items() if k not in ("scaler", "feature_scaler")}, default=str)


def test_text_meta_vocab_is_json_list():
    from pathlib import Path

    s = load("csv-text", path=Path(__file__).parent / "fixtures" / "texts.csv")
    assert json.loads(json.dumps(s.meta["vocab"]))[:2] == ["<pad>", "<unk>"]


def test_sequence_data_helpers():
    d = SequenceData(np.zeros((3, 4, 2), np.float32), np.arange(3), np.array([4, 2, 1]))
    assert d.mask.sum() == 7 and len(d) == 3 and d.seq_len == 4
    sub = d.subset([0, 2])
    assert len(sub) == 2 and list(sub.lengths) == [4, 1]
    x, y, lengths = d.to_tensors()
    assert tuple(x.shape) == (3, 4, 2) and lengths.tolist() == [4, 2, 1]
    with pytest.raises(ValueError):
        SequenceData(np.zeros((3, 4)), np.zeros(2))
    splits = DataSplits(d, d.subset(slice(0, 0)), d, {"kind": "classification"})
    assert "train: x (3, 4, 2)" in splits.summary()


@pytest.mark.parametrize("name,opts", [("airline", {}), ("japanese-vowels", {}),
                                       ("text-file", {"path": "tests/fixtures/tiny.txt", "seq_len": 16})])
def test_meta_dict_is_json(name, opts):
    from pathlib import Path

    if "path" in opts:
        opts = {**opts, "path": Path(__file__).parent / "fixtures" / "tiny.txt"}
    s = load(name, **opts)
    d = json.loads(json.dumps(s.meta_dict()))
    if d.get("scaler"):
        assert d["scaler"]["method"] == "standard"
    if name == "text-file":
        assert d["vocab"]["char_level"] is True and d["vocab"]["tokens"][:2] == ["<pad>", "<unk>"]


def test_bad_seed():
    with pytest.raises(DataError, match="seed"):
        load("digits", seed="x")
    with pytest.raises(DataError, match="seed"):
        load("adding", seed=-1)
