"""The cell table (lstmlab.cells) against torch.nn, hand counts and the layers and engines that read it."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import lstmlab as ll
from lstmlab import cells
from lstmlab.engine import StepTaps, fused_module, run
from lstmlab.engine.taps import saturation_counts
from lstmlab.layers import LAYERS, RNNLayer

SPECS = list(cells.CELLS.values())
ENGINES = ["loop", "reference"] + (["fused"] if fused_module() is not None else [])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_gates_and_states_match_torch_nn(spec):
    mod = getattr(nn, spec.torch_name)(3, 5, batch_first=True)
    assert mod.weight_ih_l0.shape == (spec.n_gates * 5, 3)
    _, hx = mod(torch.randn(2, 4, 3))
    assert (len(hx) if isinstance(hx, tuple) else 1) == len(spec.states)
    layer = LAYERS[spec.layer](5, input_size=3, return_state=True)
    assert layer.cell == spec.name and layer.cell_spec is spec
    assert layer.weight_ih.shape == mod.weight_ih_l0.shape and layer.weight_hh.shape == mod.weight_hh_l0.shape
    assert len(layer(torch.randn(2, 4, 3))) == 1 + len(spec.states)  # output, then every state


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_gate_names_follow_weight_row_blocks(spec, engine):
    """Push one row block's bias far out: exactly the gate the table names for it saturates, in every engine."""
    B, T, H = 2, 3, 4
    for k, gate in enumerate(spec.gates):
        kind = spec.gate_kind(gate, "relu" if spec.uses_activation else "tanh")
        bias = torch.zeros(spec.n_gates * H, dtype=torch.float64)
        bias[k * H:(k + 1) * H] = -50.0 if kind == "relu" else 50.0  # relu: dead units
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64)  # noqa: E731
        w = (zeros(spec.n_gates * H, 5), zeros(spec.n_gates * H, H), bias, torch.zeros_like(bias))
        taps = StepTaps()
        h0 = torch.zeros(B, H, dtype=torch.float64)
        run(spec, torch.randn(B, T, 5, dtype=torch.float64), h0, h0.clone() if spec.has_cell_state else None,
            w, activation="relu" if spec.uses_activation else "tanh", engine=engine, taps=taps)
        counts = {g: float(v.sum()) for g, v in taps.finalize().saturated.items()}
        assert counts == {g: (B * T * H if g == gate else 0.0) for g in spec.gates}, (gate, counts)


def test_saturation_counts_use_the_table_thresholds():
    v = torch.tensor([0.005, 0.01, 0.5, 0.99, 0.995]).reshape(1, 1, 5)  # sigmoid: 2 outside (0.01, 0.99)
    t = torch.tensor([-0.995, -0.99, 0.0, 0.99, 0.995]).reshape(1, 1, 5)  # tanh: 2 with |v| > 0.99
    r = torch.tensor([0.0, 0.0, 0.1, 3.0, 0.0]).reshape(1, 1, 5)  # relu: 3 dead
    assert saturation_counts("lstm", {"i": v, "g": t}, None) == {"i": torch.tensor([[2.0]]), "g": torch.tensor([[2.0]])}
    assert saturation_counts("gru", {"z": v, "n": t}, None) == {"z": torch.tensor([[2.0]]), "n": torch.tensor([[2.0]])}
    assert saturation_counts("rnn", {"h": t}, None)["h"].item() == 2.0
    assert saturation_counts("rnn", {"h": r}, None, activation="relu")["h"].item() == 3.0
    assert cells.saturation_thresholds() == (0.01, 0.99, 0.99)
    assert cells.SATURATION_RULES["sigmoid"] == "outside (0.01, 0.99)"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_layers_accept_what_the_table_allows(spec):
    cls = LAYERS[spec.layer]
    assert issubclass(cls, RNNLayer) and cells.BY_LAYER[cls.__name__] is spec
    for act in ("tanh", "relu", "sigmoid"):
        if act in spec.activations:
            assert cls(3, activation=act).activation == act
        else:
            with pytest.raises(ValueError, match=re.escape(f"activation: expected one of {spec.activations}, got")):
                cls(3, activation=act)
    if spec.chrono:
        layer = cls(4, bias_initializer="chrono", chrono_max_len=20, input_size=2)
        f, i = layer.gate_blocks()["f"], layer.gate_blocks()["i"]
        assert torch.equal(layer.bias_ih[i], -layer.bias_ih[f]) and bool((layer.bias_ih[f] > 0).all())
        assert "unit_forget_bias" in layer.get_config()
    else:
        with pytest.raises(ValueError, match="chrono' applies to LSTM only"):
            cls(3, bias_initializer="chrono")
        with pytest.raises(ValueError, match=f"chrono_max_len: not an argument of {spec.layer}"):
            cls(3, bias_initializer="chrono", chrono_max_len=10)
        with pytest.raises(ValueError, match=f"unit_forget_bias: not an argument of {spec.layer}"):
            cls(3, unit_forget_bias=True)
        assert "unit_forget_bias" not in cls(3).get_config()
    if not spec.layer_norm:
        with pytest.raises(ValueError, match="layer_norm"):
            cls(3, layer_norm=True)


def test_lookup_by_any_name_and_bad_name():
    assert cells.get("lstm") is cells.get("LSTM") is cells.get(cells.LSTM) is cells.LSTM
    assert cells.get("SimpleRNN") is cells.get("RNN") is cells.RNN
    assert cells.LSTM.value_gates == ("i", "f", "g", "o") and cells.RNN.value_gates == ()
    assert cells.supporting("layer_norm") == ("LSTM",)
    with pytest.raises(ValueError, match=r"cell: expected one of \['gru', 'lstm', 'rnn'\], got 'bogus'"):
        cells.get("bogus")
    assert ll.cells is cells
