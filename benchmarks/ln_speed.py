"""Training step of LSTM(layer_norm=True) against a plain LSTM, both as ll.LSTM layers (issue 15, item 3).

Three layers per shape (B, T, I, H), float32, interleaved in one process: the plain LSTM
(``engine="fused"``), the layer-normalised LSTM with ``engine="auto"`` (the compiled LN-LSTM on the
CPU) and with ``engine="loop"`` (what ``auto`` ran before).  A step is forward,
``out.sum().backward()``; time is per-thread CPU time (``time.thread_time``, so other processes on
shared cores do not count), one thread.  Prints medians and minima and the ratios to the plain LSTM.

    OMP_NUM_THREADS=1 python benchmarks/ln_speed.py [--repeats 9] [--timer thread|wall]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import lstmlab.layers as ll  # noqa: E402
from lstmlab.engine import lnlstm  # noqa: E402

CONFIGS = [(64, 32, 128, 100), (32, 64, 256, 200), (16, 8, 32, 500), (128, 128, 512, 50)]
VARIANTS = {"plain fused": (False, "fused"), "LN auto": (True, "auto"), "LN loop": (True, "loop")}


def step_fn(shape: tuple, layer_norm: bool, engine: str):
    """One training step of a fresh layer on fixed random data, as a callable."""
    batch, inp, steps, hid = shape[0], shape[2], shape[1], shape[3]
    torch.manual_seed(0)
    layer = ll.LSTM(hid, return_sequences=True, layer_norm=layer_norm, engine=engine, input_size=inp)
    x = torch.randn(batch, steps, inp)

    def once() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    return once


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--timer", choices=("thread", "wall"), default="thread",
                    help="per-thread CPU time (default) or wall-clock time")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clock = time.thread_time if args.timer == "thread" else time.perf_counter
    assert lnlstm.available(), "the LN-LSTM extension does not build here"
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, float32, {args.timer} time (ms)")
    print("shape (B, T, I, H)      | variant      | median  | min     | ratio median | ratio min")
    for shape in CONFIGS:
        fns = {name: step_fn(shape, ln, eng) for name, (ln, eng) in VARIANTS.items()}
        times: dict = {name: [] for name in fns}
        for fn in fns.values():  # warm-up (builds, autotune)
            fn()
        for _ in range(args.repeats):
            for name, fn in fns.items():  # interleaved
                t0 = clock()
                fn()
                times[name].append((clock() - t0) * 1e3)
        base_med, base_min = statistics.median(times["plain fused"]), min(times["plain fused"])
        for name, ts in times.items():
            med, mn = statistics.median(ts), min(ts)
            ratios = f"{med / base_med:12.2f} | {mn / base_min:9.2f}"
            print(f"{str(shape):23} | {name:12} | {med:7.2f} | {mn:7.2f} | {ratios}")


if __name__ == "__main__":
    main()
