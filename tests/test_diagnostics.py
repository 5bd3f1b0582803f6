"""diagnose(): per-step gradient norms against an independent step-by-step torch.autograd unroll,
and the report's contract (state restored, JSON, plots, verdicts, non-finite location)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lstmlab as ll
from lstmlab.diagnostics import GradientReport, detectors, diagnose
from lstmlab.engine import fused_module

ENGINES = ["loop", "reference", pytest.param("fused", marks=pytest.mark.skipif(
    fused_module() is None, reason="the fused engine cannot be built here (no C++ compiler)"))]
CELLS = {"lstm": ll.LSTM, "gru": ll.GRU, "rnn": ll.SimpleRNN}


# ------------------------------------------------------------------------------------------------
# independent unroll: the seed's equations, one step at a time, retain_grad on every h_t / c_t
# ------------------------------------------------------------------------------------------------
def unroll(layer, x, lengths=None):
    """Run one recurrent layer step by step.  Returns (outputs (B,T,H) in original time order,
    final state, {t: h_t}, {t: c_t}) with h_t / c_t indexed by original time position."""
    w_ih, w_hh, b_ih, b_hh = layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh
    batch, steps, _ = x.shape
    units = layer.units
    h = x.new_zeros(batch, units)
    c = x.new_zeros(batch, units)
    hs, cs, outs = {}, {}, {}
    if lengths is None:
        lengths = torch.full((batch,), steps, dtype=torch.long)
    for k in range(steps):
        # position of the k-th processed step of each example (backwards: reversed within its length)
        pos = (lengths - 1 - k).clamp_min(0) if layer.go_backwards else torch.full((batch,), k)
        valid = (torch.tensor(k) < lengths).to(x.dtype).unsqueeze(1)
        xt = x[torch.arange(batch), pos]
        if layer.cell == "lstm":
            z = xt @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            i, f, g, o = z.chunk(4, 1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            c = valid * c_new + (1 - valid) * c
            h_new = torch.sigmoid(o) * torch.tanh(c)
        elif layer.cell == "gru":
            xr, xz, xn = (xt @ w_ih.T + b_ih).chunk(3, 1)
            hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, 1)
            r, zg = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h_new = (1 - zg) * n + zg * h
        else:
            pre = xt @ w_ih.T + b_ih + h @ w_hh.T + b_hh
            h_new = torch.tanh(pre) if layer.activation == "tanh" else torch.relu(pre)
        h = valid * h_new + (1 - valid) * h
        h.retain_grad()
        if layer.cell == "lstm":
            c.retain_grad()
        if layer.go_backwards:
            assert lengths.eq(steps).all(), "the test unroll maps backward positions for full lengths only"
            t = steps - 1 - k
        else:
            t = k
        hs[t], cs[t] = h, c
        outs[t] = h * valid
    out = torch.stack([outs[t] for t in range(steps)], 1)
    return out, h, hs, (cs if layer.cell == "lstm" else None)


def unroll_model(model, x, lengths=None):
    """The whole Sequential, step by step.  Returns (output, {direction name: (hs, cs)})."""
    states = {}
    for layer in model.layers:
        if isinstance(layer, ll.Bidirectional):
            parts = []
            for tag, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer)):
                out, h_n, hs, cs = unroll(sub, x, lengths)
                states[f"{layer.name}/{tag}"] = (hs, cs)
                parts.append(out if layer.return_sequences else h_n)
            x = torch.cat(parts, -1)
        elif isinstance(layer, ll.layers.RNNLayer):
            out, h_n, hs, cs = unroll(layer, x, lengths)
            states[f"{layer.name}/{'backward' if layer.go_backwards else 'forward'}"] = (hs, cs)
            x = out if layer.return_sequences else h_n
        else:
            assert isinstance(layer, ll.Dense) and layer.activation is None
            x = F.linear(x, layer.weight, layer.bias)
    return x, states


def grad_norms(tensors: dict) -> np.ndarray:
    steps = len(tensors)
    return np.array([0.0 if tensors[t].grad is None else float(tensors[t].grad.pow(2).sum().sqrt())
                     for t in range(steps)])


def reference_profiles(model, x, y, end=None, lengths=None):
    """||dL/dh_t||, ||dL/dc_t|| from the unroll.  ``end``: None (full mse loss), "last" or
    "first" (the loss of that single step of a per-step output)."""
    out, states = unroll_model(model, x, lengths)
    if end is None:
        loss = (out - y).pow(2).mean()
    else:
        t = out.shape[1] - 1 if end == "last" else 0
        loss = (out[:, t] - y[:, t]).pow(2).mean(-1).mean()
    loss.backward()
    return {name: (grad_norms(hs), None if cs is None else grad_norms(cs))
            for name, (hs, cs) in states.items()}


def assert_close(actual, expected, what):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, what
    rel = np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300)
    ok = (rel <= 1e-4) | (np.abs(actual - expected) <= 1e-30)
    assert np.all(ok), f"{what}: max rel err {rel.max():.2e}"


def make_model(kind: str, cell: str, engine: str, seed: int = 0):
    layer = CELLS[cell]
    kw = {"engine": engine}
    if kind == "stacked":       # two layers, the loss reads the last state only (2-D output)
        layers = [layer(6, return_sequences=True, seed=seed, **kw), layer(5, seed=seed + 1, **kw),
                  ll.Dense(2)]
    elif kind == "bidirectional":  # per-step output: the loss reads every step (3-D output)
        layers = [ll.Bidirectional(layer(5, return_sequences=True, seed=seed, **kw)), ll.Dense(2)]
    else:                       # stacked under a bidirectional top reading the ends (2-D output)
        layers = [layer(4, return_sequences=True, seed=seed, **kw),
                  ll.Bidirectional(layer(3, seed=seed + 2, **kw)), ll.Dense(2)]
    model = ll.Sequential(layers)
    model.compile(loss="mse")
    return model


def data(kind: str, batch: int = 3, steps: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 3, generator=g, dtype=torch.float64)
    y = torch.randn(batch, steps, 2, generator=g, dtype=torch.float64) if kind == "bidirectional" \
        else torch.randn(batch, 2, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("kind", ["stacked", "bidirectional", "stacked_bidirectional"])
def test_per_step_matches_independent_unroll(kind, cell, engine):
    x, y = data(kind)
    model = make_model(kind, cell, engine)
    model.build(x)
    model.to(torch.float64)
    report = diagnose(model, x, y)
    ref = reference_profiles(model, x, y)
    names = list(ref)
    assert list(report.per_step) == names
    expected_dirs = {"stacked": 2, "bidirectional": 2, "stacked_bidirectional": 3}[kind]
    assert len(names) == expected_dirs
    for name in names:
        dh, dc = ref[name]
        assert_close(report.per_step[name]["dL_dh"], dh, f"{name} dL_dh")
        if cell == "lstm":
            assert_close(report.per_step[name]["dL_dc"], dc, f"{name} dL_dc")
        else:
            assert report.per_step[name]["dL_dc"] is None
    if kind == "bidirectional":  # per-step loss: the long-range profile of the end step alone
        model.zero_grad()
        for name, end in ((names[0], "last"), (names[1], "first")):
            dh, dc = reference_profiles(model, x, y, end=end)[name]
            assert report.decay[name]["profile"] == "last_step"
            assert_close(report.last_step[name]["dL_dh"], dh, f"{name} end-step dL_dh")
            if cell == "lstm":
                assert_close(report.last_step[name]["dL_dc"], dc, f"{name} end-step dL_dc")
    else:
        assert report.last_step == {}
        assert all(d["profile"] == "all_steps" for d in report.decay.values())


@pytest.mark.parametrize("engine", ["loop", "reference"])
def test_per_step_with_lengths(engine):
    x, y = data("stacked", batch=4, steps=6)
    lengths = torch.tensor([6, 3, 1, 5])
    model = ll.Sequential([ll.LSTM(5, seed=3, engine=engine), ll.Dense(2)])
    model.compile(loss="mse")
    model.build(x)
    model.to(torch.float64)
    report = diagnose(model, x, y, lengths=lengths)
    dh, dc = reference_profiles(model, x, y, lengths=lengths)["lstm/forward"]
    assert_close(report.per_step["lstm/forward"]["dL_dh"], dh, "dL_dh")
    assert_close(report.per_step["lstm/forward"]["dL_dc"], dc, "dL_dc")


def test_float32_fused_or_auto_matches_loop():
    x, y = (t.float() for t in data("stacked", batch=5, steps=12))
    a = make_model("stacked", "lstm", "loop")
    b = make_model("stacked", "lstm", "auto")
    a.build(x)
    b.build(x)
    b.load_state_dict(a.state_dict())
    ra, rb = diagnose(a, x, y), diagnose(b, x, y)
    for name in ra.per_step:
        np.testing.assert_allclose(rb.per_step[name]["dL_dh"], ra.per_step[name]["dL_dh"], rtol=1e-4)
    assert ra.verdict == rb.verdict


# ------------------------------------------------------------------------------------------------
# derived numbers
# ------------------------------------------------------------------------------------------------
def test_decay_and_saturation_from_profile():
    x, y = data("stacked", batch=4, steps=9)
    model = make_model("stacked", "lstm", "loop")
    report = diagnose(model, x.float(), y.float())
    for name, d in report.decay.items():
        prof = report.per_step[name]["dL_dh"]
        assert d["log10_ratio"] == pytest.approx(math.log10(prof[0] / prof[-1]))
        slope = np.polyfit(np.arange(len(prof)), np.log10(prof), 1)[0]
        assert d["rate"] == pytest.approx(-slope)
        for gate in ("i", "f", "g", "o"):
            assert 0.0 <= report.per_gate[name][gate] <= 1.0
            assert report.per_gate_step[name][gate].shape == (9,)
        blocks = report.param_norms[name]
        assert {"W_i", "W_f", "W_c", "W_o", "weight_ih", "weight_hh", "bias", "total"} <= set(blocks)
        layer = next(r for r in model.recurrent_layers() if name.startswith(r.name + "/"))
        rows = layer.gate_blocks()["f"]
        expect = torch.cat([layer.weight_ih[rows], layer.weight_hh[rows]], 1).norm().item()
        assert blocks["W_f"] == pytest.approx(expect, rel=1e-5)
        assert set(report.grad_norms[name]) >= {"W_i", "W_f", "W_c", "W_o"}
    assert report.param_norms["model"]["total"] > 0 and report.grad_norms["model"]["total"] > 0


def test_saturation_counts_fraction_of_units():
    model = ll.Sequential([ll.SimpleRNN(4, seed=0, engine="loop"), ll.Dense(1)])
    model.compile(loss="mse")
    x = torch.full((2, 5, 1), 100.0)   # huge inputs: every tanh unit saturated
    model.build(x)
    with torch.no_grad():
        model.layers[0].weight_ih.fill_(1.0)
    report = diagnose(model, x, torch.zeros(2, 1))
    assert report.per_gate["simplernn/forward"]["h"] == pytest.approx(1.0)
    assert any("saturated" in r for r in report.reasons)


def test_backward_direction_decay_uses_processing_order():
    # a backwards layer processes position T-1 first: its gradient decays towards position T-1
    x, y = data("stacked", batch=3, steps=30)
    model = ll.Sequential([ll.SimpleRNN(8, go_backwards=True, seed=0, engine="loop"), ll.Dense(2)])
    model.compile(loss="mse")
    report = diagnose(model, x.float(), y.float())
    name = "simplernn/backward"
    prof = report.per_step[name]["dL_dh"]
    assert prof[0] > prof[-1]   # the read-out state is the one at position 0
    assert report.decay[name]["log10_ratio"] == pytest.approx(math.log10(prof[-1] / prof[0]))


# ------------------------------------------------------------------------------------------------
# nothing is updated
# ------------------------------------------------------------------------------------------------
def test_diagnose_restores_everything():
    x, y = data("stacked", batch=4)
    model = ll.Sequential([ll.LSTM(6, return_sequences=True, dropout=0.5, recurrent_dropout=0.3, seed=0),
                           ll.LSTM(5, seed=1, engine="native"), ll.Dense(2)])
    model.compile(loss="mse", optimizer="adam")
    x, y = x.float(), y.float()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = json.dumps(model.optimizer.state_dict()["param_groups"])
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.train()
    r1 = diagnose(model, x, y)
    r2 = diagnose(model, x, y)
    assert model.training
    assert [r.record_taps for r in model.recurrent_layers()] == [False, False]
    assert model.layers[1].engine == "native"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for p, g in zip(model.parameters(), grads, strict=True):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert json.dumps(model.optimizer.state_dict()["param_groups"]) == opt_before
    # eval mode: dropout off, so two reports agree exactly
    np.testing.assert_array_equal(r1.per_step["lstm/forward"]["dL_dh"], r2.per_step["lstm/forward"]["dL_dh"])


def test_stateful_states_restored():
    x, y = data("stacked", batch=2)
    model = ll.Sequential([ll.LSTM(4, stateful=True, seed=0), ll.Dense(2)])
    model.compile(loss="mse")
    model(x.float())
    st = [s.clone() for s in model.layers[0]._states]
    diagnose(model, x.float(), y.float())
    assert all(torch.equal(a, b) for a, b in zip(model.layers[0]._states, st, strict=True))


def test_loss_options_and_batch_size():
    x, y = data("stacked", batch=6)
    x, y = x.float(), y.float()
    model = ll.Sequential([ll.GRU(4, seed=0), ll.Dense(2)])
    with pytest.raises(ValueError, match="not compiled"):
        diagnose(model, x, y)
    r_name = diagnose(model, x, y, loss="mse")
    r_call = diagnose(model, x, y, loss=lambda out, t: (out - t).pow(2).mean())
    name = "gru/forward"
    np.testing.assert_allclose(r_call.per_step[name]["dL_dh"], r_name.per_step[name]["dL_dh"], rtol=1e-5)
    assert r_name.loss == pytest.approx(r_call.loss)
    r_small = diagnose(model, x, y, loss="mse", batch_size=2)
    r_ref = diagnose(model, x[:2], y[:2], loss="mse")
    np.testing.assert_allclose(r_small.per_step[name]["dL_dh"], r_ref.per_step[name]["dL_dh"])
    with pytest.raises(ValueError, match="expected targets"):
        diagnose(model, x, None, loss="mse")
    with pytest.raises(ValueError, match="no recurrent layer"):
        diagnose(ll.Sequential([ll.Dense(2)]), x, y, loss="mse")


def test_callable_loss_per_step_output_gets_end_profile():
    x, y = data("bidirectional")
    model = make_model("bidirectional", "lstm", "loop")
    r = diagnose(model, x.float(), y.float(), loss=lambda out, t: (out - t).pow(2).mean())
    assert set(r.last_step) == {"bidirectional/forward", "bidirectional/backward"}


def test_classification_logits_mode():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, 3, generator=g)
    y = torch.randint(0, 4, (5,), generator=g)
    model = ll.Sequential([ll.LSTM(5, seed=0), ll.Dense(4, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    r = diagnose(model, x, y)
    assert r.loss == pytest.approx(model.evaluate(x, y), rel=1e-5)


# ------------------------------------------------------------------------------------------------
# verdicts, non-finite location, output formats
# ------------------------------------------------------------------------------------------------
def test_verdicts_vanishing_exploding_healthy():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 150, 2, generator=g)
    y = torch.rand(16, 1, generator=g)
    rnn = ll.Sequential([ll.SimpleRNN(16, seed=0), ll.Dense(1, seed=0)])
    rnn.compile(loss="mse")
    r = diagnose(rnn, x, y)
    assert r.verdict == "vanishing"
    assert r.remedies[0] == "replace SimpleRNN with LSTM or GRU"
    assert any("IRNN" in s for s in r.remedies)
    lstm = ll.Sequential([ll.LSTM(16, seed=0), ll.Dense(1, seed=0)])
    lstm.compile(loss="mse")
    r = diagnose(lstm, x[:, :20], y)
    assert r.verdict == "healthy" and r.remedies == []
    lstm.build(x)
    with torch.no_grad():
        lstm.layers[0].weight_hh.mul_(16.0)
    r = diagnose(lstm, x[:, :60], y)
    assert r.verdict == "exploding"
    assert r.remedies[0] == "compile(clipnorm=1.0)"
    lstm.compile(loss="mse", clipnorm=1.0)
    first = diagnose(lstm, x[:, :60], y).remedies[0]
    assert first.startswith("compile(optimizer=ll.Adam(learning_rate=1e-4))")


def test_nonfinite_location_forward_and_params():
    model = ll.Sequential([ll.SimpleRNN(3, activation="relu", recurrent_initializer="identity", seed=0,
                                        engine="loop", return_sequences=True),
                           ll.LSTM(2, seed=1), ll.Dense(1)])
    model.compile(loss="mse")
    x = torch.ones(2, 8, 1)
    model.build(x)
    with torch.no_grad():
        model.layers[0].weight_hh.mul_(1e25)
        model.layers[0].weight_ih.fill_(1.0)
    r = diagnose(model, x, torch.zeros(2, 1))
    assert r.verdict == "exploding"
    assert r.nonfinite == {"layer": "simplernn/forward", "step": 2, "tensor": "output"}
    json.dumps(r.to_dict(), allow_nan=False)
    with torch.no_grad():
        model.layers[2].weight[0, 0] = float("nan")
    r = diagnose(model, x, torch.zeros(2, 1))
    assert r.nonfinite == {"layer": "dense", "step": None, "tensor": "weight"}


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("inf")


def test_nonfinite_location_in_backward_taps():
    model = ll.Sequential([ll.SimpleRNN(3, seed=0, engine="loop"), ll.Dense(1)])
    x = torch.ones(2, 6, 1)
    model.build(x)
    r = diagnose(model, x, torch.zeros(2, 1), loss=lambda out, t: _InfGrad.apply(out).pow(2).mean() + 1.0)
    assert math.isfinite(r.loss)
    assert r.verdict == "exploding"
    assert r.nonfinite == {"layer": "simplernn/forward", "step": 5, "tensor": "dL/dh"}


def test_report_outputs(tmp_path):
    x, y = data("bidirectional")
    model = make_model("bidirectional", "lstm", "loop")
    r = diagnose(model, x.float(), y.float())
    assert isinstance(r, GradientReport) and r.verdict in detectors.VERDICTS
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["verdict"] == r.verdict and len(d["per_step"]["bidirectional/forward"]["dL_dh"]) == 7
    s = r.summary()
    assert {"step", "verdict", "decay", "grad_norm", "param_norm", "loss"} <= set(s)
    assert all(v is None or isinstance(v, (int, float, str)) for v in s.values())
    text = r.table()
    assert "bidirectional/backward" in text and "W_f" in text
    assert "verdict" in r.explain() and "0.001" in r.explain()
    for name in ("g.png", "g.svg"):
        r.plot(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="png"):
        r.plot(tmp_path / "g.txt")


def test_detectors_units():
    t = np.arange(50)
    st = detectors.decay_stats(10.0 ** (-0.1 * (49 - t)))  # falls 10x every 10 steps going back
    assert st["log10_ratio"] == pytest.approx(-4.9)
    assert st["rate"] == pytest.approx(-0.1)
    assert st["horizon"] == pytest.approx(10.0)
    assert detectors.direction_verdict(st) == "vanishing"
    back = detectors.decay_stats(10.0 ** (-0.1 * t), reverse=True)
    assert back["log10_ratio"] == pytest.approx(-4.9)
    assert detectors.direction_verdict(detectors.decay_stats(np.array([1e4, 1.0]))) == "exploding"
    assert detectors.direction_verdict(detectors.decay_stats(np.array([np.nan, 1.0]))) == "exploding"
    assert detectors.direction_verdict(detectors.decay_stats(np.array([1e-2, 1.0]))) == "healthy"
    assert detectors.overall_verdict(["healthy", "vanishing"]) == "vanishing"
    assert detectors.overall_verdict(["vanishing", "exploding"]) == "exploding"
    assert detectors.slow_loss([1.0] * 100) == (True, 0.0)
    assert not detectors.slow_loss([1.0] * 50 + [0.5] * 50)[0]
    assert not detectors.slow_loss([1.0] * 10)[0]
    assert detectors.param_growth([1.0 * 1.1 ** k for k in range(10)])[0]
    assert not detectors.param_growth([1.0 + 0.01 * k for k in range(10)])[0]
