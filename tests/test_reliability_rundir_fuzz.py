"""Fuzzing the training state inside a checkpoint (issue 12, item 9): whatever JSON a
``checkpoints/last.lstmlab`` carries as its ``train_state``, ``lstmlab train --resume`` exits 0,
1 (diverged, and then the result says so) or 2 (one line naming the checkpoint file), never shows
a traceback and never writes outside its run directory.

The mutations start from a real checkpoint, so most keep the state nearly valid: one key set to
any JSON value, deleted, or the whole state replaced.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lstmlab import cli

CONFIG = """
[data]
source = "adding"
length = 4
n_train = 16
n_val = 4
n_test = 4
[model]
layers = [{type = "LSTM", units = 2}, {type = "Dense"}]
[train]
epochs = EPOCHS
batch_size = 8
checkpoint_every = 1
seed = 1
verbose = 0
[train.monitor]
every = 1
on_nan = "fix"
"""

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def _paths(state, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the state (into objects; long lists only by their first entries)."""
    out = []
    items = state.items() if isinstance(state, dict) else enumerate(state[:3]) if isinstance(state, list) else []
    for k, v in items:
        out.append(prefix + (k,))
        out += _paths(v, prefix + (k,))
    return out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A run stopped after epoch 1 (its checkpoint holds RNG states, the monitor's state and rollback
    snapshot), its state moved to batch 1 of epoch 2 with that batch's sums (so the keys of a
    mid-epoch checkpoint are there to mutate too), and the config to resume it to 2 epochs."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = tmp / "cfg.toml"
    cfg.write_text(CONFIG.replace("EPOCHS", "1"))
    assert cli.main(["train", str(cfg), "--run-dir", str(tmp / "run")]) == 0
    cfg.write_text(CONFIG.replace("EPOCHS", "2"))
    last = tmp / "run" / "checkpoints" / "last.lstmlab"
    with safe_open(str(last), "pt") as fh:
        meta = dict(fh.metadata())
    return {"run": tmp / "run", "cfg": cfg, "meta": meta, "tensors": load_file(str(last)),
            "state": {**json.loads(meta["train_state"]), "batch": 1,
                      "epoch_sums": {"loss": [1.5, 8.0], "mae": [4.0, 8.0]}, "partial_time_s": 0.1}}


mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(min_value=0), JSON),
    st.tuples(st.just("del"), st.integers(min_value=0), st.none()),
    st.tuples(st.just("all"), st.just(0), JSON),
)


def _mutate(state: dict, how: tuple) -> object:
    kind, pick, value = how
    if kind == "all":
        return value
    paths = _paths(state)
    if not paths:
        return value
    path = paths[pick % len(paths)]
    target = state
    for k in path[:-1]:
        target = target[k]
    if kind == "del" and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return state


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(how=st.lists(mutation, min_size=1, max_size=3))
def test_any_checkpoint_state_exits_0_1_or_2_in_one_line(pristine, tmp_path_factory, capsys, how):
    sandbox = tmp_path_factory.mktemp("case")
    run = sandbox / "run"
    shutil.copytree(pristine["run"], run, symlinks=True)
    state = json.loads(json.dumps(pristine["state"]))
    for h in how:
        state = _mutate(state, h) if isinstance(state, dict) else _mutate({"x": state}, h)
    meta = dict(pristine["meta"], train_state=json.dumps(state))
    save_file(pristine["tensors"], str(run / "checkpoints" / "last.lstmlab"), metadata=meta)
    capsys.readouterr()
    rc = cli.main(["train", str(pristine["cfg"]), "--run-dir", str(run), "--resume"])
    cap = capsys.readouterr()
    assert rc in (0, 1, 2), (rc, how)
    event(f"exit {rc}")
    assert "Traceback" not in cap.err
    if rc == 2:
        errors = [line for line in cap.err.splitlines() if line.startswith("lstmlab train: error:")]
        assert len(errors) == 1 and "last.lstmlab" in errors[0], (cap.err, how)
    else:  # exit 1 means diverged, and only that
        assert (json.loads(cap.out.splitlines()[-1])["status"] == "diverged") == (rc == 1), how
    assert sorted(p.name for p in sandbox.iterdir()) == ["run"]  # nothing written next to the run directory
