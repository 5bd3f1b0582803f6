"""Long sequences: peak memory and time of one training step, full BPTT vs truncated BPTT.

The task is per-step regression on a long noisy sine (predict the next value at every step) with
``Sequential([LSTM(hidden, return_sequences=True), Dense(1)])`` and Adam.  For each sequence
length ``T`` (1,000 / 10,000 / 100,000 by default) two ways of training on a batch of whole
sequences are measured:

* ``full``: one backward pass through all ``T`` steps (``lstmlab.training.step.full_step``, what
  ``fit`` runs for each batch) - autograd keeps every step's activations, so memory grows
  linearly with ``T``;
* ``tbptt``: ``fit(tbptt=k)``'s step (``lstmlab.training.step.tbptt_step``): the sequence is streamed in
  chunks of ``k`` steps, the LSTM state carried from chunk to chunk but detached, one optimizer
  step per chunk - only one chunk's activations are alive at a time, so memory stays flat (the
  only part that grows with ``T`` is the detached per-step predictions that the step returns for
  the metrics: ``batch * T * outputs`` floats, twice while they are concatenated - and the heap
  fragmentation that keeping 1,000 small tensors alive between the chunks' freed activations
  causes in glibc's allocator, which makes that part larger and noisy from run to run);
* ``stream``: the same chunks through a ``stateful=True`` LSTM, one ``full_step`` per chunk
  (state carried, gradients cut at chunk boundaries), keeping only the running loss: the
  streaming loop for a series too long to hold its outputs; its memory does not grow with ``T``.

Every configuration runs in a fresh subprocess (one thread).  The model is built (and the optimizer
state created) by one step on the first 10 time steps, then the peak-RSS counter of the process
is reset (``/proc/self/clear_refs`` ``5``, Linux) and the measured steps run; the reported peak
is ``VmHWM`` after the steps minus ``VmRSS`` before them: all memory the step touched, whoever
allocated it (torch, oneDNN, NumPy).
Without ``clear_refs`` the fallback is ``ru_maxrss`` after minus before (a lower bound).

Usage::

    python benchmarks/long_sequences.py                     # the table for benchmarks/RESULTS.md
    python benchmarks/long_sequences.py --steps 1000 10000 --repeats 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(steps: int, mode: str, k: int, batch: int, hidden: int, repeats: int, engine: str) -> dict:
    """One configuration, in this (fresh) process."""
    import numpy as np
    import torch

    sys.path.insert(0, SRC)
    import lstmlab as ll
    from lstmlab.training.step import full_step, tbptt_step

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t = np.arange(steps + 1, dtype=np.float64)
    phase = rng.uniform(0, 2 * np.pi, size=(batch, 1))
    series = np.sin(0.05 * t[None, :] + phase) + 0.1 * rng.normal(size=(batch, steps + 1))
    x = torch.tensor(series[:, :-1, None], dtype=torch.float32)
    y = torch.tensor(series[:, 1:, None], dtype=torch.float32)
    model = ll.Sequential([ll.LSTM(hidden, return_sequences=True, engine=engine), ll.Dense(1)])
    model.compile(loss="mse", optimizer="adam")
    warm = min(steps, 10)  # builds the weights and the optimizer state; the same for both modes
    model.fit(x[:, :warm], y[:, :warm], epochs=1, batch_size=batch, verbose=0, shuffle=False,
              tbptt=k if mode != "full" else None)
    mod = ll.engine.resolve(engine, cell="lstm", taps=False, rmask=False, layer_norm=False, activation="tanh",
                            device=x.device)
    used_engine = getattr(mod, "__name__", str(mod)).rsplit(".", 1)[-1]
    before_rss = _status_kb("VmRSS")
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exact = _reset_peak()
    times, losses = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if mode == "tbptt":
            loss, *_ = tbptt_step(model, x, y, None, k, [])
        elif mode == "stream":
            model.layers[0].stateful = True
            model.layers[0].reset_states()
            total = 0.0
            for start in range(0, steps, k):
                part, *_ = full_step(model, x[:, start:start + k], y[:, start:start + k], None, [])
                total += part * min(k, steps - start)
            model.layers[0].stateful = False
            loss = total / steps
        else:
            loss, *_ = full_step(model, x, y, None, [])
        times.append(time.perf_counter() - t0)
        losses.append(loss)
    if exact and before_rss is not None:
        peak_kb = (_status_kb("VmHWM") or 0) - before_rss
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_max
    best = min(times)
    return {"steps": steps, "mode": mode, "k": k if mode != "full" else None, "batch": batch, "hidden": hidden,
            "engine": used_engine, "peak_mb": peak_kb / 1024, "exact_peak": exact, "step_s": best,
            "us_per_time_step": 1e6 * best / steps, "optimizer_steps": -(-steps // k) if mode != "full" else 1,
            "repeats": repeats, "loss": losses[-1], "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--tbptt", type=int, default=100, help="chunk length k of truncated BPTT")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--repeats", type=int, default=None, help="timed steps (default 3, 1 from 100,000 steps)")
    p.add_argument("--engine", default="auto", help="LSTM engine: auto, native, fused")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument("--worker", nargs=2, metavar=("STEPS", "MODE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        steps, mode = int(a.worker[0]), a.worker[1]
        rep = a.repeats or (1 if steps >= 100_000 else 3)
        print(json.dumps(worker(steps, mode, a.tbptt, a.batch, a.hidden, rep, a.engine)))
        return 0
    rows = []
    t_all = time.time()
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for steps in a.steps:
        for mode in ("full", "tbptt", "stream"):
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(steps), mode, "--tbptt", str(a.tbptt),
                   "--batch", str(a.batch), "--hidden", str(a.hidden), "--engine", a.engine]
            if a.repeats:
                cmd += ["--repeats", str(a.repeats)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if not a.json:
                r = rows[-1]
                print(f"# {steps} steps, {mode}: {r['peak_mb']:.1f} MB, {r['step_s']:.3f} s", file=sys.stderr)
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| time steps | training | peak memory above baseline (MB) | time per training step (s) | "
          "time per time step (us) | optimizer steps |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        how = {"full": "full BPTT", "tbptt": f"TBPTT k={r['k']} (fit)",
               "stream": f"streamed chunks k={r['k']}"}[r["mode"]]
        print(f"| {r['steps']:,} | {how} | {r['peak_mb']:.1f} | {r['step_s']:.3f} | {r['us_per_time_step']:.1f} | "
              f"{r['optimizer_steps']:,} |")
    r0 = rows[0]
    print(f"\nbatch {r0['batch']}, hidden {r0['hidden']}, engine {r0['engine']}, {r0['threads']} thread; "
          f"peak via {'VmHWM after clear_refs' if r0['exact_peak'] else 'ru_maxrss delta'}; "
          f"best of {', '.join(str(r['repeats']) for r in rows)} timed steps; total {time.time() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
