"""pandas input to ``fit`` / ``evaluate`` / ``predict``.

A long-format table (one row per id and time step) is not a batch of sequences by itself:
``ll.data.from_dataframe(df, ...)`` makes the splits, and a split goes in as ``x`` (its ``y`` and
``lengths`` with it). A wide numeric DataFrame (one sample per row) is taken by its values, as
Keras does. Anything else is refused with the one-line conversion in the message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import lstmlab as ll
from lstmlab.validation import InputError

LENGTHS = {"a": 5, "b": 3, "c": 6, "d": 2, "e": 4, "f": 6}


def _long_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"id": sid, "t": t, "f1": float(rng.normal()), "f2": float(rng.normal()), "label": 0.0}
            for sid, n in LENGTHS.items() for t in range(n)]
    df = pd.DataFrame(rows)
    df["label"] = df.groupby("id")["f1"].transform("sum")  # one target per sequence
    return df.sample(frac=1.0, random_state=1)  # rows shuffled: the time column orders the steps


def _by_hand(df: pd.DataFrame, ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The padded (N, T, 2) batch, targets and lengths built with pandas alone (the oracle)."""
    t_max = max(LENGTHS.values())
    x = np.zeros((len(ids), t_max, 2), dtype=np.float32)
    y = np.zeros(len(ids), dtype=np.float32)
    for k, sid in enumerate(ids):
        seq = df[df["id"] == sid].sort_values("t")
        x[k, :len(seq)] = seq[["f1", "f2"]].to_numpy()
        y[k] = seq["label"].iloc[0]
    return x, y, np.array([LENGTHS[s] for s in ids])


def _lstm() -> ll.Sequential:
    torch.manual_seed(3)
    model = ll.Sequential([ll.LSTM(4), ll.Dense(1)])
    model(torch.zeros(1, 2, 2))  # built here: the same weights for every call
    model.compile(loss="mse", optimizer="adam", learning_rate=1e-2)
    return model


def test_a_long_dataframe_trains_as_a_split_like_the_arrays_built_by_hand():
    df = _long_frame()
    d = ll.data.from_dataframe(df, id="id", time="t", label="label", kind="regression", scale=None,
                               val_fraction=0.0, test_fraction=0.0)
    x, y, lengths = _by_hand(df, d.meta["ids"]["train"])
    np.testing.assert_allclose(d.train.x, x, rtol=1e-6)
    np.testing.assert_array_equal(d.train.lengths, lengths)

    a, b = _lstm(), _lstm()
    ha = a.fit(d.train, epochs=3, batch_size=2, seed=0, verbose=0, validation_data=d.train)
    hb = b.fit(x, y, epochs=3, batch_size=2, seed=0, verbose=0, lengths=lengths,
               validation_data=(x, y, lengths))
    assert ha.history == hb.history
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert a.evaluate(d.train) == b.evaluate(x, y, lengths=lengths)
    np.testing.assert_array_equal(a.predict(d.train), b.predict(x, lengths=lengths))
    # padding does count when lengths are dropped: the split really carried them
    assert not np.array_equal(a.predict(d.train), a.predict(d.train.x))


def test_a_wide_numeric_dataframe_is_taken_by_its_values_as_keras_does():
    rng = np.random.default_rng(2)
    ids = pd.DataFrame(rng.integers(2, 9, size=(12, 5)), columns=[f"tok{i}" for i in range(5)])
    y = pd.Series(rng.integers(0, 2, size=12), name="label")

    def model() -> ll.Sequential:
        torch.manual_seed(1)
        m = ll.Sequential([ll.Embedding(9, 3), ll.LSTM(4), ll.Dense(2, activation="softmax")])
        m(torch.zeros(1, 5, dtype=torch.long))
        m.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
        return m

    a, b = model(), model()
    a.fit(ids, y, epochs=2, batch_size=4, seed=0, verbose=0)
    b.fit(ids.to_numpy(copy=True), y.to_numpy(copy=True), epochs=2, batch_size=4, seed=0, verbose=0)
    np.testing.assert_array_equal(a.predict(ids), b.predict(ids.to_numpy(copy=True)))
    assert a.evaluate(ids, y) == b.evaluate(ids.to_numpy(copy=True), y.to_numpy(copy=True))


def test_dataframes_an_lstm_cannot_take_are_refused_with_the_conversion():
    df = _long_frame()
    model = _lstm()
    with pytest.raises(InputError, match=r"x: expected numeric columns .* non-numeric column\(s\) \['id'\].*"
                                         r"ll\.data\.from_dataframe\(df, id=\.\.\., time=\.\.\."):
        model.fit(df, df["label"], verbose=0)
    numeric = df.drop(columns="id")
    with pytest.raises(InputError, match=r"x: expected a 3-D tensor .* got shape \(26, 4\) from a DataFrame; "
                                         r"a long-format table .* ll\.data\.from_dataframe"):
        model.predict(numeric)
    with pytest.raises(InputError, match=r"validation_data x: .* from a DataFrame"):
        model.fit(np.zeros((2, 3, 2), np.float32), np.zeros(2, np.float32), verbose=0,
                  validation_data=(numeric, numeric["label"]))


def test_a_split_carries_its_own_targets_and_lengths():
    d = ll.data.from_dataframe(_long_frame(), time="t", kind="regression", val_fraction=0.0, test_fraction=0.0)
    model = _lstm()
    with pytest.raises(InputError, match=r"y: x is a SequenceData split, which carries its own y; "
                                         r"expected y=None, got ndarray"):
        model.fit(d.train, d.train.y, verbose=0)
    with pytest.raises(InputError, match=r"lengths: x is a SequenceData split, .* got ndarray"):
        model.evaluate(d.train, lengths=d.train.lengths)
    with pytest.raises(InputError, match=r"y: expected the targets .* got None; pass y, or a SequenceData split"):
        model.fit(d.train.x, verbose=0)
