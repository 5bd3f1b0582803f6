"""``engine="auto"`` by measurement (lstmlab.engine.autotune): the cache key, the decision rule, the
timing loop and the on-disk cache, all with a fake clock (no wall-clock assertions)."""

from __future__ import annotations

import json

import pytest
import torch

from lstmlab import cells, engine
from lstmlab.engine import autotune, native

CPU = torch.device("cpu")
FUSED = object()  # stands in for the compiled fused engine module


class FakeClock:
    """A clock that advances only when a fake kernel 'runs'."""

    def __init__(self):
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def kernel(self, name: str, seconds: float):
        def run() -> None:
            self.calls.append(name)
            self.now += seconds
        return run


@pytest.fixture
def clock(monkeypatch, tmp_path):
    """Autotune on, a private cache file, a fake clock; forgets the process memo before and after."""
    monkeypatch.setenv("LSTMLAB_AUTOTUNE", "1")
    monkeypatch.setenv("LSTMLAB_AUTOTUNE_CACHE", str(tmp_path / "sub" / "autotune.json"))
    fake = FakeClock()
    monkeypatch.setattr(autotune, "TIMER", fake)
    monkeypatch.setattr(autotune, "busy", lambda: False)
    autotune.reset()
    yield fake
    autotune.reset()


def key(**kw) -> str:
    args = {"cell": "lstm", "dtype": torch.float32, "shape": (64, 100, 32, 128), "threads": 2, "taps": False,
            "train": True}
    args.update(kw)
    return autotune.entry_key(**args)


def test_key_separates_every_component_and_buckets_shapes():
    base = key()
    assert base == key(shape=(33, 65, 17, 65)) == key(shape=(64, 512, 32, 128)), "same bucket (T capped)"
    others = [key(cell="gru"), key(dtype=torch.float64), key(shape=(65, 100, 32, 128)),
              key(shape=(64, 100, 64, 128)), key(shape=(64, 100, 32, 256)), key(shape=(64, 16, 32, 128)),
              key(threads=1), key(taps=True), key(train=False)]
    assert len({base, *others}) == len(others) + 1
    assert [autotune.bucket(n) for n in (1, 2, 3, 64, 65)] == [1, 2, 4, 64, 128]


def test_machine_key_names_cpu_and_torch():
    mk = autotune.machine_key()
    assert autotune.cpu_model() in mk and torch.__version__ in mk


@pytest.mark.parametrize("fused,native_,want", [
    ([1.0, 1.0, 1.1], [2.0, 2.0, 2.1], "fused"),   # clearly faster
    ([0.99, 0.99, 0.99], [1.0, 1.0, 1.0], "native"),  # within the margin: torch's kernel
    ([1.5, 1.5, 1.5], [1.0, 1.0, 1.0], "native"),   # slower
    ([0.7, 0.9, 0.9], [1.0, 1.0, 0.6], "native"),   # median faster but minimum slower: doubt
])
def test_decide_prefers_native_unless_fused_is_clearly_faster(fused, native_, want):
    assert autotune.decide({"fused": fused, "native": native_}) == want


def test_measure_interleaves_after_one_warmup(clock):
    times = autotune.measure({"fused": clock.kernel("f", 0.015625), "native": clock.kernel("n", 0.03125)})
    assert clock.calls == ["f", "n"] * (1 + autotune.REPEATS)
    assert times == {"fused": [0.015625] * autotune.REPEATS, "native": [0.03125] * autotune.REPEATS}


def test_measure_stops_after_three_rounds_past_the_budget(clock):
    times = autotune.measure({"fused": clock.kernel("f", autotune.BUDGET_S), "native": clock.kernel("n", 1.0)})
    assert len(times["fused"]) == len(times["native"]) == 3


def test_choose_measures_once_then_reads_the_file(clock):
    made = []

    def candidates():
        made.append(1)
        return {"fused": clock.kernel("f", 0.5), "native": clock.kernel("n", 1.0)}

    assert autotune.choose("k1", candidates) == "fused"  # 3 rounds: past the budget
    data = json.loads(autotune.cache_path().read_text())
    assert data[autotune.machine_key()]["k1"]["choice"] == "fused"
    assert data[autotune.machine_key()]["k1"]["native_median_ms"] == pytest.approx(1000.0)
    autotune.reset()  # a new process: reads the file, does not measure again

    def boom():
        raise AssertionError("measured although the cache has the answer")

    assert autotune.choose("k1", boom) == "fused"
    assert made == [1]
    assert not list(autotune.cache_path().parent.glob(".autotune-*")), "temporary file left behind"


