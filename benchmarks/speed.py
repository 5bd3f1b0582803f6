"""Speed and memory of the fused engine vs torch.nn.LSTM / torch.nn.GRU, in one process.

Each measurement alternates lstmlab and torch runs (after warm-up) and reports the median of
``--repeats`` (>= 10) timings of each.  Modes:

* ``train_taps``: training step (forward + backward of ``loss = out.sum()``, gradients of all
  weights) with the fused engine recording StepTaps (finalised inside the timed region);
* ``train``: the same with taps off;
* ``infer``: forward under ``torch.no_grad()``.

Peak memory of one training step (``--memory``, on by default except with ``--quick``):

* CPU: the profiler's allocator events (``torch.profiler`` with ``profile_memory=True``): the
  running sum of every allocation / free made by torch's CPU allocator during the step; its
  maximum is the peak (bytes above what was allocated before the step).  Memory that a library
  allocates behind torch's allocator (e.g. oneDNN scratchpads) is not seen.
* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus the
  memory allocated before the step.
* both: ``saved`` = bytes of the distinct storages that autograd saves for backward
  (``torch.autograd.graph.saved_tensors_hooks``), excluding the input and the parameters.

Usage::

    python benchmarks/speed.py [--device cpu|cuda] [--json] [--quick] [--steps-scaling] [--held-out]
                               [--configs "B,I,H,T;..."] [--engine fused|auto|gpu|loop]
                               [--threads N] [--timer wall|thread]

``--engine auto`` times what ``engine="auto"`` picks (set ``LSTMLAB_AUTOTUNE_CACHE`` to a fresh file
to include its first-use timing decision, which happens in the warm-up).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from lstmlab import engine  # noqa: E402
from lstmlab.engine import StepTaps  # noqa: E402

CONFIGS = [(64, 32, 128, 100), (32, 64, 256, 200), (16, 8, 32, 500), (128, 128, 512, 50)]
# shapes the kernels were not tuned on (--held-out)
HELD_OUT = [(8, 16, 64, 300), (256, 64, 128, 30), (32, 32, 1024, 20), (48, 24, 96, 150), (4, 64, 384, 100)]
TORCH_CLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Case:
    def __init__(self, cell: str, cfg: tuple, device: str, dtype=torch.float32):
        batch, inp, hidden, steps = cfg
        torch.manual_seed(0)
        self.cell, self.cfg, self.device = cell, cfg, device
        self.module = TORCH_CLS[cell](inp, hidden, batch_first=True).to(device, dtype)
        self.params = [self.module.weight_ih_l0, self.module.weight_hh_l0,
                       self.module.bias_ih_l0, self.module.bias_hh_l0]
        self.x = torch.randn(batch, steps, inp, device=device, dtype=dtype)
        self.h0 = torch.zeros(batch, hidden, device=device, dtype=dtype)

    def zero(self) -> None:
        for p in self.params:
            p.grad = None

    def lstmlab(self, mode: str) -> None:
        taps = StepTaps() if mode == "train_taps" else None
        c0 = self.h0 if self.cell == "lstm" else None
        with torch.set_grad_enabled(mode != "infer"):
            out = run_engine(ENGINE[0], self.cell, self.x, self.h0, c0, tuple(self.params), taps)
            if mode != "infer":
                out.sum().backward()
        if taps is not None:
            taps.finalize()
            assert taps.filled_backward
        self.zero()

    def torch(self, mode: str) -> None:
        with torch.set_grad_enabled(mode != "infer"):
            out, _ = self.module(self.x)
            if mode != "infer":
                out.sum().backward()
        self.zero()


ENGINE = ["fused"]  # set by --engine


def run_engine(name: str, cell: str, x, h0, c0, params: tuple, taps) -> torch.Tensor:
    """One layer direction through engine ``name``; "gpu" (Triton kernels) is called directly."""
    if name != "gpu":
        return engine.run(cell, x, h0, c0, params, engine=name, taps=taps)[0]
    from lstmlab.engine import gpu

    states = (h0, c0) if cell == "lstm" else (h0,)
    return getattr(gpu, cell)(x, *states, *params, taps=taps)[0]


TIMER = [time.perf_counter]  # --timer thread: time.thread_time (per-thread CPU time, with --threads 1)


def time_pair(case: Case, mode: str, repeats: int, warmup: int) -> tuple[float, float, float, float]:
    """Medians (and minima) in ms of alternating lstmlab / torch runs."""
    clock = TIMER[0]
    for _ in range(warmup):
        case.lstmlab(mode)
        case.torch(mode)
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((case.lstmlab, ta), (case.torch, tb)):
            sync(case.device)
            t0 = clock()
            fn(mode)
            sync(case.device)
            acc.append(1e3 * (clock() - t0))
    return statistics.median(ta), statistics.median(tb), min(ta), min(tb)


def saved_bytes(fn, exclude) -> int:
    seen: dict[int, int] = {}
    skip = {t.untyped_storage().data_ptr() for t in exclude}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def peak_bytes(fn, device: str) -> int:
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak


def memory(case: Case) -> dict:
    exclude = [case.x, *case.params]
    res = {}
    for name, fn in (("lstmlab", lambda: case.lstmlab("train_taps")), ("torch", lambda: case.torch("train"))):
        res[f"{name}_saved_mb"] = saved_bytes(fn, exclude) / 2**20
        res[f"{name}_peak_mb"] = peak_bytes(fn, case.device) / 2**20
    res["peak_ratio"] = res["lstmlab_peak_mb"] / max(res["torch_peak_mb"], 1e-9)
    res["saved_ratio"] = res["lstmlab_saved_mb"] / max(res["torch_saved_mb"], 1e-9)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--quick", action="store_true", help="small configs, fewer repeats, no memory")
    ap.add_argument("--steps-scaling", action="store_true", help="LSTM train_taps at 100/1000/10000 steps")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--modes", default="train_taps,train,infer")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--timer", default="wall", choices=["wall", "thread"],
                    help="thread: per-thread CPU time (robust on a loaded machine; needs --threads 1)")
    ap.add_argument("--held-out", action="store_true", help="shapes not in the default list (HELD_OUT)")
    ap.add_argument("--configs", default="", help='"B,I,H,T;B,I,H,T" instead of the default shapes')
    ap.add_argument("--engine", default="fused", choices=["fused", "auto", "gpu", "loop"],
                    help="lstmlab engine to time (gpu: the Triton kernels of lstmlab.engine.gpu)")
    args = ap.parse_args(argv)
    ENGINE[0] = args.engine
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.timer == "thread":
        if torch.get_num_threads() != 1:
            print("speed.py: --timer thread needs --threads 1", file=sys.stderr)
            return 2
        TIMER[0] = time.thread_time
    if args.device == "cuda" and not torch.cuda.is_available():
        print("speed.py: CUDA is not available", file=sys.stderr)
        return 2
    if args.engine in ("fused", "auto") and engine.fused_module() is None:
        print("speed.py: the fused engine could not be built", file=sys.stderr)
        return 2
    repeats = max(args.repeats, 10)
    configs = HELD_OUT if args.held_out else CONFIGS
    if args.configs:
        configs = [tuple(int(v) for v in c.split(",")) for c in args.configs.split(";")]
    if args.quick:
        configs = [(16, 8, 32, 50), (32, 16, 64, 50)]
        repeats = 10
    modes = args.modes.split(",")
    cells = args.cells.split(",")
    do_mem = not (args.quick or args.no_memory)
    rows = []

    def emit(row: dict) -> None:
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            extra = ""
            if "peak_ratio" in row:
                extra = (f"  peak {row['lstmlab_peak_mb']:.1f}/{row['torch_peak_mb']:.1f} MB"
                         f" ({row['peak_ratio']:.2f}x)  saved {row['lstmlab_saved_mb']:.1f}/"
                         f"{row['torch_saved_mb']:.1f} MB ({row['saved_ratio']:.2f}x)")
            print(f"{row['cell']:5s} {row['mode']:10s} {str(tuple(row['config'])):22s} "
                  f"lstmlab {row['lstmlab_ms']:9.2f} ms  torch {row['torch_ms']:9.2f} ms  "
                  f"ratio {row['ratio']:5.2f}  (min {row['lstmlab_min_ms']:.2f}/{row['torch_min_ms']:.2f})"
                  f"{extra}", flush=True)

    header = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "timer": args.timer, "engine": args.engine,
              "fused": engine.fused_module().configure() if args.device == "cpu" and args.engine != "gpu" else {}}
    if args.device == "cuda":
        header["gpu"] = torch.cuda.get_device_name()
    if args.json:
        print(json.dumps({"header": header}), flush=True)
    else:
        print(f"# {header}  (batch, input, hidden, steps); ratio = lstmlab / torch; median of {repeats}")

    if args.steps_scaling:
        for steps in (100, 1000, 10000):
            case = Case("lstm", (16, 32, 64, steps), args.device)
            la, tb, la_min, tb_min = time_pair(case, "train_taps", 10, 1)
            emit({"cell": "lstm", "mode": "train_taps", "config": [16, 32, 64, steps], "lstmlab_ms": la,
                  "torch_ms": tb, "ratio": la / tb, "lstmlab_min_ms": la_min, "torch_min_ms": tb_min,
                  "per_step_us": 1e3 * la / steps})
        return 0

    for cell in cells:
        for mode in modes:
            ratios = []
            for cfg in configs:
                case = Case(cell, cfg, args.device)
                la, tb, la_min, tb_min = time_pair(case, mode, repeats, args.warmup)
                row = {"cell": cell, "mode": mode, "config": list(cfg), "lstmlab_ms": la, "torch_ms": tb,
                       "ratio": la / tb, "lstmlab_min_ms": la_min, "torch_min_ms": tb_min}
                if do_mem and mode == "train_taps":
                    row.update(memory(case))
                ratios.append(la / tb)
                emit(row)
            geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
            summary = {"cell": cell, "mode": mode, "summary": True, "geomean_ratio": geo,
                       "max_ratio": max(ratios)}
            if args.json:
                print(json.dumps(summary), flush=True)
            else:
                print(f"{cell:5s} {mode:10s} geometric mean ratio {geo:.3f}, max {max(ratios):.3f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
