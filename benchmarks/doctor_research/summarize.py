"""Tables from the probe results (results/*.jsonl): one row per probe, and how early the
validation score ranks the probes of one set the way their final score does.

    python benchmarks/doctor_research/summarize.py results/ucr_tune1.jsonl [...]
    python benchmarks/doctor_research/summarize.py --rank-at 5,10,20,30 results/ucr_tune1.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(paths: list[str]) -> list[dict]:
    rows = []
    for p in paths:
        path = Path(p) if Path(p).exists() else HERE / p
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def test_metric(r: dict) -> tuple[str, float]:
    t = r["test"]
    return ("acc", t["accuracy"]) if "accuracy" in t else ("loss", t["loss"])


def solve_time(r: dict) -> float | None:
    """Seconds until validation first met the task's target (adding < 0.01, copy < 10 % of the
    baseline, temporal order >= 0.99); None for UCR sets or when never met."""
    for c in r["curve"]:
        if r["set"] == "adding" and -c["val_key"] < 0.01:
            return c["t"]
        if r["set"] == "copy" and -c["val_key"] < 0.1 * r["baseline"]:
            return c["t"]
        if r["set"] == "temporal-order-4" and c.get("val_accuracy", 0) >= 0.99:
            return c["t"]
    return None


def table(rows: list[dict]) -> None:
    print("| set | T | tag | treatment | decay@init | steps | wall s | best val | test | solved at s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name, v = test_metric(r)
        dec = r["decay_init"]
        dec = f"{dec:.1f}" if isinstance(dec, (int, float)) else "-"
        st = solve_time(r)
        print(f"| {r['set']} | {r['length']} | {r['tag']} | {r['treatment']} | {dec} | {r['steps']} | "
              f"{r['wall_s']} | {r['best_val']:.4g} | {name} {v:.4g} | {'-' if st is None else st} |")


def val_at(r: dict, t: float) -> float:
    """Best validation key seen up to ``t`` seconds (-inf before the first evaluation)."""
    seen = [c["val_key"] for c in r["curve"] if c["t"] <= t]
    return max(seen) if seen else float("-inf")


def kendall(a: list[float], b: list[float]) -> float:
    n, s, pairs = len(a), 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            x, y = a[i] - a[j], b[i] - b[j]
            if x == 0 or y == 0:
                continue
            pairs += 1
            s += 1 if (x > 0) == (y > 0) else -1
    return s / pairs if pairs else float("nan")


def ranking(rows: list[dict], times: list[float]) -> None:
    """Kendall tau between the best val score up to t and the final test score, and whether the
    probe that leads at t is the one with the best final test score."""
    by_set = defaultdict(list)
    for r in rows:
        by_set[r["set"]].append(r)
    print("| set | probes | " + " | ".join(f"t={t:g}s tau / top ok" for t in times) + " |")
    print("|---|---|" + "---|" * len(times))
    for name, rs in by_set.items():
        final = [test_metric(r)[1] * (1 if test_metric(r)[0] == "acc" else -1) for r in rs]
        cells = []
        for t in times:
            early = [val_at(r, t) for r in rs]
            top = max(range(len(rs)), key=lambda i: early[i])
            ok = final[top] >= max(final) - 1e-9
            cells.append(f"{kendall(early, final):.2f} / {'yes' if ok else 'no'}")
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--rank-at", default="", help="comma-separated seconds: print the early-ranking table")
    a = p.parse_args(argv)
    rows = load(a.files)
    table(rows)
    if a.rank_at:
        print()
        ranking(rows, [float(t) for t in a.rank_at.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
