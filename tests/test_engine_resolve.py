"""Which engine module ``engine.resolve`` picks, for every engine name, on CPU and (simulated) CUDA.

``resolve`` reads the device only from its ``device`` argument, so the CUDA choices are tested on
this CPU with ``torch.device("cuda")``; whether triton imports (``gpu.available``) and whether the
C++ engine builds (``engine.fused_module``) are monkeypatched, so no compiler and no GPU are needed.
"""

from __future__ import annotations

import pytest
import torch

from lstmlab import engine
from lstmlab.engine import gpu, lnlstm, loop, native, reference

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
FUSED = object()  # stands in for the compiled fused engine module


@pytest.fixture
def world(monkeypatch):
    """Set whether triton imports and whether the fused engine builds; returns the setter."""

    def set_world(triton: bool = True, fused: bool = True) -> None:
        monkeypatch.setattr(gpu, "available", lambda: triton)
        monkeypatch.setattr(engine, "fused_module", lambda: FUSED if fused else None)

    set_world()
    return set_world


def pick(name: str = "auto", device: torch.device = CUDA, *, taps: bool = False, rmask: bool = False,
         layer_norm: bool = False, cell: str = "lstm", activation: str = "tanh"):
    return engine.resolve(name, cell=cell, taps=taps, rmask=rmask, layer_norm=layer_norm, activation=activation,
                          device=device)


@pytest.mark.parametrize("cell,activation", [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "relu")])
def test_auto_on_cuda_without_taps_is_native(world, cell, activation):
    """cuDNN when nothing per-step is needed, in training and inference, whether or not triton is there."""
    for triton in (True, False):
        world(triton=triton)
        assert pick(cell=cell, activation=activation) is native
        with torch.no_grad():
            assert pick(cell=cell, activation=activation) is native


@pytest.mark.parametrize("taps,rmask", [(True, False), (False, True), (True, True)], ids=["taps", "rmask", "both"])
def test_auto_on_cuda_with_taps_is_gpu(world, taps, rmask):
    assert pick(taps=taps, rmask=rmask) is gpu
    assert pick(taps=taps, rmask=rmask, cell="gru") is gpu
    with torch.no_grad():  # inference with taps records saturation: still the kernels with taps inside
        assert pick(taps=taps, rmask=rmask) is gpu


def test_auto_on_cuda_with_taps_without_triton_keeps_the_old_route(world):
    world(triton=False)
    assert pick(taps=True) is FUSED
    assert pick(rmask=True) is FUSED
    world(triton=False, fused=False)
    assert pick(taps=True) is loop


def test_auto_layer_norm(world, monkeypatch):
    """Layer-normalised LSTM: the compiled LN-LSTM on the CPU when it builds, else (and on CUDA) loop."""
    monkeypatch.setattr(lnlstm, "available", lambda: True)
    assert pick(layer_norm=True, taps=True) is loop
    assert pick(layer_norm=True) is loop
    assert pick(layer_norm=True, device=CPU) is lnlstm
    assert pick(layer_norm=True, device=CPU, taps=True, rmask=True) is lnlstm
    monkeypatch.setattr(lnlstm, "available", lambda: False)
    assert pick(layer_norm=True, device=CPU) is loop


def test_auto_on_cpu_never_picks_gpu(world):
    """Triton's interpreter is for tests only: on the CPU ``auto`` keeps fused / native."""
    assert pick(device=CPU, taps=True) is FUSED
    assert pick(device=CPU, rmask=True) is FUSED
    assert pick(device=CPU) is FUSED  # CPU training: fused measured faster than oneDNN
    with torch.no_grad():
        assert pick(device=CPU) is native
        assert pick(device=CPU, taps=True) is FUSED
    world(fused=False)
    assert pick(device=CPU, taps=True) is loop
    assert pick(device=CPU) is native


@pytest.mark.parametrize("device", [CPU, CUDA], ids=["cpu", "cuda"])
def test_explicit_gpu(world, device):
    assert "gpu" in engine.ENGINES
    for taps, rmask in [(False, False), (True, False), (False, True)]:
        assert pick("gpu", device, taps=taps, rmask=rmask) is gpu
    world(triton=False)
    with pytest.raises(ValueError, match=r"engine='gpu' needs the triton package.*use 'auto'"):
        pick("gpu", device)


def test_explicit_gpu_refuses_layer_norm(world):
    with pytest.raises(ValueError, match=r"engine='gpu' does not support layer_norm=True"):
        pick("gpu", layer_norm=True)


def test_other_explicit_engines_are_unchanged(world):
    assert pick("reference", taps=True) is reference
    assert pick("loop", taps=True) is loop
    assert pick("native") is native
    assert pick("fused", taps=True) is FUSED
    world(fused=False)
    assert pick("fused", taps=True) is loop
    with pytest.raises(ValueError, match="engine='native' cannot record per-step gradient taps"):
        pick("native", taps=True)


def test_unknown_engine_names_the_choices(world):
    with pytest.raises(ValueError, match=r"engine: expected one of \('auto', 'fused', 'native', 'gpu', .*got 'cudnn'"):
        pick("cudnn")


def test_gpu_layer_matches_reference_layer():
    """``engine="gpu"`` end to end through a layer (Triton interpreter on the CPU): same outputs,
    gradients and taps as ``engine="reference"`` for the same weights."""
    pytest.importorskip("triton", reason="triton is not installed; `pip install -e '.[test]'` installs it")
    import lstmlab as ll

    x = torch.randn(3, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([4, 2, 3])
    results = []
    for name in ("gpu", "reference"):
        layer = ll.GRU(5, engine=name, seed=3, input_size=2, return_sequences=True, recurrent_dropout=0.3).double()
        layer.record_taps = True
        torch.manual_seed(7)  # the same recurrent-dropout mask for both engines
        out = layer(x, lengths=lengths)
        grads = torch.autograd.grad(out.pow(2).sum(), list(layer.parameters()))
        taps = layer.last_taps["forward"].finalize()
        results.append((out, grads, taps.grad_h_sq, taps.saturated))
    (out, grads, gh, sat), (ref_out, ref_grads, ref_gh, ref_sat) = results
    torch.testing.assert_close(out, ref_out)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    torch.testing.assert_close(gh, ref_gh)
    assert sat.keys() == ref_sat.keys() and all(torch.equal(sat[k], ref_sat[k]) for k in sat)
