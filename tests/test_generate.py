"""``lstmlab generate``: stateful stepping (prime once, then one character per step) against the
windowed re-run over the whole history, which it must reproduce exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab import generate as G
from lstmlab.data import Vocab

TEXT = "the quick brown fox jumps over the lazy dog.\n"


def _vocab() -> Vocab:
    return Vocab(sorted(set(TEXT)), char_level=True)


def _model(kind: str, vocab: Vocab) -> ll.Sequential:
    torch.manual_seed(7)
    v = len(vocab)
    layers = {
        "lstm2": [ll.Embedding(v, 5), ll.LSTM(8, return_sequences=True), ll.Dropout(0.3),
                  ll.LSTM(6, return_sequences=True), ll.Dense(v, activation="softmax")],
        "gru_last": [ll.Embedding(v, 5), ll.GRU(7), ll.Dense(v, activation="softmax")],
        "backwards": [ll.Embedding(v, 5), ll.LSTM(6, return_sequences=True, go_backwards=True),
                      ll.Dense(v, activation="softmax")],
        "bidirectional": [ll.Embedding(v, 5), ll.Bidirectional(ll.LSTM(4, return_sequences=True)),
                          ll.Dense(v, activation="softmax")],
    }[kind]
    model = ll.Sequential(layers)
    model(torch.zeros(1, 3, dtype=torch.long))  # build
    with torch.no_grad():  # a peaked, input-dependent distribution: a wrong state shows in the text
        for p in model.parameters():
            p.mul_(3.0)
    return model


@pytest.mark.parametrize("kind", ["lstm2", "gru_last"])
@pytest.mark.parametrize("prime", ["the ", ""])
def test_stateful_stepping_gives_the_windowed_text(kind, prime):
    vocab = _vocab()
    model = _model(kind, vocab)
    assert G.steppable(model)
    windowed = G.sample(model, vocab, prime, 80, temperature=1.0, seed=5, stateful=False)
    stepped = G.sample(model, vocab, prime, 80, temperature=1.0, seed=5)
    assert stepped == windowed and len(stepped) == 80
    # a state that was not carried (a fresh zero state for each character) gives other text
    fresh = G.sample(model, vocab, prime, 80, temperature=1.0, seed=5, stateful=False, context=1)
    assert fresh != stepped
    # the model is as before: not stateful, no states left behind
    assert all(not layer.stateful and layer._states is None for layer in model.recurrent_layers())


def test_the_probabilities_agree_step_by_step():
    vocab = _vocab()
    model = _model("lstm2", vocab).eval()
    ids = list(vocab.encode(TEXT))
    with torch.no_grad():
        whole = model(torch.tensor([ids]))[0].double().numpy()  # (T, V): after each prefix
        with G._carried_states(model):
            stepped = [G._last_probs(model, ids[:4])] + [G._last_probs(model, [i]) for i in ids[4:]]
    np.testing.assert_allclose(np.stack(stepped), whole[3:], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("kind", ["backwards", "bidirectional"])
def test_models_that_need_the_whole_window_are_run_windowed(kind):
    vocab = _vocab()
    model = _model(kind, vocab)
    assert not G.steppable(model)
    assert G.sample(model, vocab, "the ", 30, seed=1) == G.sample(model, vocab, "the ", 30, seed=1, stateful=False)
    with pytest.raises(G.GenerateError, match="stateful generation needs forward recurrent layers"):
        G.sample(model, vocab, "the ", 5, stateful=True)


def test_a_stateful_layer_keeps_its_own_states_across_a_sample():
    vocab = _vocab()
    model = _model("gru_last", vocab)
    layer = model.recurrent_layers()[0]
    layer.stateful = True
    model(torch.tensor([list(vocab.encode("the"))]))
    before = layer._states[0].clone()
    G.sample(model, vocab, "fox", 10, seed=0)
    assert layer.stateful and torch.equal(layer._states[0], before)


def test_the_cli_steps_by_default_and_windows_on_request(tmp_path, capsys):
    """``lstmlab generate`` on a saved model: with a training window longer than the whole history
    the stepped and the ``--windowed`` text agree; with a 3-character window they differ."""
    import json

    vocab = _vocab()
    model = _model("lstm2", vocab)
    model.save(tmp_path / "m.lstmlab")

    def text(seq_len: int, *extra: str) -> str:
        (tmp_path / "vocab.json").write_text(json.dumps({"tokens": list(vocab), "char_level": True,
                                                         "seq_len": seq_len}))
        argv = [str(tmp_path / "m.lstmlab"), "--prime", "the ", "--length", "40", "--seed", "2", *extra]
        assert G.main(argv) == 0
        return capsys.readouterr().out.rstrip("\n")

    stepped = text(100)
    assert stepped.startswith("the ") and len(stepped) == 44
    assert text(100, "--windowed") == stepped
    assert text(3) == stepped  # stepping ignores the window
    assert text(3, "--windowed") != stepped
