"""Simulate the proposed doctor protocol on one set within a wall-clock budget, and print JSON.

    python benchmarks/doctor_research/doctor_sim.py ucr:ArrowHead --budget-minutes 5

Protocol (what FINDINGS.md recommends):
  1. diagnose the plain model at initialisation (no training): log10 decay of dL/dh over T;
  2. candidates from the data, not tuned per set (k = ceil(T/50), chrono T_max = ceil(T/k)):
     by default plain, P = znorm + patch k + chrono, P + bidirectional, P + attention readout;
  3. successive halving: every candidate trains ``rung`` seconds; the better half (by validation
     score, ties broken by validation loss) trains as long again; the winner trains for the rest;
  4. test with the winner's best-on-validation weights.
Models stay in memory between rungs (training continues; nothing restarts).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))

import torch  # noqa: E402
import treat  # noqa: E402


def candidates(length: int, names: list[str], steps: int = 50) -> list[treat.Treatment]:
    """The named candidates; P = znorm + patch k = ceil(T/steps) + chrono T_max = ceil(T/k)."""
    k = max(1, math.ceil(length / steps))
    p = treat.Treatment(znorm=True, patch=k, chrono=max(3, math.ceil(length / k)))
    table = {"plain": treat.Treatment(), "P": p, "P+attn": replace(p, readout="attn"),
             "P+mean": replace(p, readout="mean"), "P+bidir": replace(p, bidir=True),
             "P+lr1e-2": replace(p, lr=1e-2), "P+bidir+lr1e-2": replace(p, bidir=True, lr=1e-2)}
    bad = [n for n in names if n not in table]
    if bad:
        raise SystemExit(f"--candidates: unknown {bad}; expected some of {sorted(table)}")
    return [table[n] for n in names]


class Arm:
    """One candidate: its data view, model and Probe callback, trained in slices."""

    def __init__(self, d: treat.Data, t: treat.Treatment, seed: int) -> None:
        prep = treat.znorm if t.znorm else (lambda a: a)
        self.t = t
        self.d = treat.Data(d.name, d.kind, prep(d.xtr), d.ytr, prep(d.xva), d.yva, prep(d.xte), d.yte,
                            d.n_out, d.baseline)
        self.model = treat.build_model(t, d.kind, d.n_out, d.xtr.shape[1], seed)
        self.model.build(torch.as_tensor(self.d.xtr[:2]))
        self.decay = treat.decay_at_init(self.model, self.d, self.d.xtr)
        self.probe = treat.Probe(self.d, 0.0, 2.0, None)
        self.epoch, self.seed, self.trained_s = 0, seed, 0.0

    def train(self, seconds: float) -> None:
        p = self.probe
        p.t0 = p.last = time.time()
        p.budget_s = seconds
        self.model.stop_training = False
        t0 = time.time()
        h = self.model.fit(self.d.xtr, self.d.ytr, epochs=self.epoch + 100_000, initial_epoch=self.epoch,
                           batch_size=self.t.batch, callbacks=[p], verbose=0, seed=self.seed + self.epoch)
        self.epoch += len(h.epoch) + 1
        self.trained_s += time.time() - t0

    def test(self) -> dict:
        if self.probe.best_state is not None:
            self.model.load_state_dict(self.probe.best_state)
        return treat.score(self.model, self.d.kind, self.d.xte, self.d.yte)


def simulate(d: treat.Data, budget_s: float, seed: int, names: list[str]) -> dict:
    t0 = time.time()
    arms = [Arm(d, t, seed) for t in candidates(d.xtr.shape[1], names)]
    setup = time.time() - t0
    rung = max(5.0, (budget_s - setup) / (2 * len(arms)))  # half the time for the first rung
    live, log = list(arms), []
    while len(live) > 1:
        for a in live:
            a.train(rung)
        log.append([{"treatment": a.t.label(), "best_val": a.probe.best_key, "trained_s": round(a.trained_s, 1)}
                    for a in live])
        live = sorted(live, key=lambda a: -a.probe.best_key)[: max(1, len(live) // 2)]
    left = budget_s - (time.time() - t0)
    if left > 1:
        live[0].train(left)
    win = live[0]
    return {"set": d.name, "length": int(d.xtr.shape[1]), "winner": win.t.label(), "test": win.test(),
            "plain_test": arms[0].test(), "decay_plain": arms[0].decay, "rungs": log,
            "time_s": round(time.time() - t0, 1), "budget_s": budget_s, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("set", help="ucr:NAME")
    p.add_argument("--budget-minutes", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", default="plain,P,P+bidir,P+attn", help="comma-separated, plain first")
    p.add_argument("--out", default=str(HERE / "results" / "doctor_sim.jsonl"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    d = treat.load_ucr(a.set.removeprefix("ucr:"), seed=a.seed)
    r = simulate(d, 60.0 * a.budget_minutes, a.seed, a.candidates.split(","))
    r["candidates"] = a.candidates
    with open(a.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(r) + "\n")
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
