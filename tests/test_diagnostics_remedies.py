"""Every remedy the diagnostics suggest is a real argument that does what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lstmlab as ll
from lstmlab.diagnostics import diagnose, remedies


def adding(steps: int, n: int = 32, seed: int = 0):
    from lstmlab.data import adding_problem

    part = adding_problem(length=steps, n_train=n, n_val=0, n_test=0, seed=seed).train
    return torch.as_tensor(part.x), torch.as_tensor(part.y)


def big_grads(**compile_kw) -> ll.Sequential:
    x, y = adding(20)
    model = ll.Sequential([ll.LSTM(8, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse", optimizer="sgd", **compile_kw)
    model.build(x)
    model.zero_grad()
    model.compute_loss(x, y * 1000).backward()
    return model


def test_clipnorm_clipvalue_global_clipnorm():
    m = big_grads(clipnorm=1.0)
    assert m.clip_gradients() > 1.0
    assert max(float(p.grad.norm()) for p in m.parameters()) <= 1.0 + 1e-5
    m = big_grads(clipvalue=0.1)
    m.clip_gradients()
    assert max(float(p.grad.abs().max()) for p in m.parameters()) <= 0.1 + 1e-7
    m = big_grads(global_clipnorm=1.0)
    m.clip_gradients()
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in m.parameters()))
    assert float(total) == pytest.approx(1.0, rel=1e-4)


def test_weight_decay_and_l2_regularizers():
    x, y = adding(10)
    model = ll.Sequential([ll.LSTM(4, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse", optimizer=ll.SGD(learning_rate=0.1), weight_decay=1e-2)
    model.build(x)
    model._ensure_optimizer()
    assert all(g["weight_decay"] == 1e-2 for g in model.optimizer.param_groups)
    before = float(torch.sqrt(sum(p.detach().pow(2).sum() for p in model.parameters())))
    model.zero_grad()
    (model.compute_loss(x, y) * 0).backward()    # zero loss gradient: only the decay acts
    model.optimizer.step()
    after = float(torch.sqrt(sum(p.detach().pow(2).sum() for p in model.parameters())))
    assert after == pytest.approx(before * (1 - 0.1 * 1e-2), rel=1e-5)
    reg = ll.regularizers.l2(1e-3)
    layer = ll.LSTM(4, kernel_regularizer=reg, recurrent_regularizer=reg, bias_regularizer=reg, seed=0)
    model = ll.Sequential([layer, ll.Dense(1)])
    model.build(x)
    weights = (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh)
    expect = 1e-3 * sum(float(p.detach().pow(2).sum()) for p in weights)
    assert float(model.regularization_loss().detach()) == pytest.approx(expect, rel=1e-5)


def test_irnn_and_gated_replacements_fix_vanishing():
    x, y = adding(150)
    tanh = ll.Sequential([ll.SimpleRNN(16, seed=0), ll.Dense(1, seed=1)])
    irnn = ll.Sequential([ll.SimpleRNN(16, activation="relu", recurrent_initializer="identity", seed=0),
                          ll.Dense(1, seed=1)])
    chrono = ll.Sequential([ll.LSTM(16, bias_initializer="chrono", chrono_max_len=150, seed=0),
                            ll.Dense(1, seed=1)])
    for m in (tanh, irnn, chrono):
        m.compile(loss="mse")
    assert diagnose(tanh, x, y).verdict == "vanishing"
    assert diagnose(irnn, x, y).verdict == "healthy"
    assert torch.equal(irnn.layers[0].weight_hh, torch.eye(16))
    assert diagnose(chrono, x, y).verdict == "healthy"
    layer = chrono.layers[0]
    bf, bi = layer.bias_ih.detach()[16:32], layer.bias_ih.detach()[:16]
    assert torch.equal(bi, -bf) and float(bf.min()) >= 0 and float(bf.max()) <= np.log(149) + 1e-6
    gru = ll.Sequential([ll.GRU(16, seed=0), ll.Dense(1, seed=1)])
    gru.compile(loss="mse")
    assert diagnose(gru, x[:, :20], y).verdict in ("healthy", "vanishing")


def test_unit_forget_bias_default():
    layer = ll.LSTM(5, input_size=2)
    assert torch.equal(layer.bias_ih[5:10], torch.ones(5)) and layer.unit_forget_bias
    assert torch.equal(ll.LSTM(5, input_size=2, unit_forget_bias=False).bias_ih, torch.zeros(20))


def test_layer_norm_tames_scaled_recurrent_weights():
    x, y = adding(50)
    verdicts = {}
    for ln in (False, True):
        m = ll.Sequential([ll.LSTM(16, seed=0, layer_norm=ln), ll.Dense(1, seed=1)])
        m.compile(loss="mse")
        m.build(x)
        with torch.no_grad():
            m.layers[0].weight_hh.mul_(14.0)
        verdicts[ln] = diagnose(m, x, y).verdict
    assert verdicts == {False: "exploding", True: "healthy"}


def test_tbptt_limits_backprop_length():
    from lstmlab.diagnostics import GradientMonitor

    x, y = adding(40)
    yseq = torch.cumsum(x[..., :1], 1)
    model = ll.Sequential([ll.LSTM(8, return_sequences=True, seed=0), ll.Dense(1, seed=1)])
    model.compile(loss="mse")
    mon = GradientMonitor(every=1)
    hist = model.fit(x, yseq, epochs=1, batch_size=16, verbose=0, tbptt=10, callbacks=[mon])
    assert np.isfinite(hist.history["loss"][0])
    assert mon.last_report.per_step["lstm/forward"]["dL_dh"].shape == (10,)


def _run(code: str, model: ll.Sequential, x, y) -> None:
    """Execute a remedy string with '...' filled in, against ``model`` (layer constructors build a model)."""
    code = code.split("  (")[0].replace(" (IRNN)", "")
    ns = {"ll": ll, "model": model, "x": x, "y": y}
    if code.startswith("compile("):
        exec("model.compile(loss='mse', " + code[len("compile("):], ns)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    elif code.startswith("fit("):
        exec("model.fit(x, y, epochs=1, batch_size=16, verbose=0, " + code[len("fit(..., "):], ns)
    else:
        for cls in code.split("(")[0].split("/"):
            layer = eval(f"ll.{cls}(8, " + code.split("(", 1)[1].replace("..., ", ""), ns)
            m = ll.Sequential([layer, ll.Dense(1)])
            m.compile(loss="mse")
            m.fit(x, y, epochs=1, batch_size=16, verbose=0)


def test_every_suggested_remedy_runs():
    x, y = adding(24)
    base = {"steps": 24, "activation": "tanh", "recurrent_initializer": "glorot_uniform",
            "unit_forget_bias": False, "bias_initializer": "zeros", "layer_norm": False}
    suggested = set()
    for cell in ("lstm", "gru", "rnn"):
        info = {"x/forward": {**base, "cell": cell}}
        for verdict in ("vanishing", "exploding", "healthy"):
            for clipped in (False, True):
                suggested.update(remedies.suggest(verdict, info, saturation=0.9, clipped=clipped,
                                                  nonfinite=True))
    suggested.update(remedies.for_param_growth() + remedies.for_slow_loss(None, {}))
    ran = 0
    for r in sorted(suggested):
        if r.startswith(("replace ", "scale the inputs", "GradientMonitor", "recurrent_initializer")):
            continue   # advice in words, or covered by test_diagnostics_monitor
        model = ll.Sequential([ll.LSTM(8, seed=0), ll.Dense(1, seed=1)])
        model.compile(loss="mse")
        _run(r, model, x, y)
        ran += 1
    assert ran >= 9
    lstm = ll.LSTM(8, recurrent_initializer="orthogonal", input_size=2)
    w = lstm.weight_hh.detach()       # Keras' orthogonal on the (H, 4H) kernel: orthonormal columns here
    assert torch.allclose(w.T @ w, torch.eye(8), atol=1e-5)