def test_a_timing_on_a_busy_machine_is_written_marked_and_kept(clock, monkeypatch):
    # Every process must run the same kernel (bit-exact resume in a new process), so even a timing
    # under contention is kept; it is marked so that users know to delete the file and measure again.
    monkeypatch.setattr(autotune, "busy", lambda: True)
    cands = lambda: {"fused": clock.kernel("f", 0.0025), "native": clock.kernel("n", 0.005)}  # noqa: E731
    assert autotune.choose("k", cands) == "fused"
    entry = json.loads(autotune.cache_path().read_text())[autotune.machine_key()]["k"]
    assert entry["choice"] == "fused" and entry["busy"] is True


def test_a_later_process_keeps_the_first_decision_even_if_its_timing_would_differ(clock):
    assert autotune.choose("k", lambda: {"fused": clock.kernel("f", 1.0), "native": clock.kernel("n", 2.0)}) == "fused"
    autotune.reset()  # a new process on the same machine
    calls = len(clock.calls)
    assert autotune.choose("k", lambda: {"fused": clock.kernel("f", 9.0), "native": clock.kernel("n", 1.0)}) == "fused"
    assert len(clock.calls) == calls, "no new timing"


def test_busy_compares_the_load_with_the_usable_cores(monkeypatch):
    monkeypatch.setattr(autotune.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(autotune.os, "getloadavg", lambda: (3.5, 0.0, 0.0))
    assert autotune.busy()
    monkeypatch.setattr(autotune.os, "getloadavg", lambda: (2.5, 9.0, 9.0))
    assert not autotune.busy()


def test_other_machines_entries_are_kept_and_not_used(clock):
    path = autotune.cache_path()
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"Other CPU | torch 0.1 | rev 1": {"k": {"choice": "fused"}}}))
    assert autotune.choose("k", lambda: {"fused": clock.kernel("f", 2.0), "native": clock.kernel("n", 1.0)}) \
        == "native"
    data = json.loads(path.read_text())
    assert data["Other CPU | torch 0.1 | rev 1"] == {"k": {"choice": "fused"}}
    assert data[autotune.machine_key()]["k"]["choice"] == "native"


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"m": 3}', "\udcff"])
def test_corrupt_cache_is_ignored_with_one_warning_and_rewritten(clock, content):
    path = autotune.cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    cands = lambda: {"fused": clock.kernel("f", 0.5), "native": clock.kernel("n", 1.0)}  # noqa: E731
    with pytest.warns(RuntimeWarning, match="autotune: ignoring") as rec:
        assert autotune.choose("k", cands) == "fused"
        assert autotune.choose("k2", cands) == "fused"
    assert len([w for w in rec if "autotune" in str(w.message)]) == 1
    assert set(json.loads(path.read_text())[autotune.machine_key()]) == {"k", "k2"}


def test_cache_path_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMLAB_AUTOTUNE_CACHE", str(tmp_path / "x.json"))
    assert autotune.cache_path() == tmp_path / "x.json"
    monkeypatch.delenv("LSTMLAB_AUTOTUNE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert autotune.cache_path() == tmp_path / "lstmlab" / "autotune.json"


def pick(shape=(64, 100, 32, 128), **kw):
    return engine.resolve("auto", cell="lstm", taps=False, rmask=False, layer_norm=False, activation="tanh",
                          device=CPU, shape=shape, **kw)


@pytest.mark.parametrize("fused_s,want", [(0.0025, FUSED), (0.00495, native), (0.01, native)])
def test_auto_picks_the_measured_faster_kernel(clock, monkeypatch, fused_s, want):
    monkeypatch.setattr(engine, "fused_module", lambda: FUSED)
    monkeypatch.setattr(engine, "_candidates", lambda *a: {"fused": clock.kernel("f", fused_s),
                                                            "native": clock.kernel("n", 0.005)})
    assert pick() is want
    assert pick() is want and len(clock.calls) == 2 * (1 + autotune.REPEATS), "second call read the memo"


def test_auto_with_autotune_off_keeps_the_fixed_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMLAB_AUTOTUNE", "0")
    monkeypatch.setenv("LSTMLAB_AUTOTUNE_CACHE", str(tmp_path / "a.json"))
    monkeypatch.setattr(engine, "fused_module", lambda: FUSED)
    monkeypatch.setattr(autotune, "choose", lambda *a: pytest.fail("timed although LSTMLAB_AUTOTUNE=0"))
    assert pick() is FUSED
    with torch.no_grad():
        assert pick() is native
    assert not (tmp_path / "a.json").exists()


def test_real_candidates_run_and_leave_the_random_state_alone():
    """Both real kernels run on the synthetic tensors (training and inference) without touching torch's RNG."""
    fused = engine.fused_module()
    if fused is None:
        pytest.skip("the fused engine cannot be built here")
    state = torch.get_rng_state()
    for train in (True, False):
        for spec in (cells.get("lstm"), cells.get("gru")):
            cands = engine._candidates(spec, "tanh", (3, 5, 2, 4), torch.float64, train,
                                       {"fused": fused, "native": native})
            for fn in cands.values():
                fn()
    assert torch.equal(state, torch.get_rng_state())
