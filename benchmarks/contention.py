"""Shared cores: LSTM training steps of the fused engine (new futex barrier and the old spin/yield
barrier) and of torch's kernel, interleaved in one process, while a second process trains too.

Usage::

    python benchmarks/contention.py [--background fused|fused_old|native|none] [--config B,I,H,T]

Prints the median and minimum wall time (ms) of each kernel and the ratios to native.  The
background process runs the same training step in a loop with the given engine and the same
number of threads (two `lstmlab tune` workers on one machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from lstmlab import engine  # noqa: E402


def make_step(cfg: tuple):
    """A training step of one LSTM layer for a kernel name (fused, fused_old, native)."""
    batch, inp, hidden, steps = cfg
    g = torch.Generator().manual_seed(0)
    x, h0 = torch.randn(batch, steps, inp, generator=g), torch.zeros(batch, hidden)
    ps = [(0.1 * torch.randn(4 * hidden, inp, generator=g)).requires_grad_(),
          (0.1 * torch.randn(4 * hidden, hidden, generator=g)).requires_grad_(),
          torch.zeros(4 * hidden, requires_grad=True), torch.zeros(4 * hidden, requires_grad=True)]
    fused = engine.fused_module()

    def step(name: str) -> None:
        if name.startswith("fused"):
            fused.configure(barrier=0 if name == "fused_old" else 1)
            name = "fused"
        out = engine.run("lstm", x, h0, h0, tuple(ps), engine=name)[0]
        torch.autograd.grad(out.sum(), ps)

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--background", default="fused", choices=["fused", "fused_old", "native", "none"])
    ap.add_argument("--config", default="64,32,128,100", help="B,I,H,T")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--loop", default="", help=argparse.SUPPRESS)  # the background process
    args = ap.parse_args(argv)
    cfg = tuple(int(v) for v in args.config.split(","))
    step = make_step(cfg)
    if args.loop:
        while True:
            step(args.loop)
    bg = None
    if args.background != "none":
        bg = subprocess.Popen([sys.executable, __file__, "--config", args.config, "--loop", args.background])
        time.sleep(3)
    names = ("fused", "fused_old", "native")
    times: dict[str, list[float]] = {n: [] for n in names}
    try:
        for n in names:
            step(n)
        for _ in range(args.repeats):
            for n in names:
                t0 = time.perf_counter()
                step(n)
                times[n].append(1e3 * (time.perf_counter() - t0))
    finally:
        if bg is not None:
            bg.kill()
            bg.wait()
    med = {n: statistics.median(v) for n, v in times.items()}
    mins = {n: min(v) for n, v in times.items()}
    print(f"config {cfg} background={args.background} threads={torch.get_num_threads()} "
          f"loadavg={os.getloadavg()[0]:.1f}")
    for n in names:
        print(f"  {n:9s} median {med[n]:8.1f} ms  min {mins[n]:8.1f} ms  "
              f"ratio to native {med[n] / med['native']:.2f} (min {mins[n] / mins['native']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
