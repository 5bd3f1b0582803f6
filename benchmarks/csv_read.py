"""CSV reading before/after: a generated ~100 MB numeric CSV and one-row files with many columns.

"Before" is ``src/lstmlab/data/csv_io.py`` as committed on a git ref (default ``main``), loaded into a
temporary module; "after" is the working tree's. Both read the file and convert every value
column to float64 (what ``csv-series`` does). Prints a Markdown table; the values are checked equal.

    PYTHONPATH=src python benchmarks/csv_read.py [--mb 100] [--ref main] [--wide 10000,20000,40000]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from lstmlab.data import csv_io as new

ROOT = Path(__file__).resolve().parents[1]


def old_module(ref: str) -> types.ModuleType:
    """``csv_io.py`` of ``ref`` as a module (its relative imports pointed at the installed package)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:src/lstmlab/data/csv_io.py"], check=True,
                         capture_output=True, text=True).stdout
    src = src.replace("from .base import", "from lstmlab.data.base import")
    spec = importlib.util.spec_from_loader("csv_io_before", loader=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    exec(compile(src, f"{ref}:csv_io.py", "exec"), mod.__dict__)
    return mod


def make_long(path: Path, mb: float, cols: int = 8, seed: int = 0) -> int:
    """A CSV of about ``mb`` megabytes: an integer time column and ``cols`` float columns."""
    rng = np.random.default_rng(seed)
    rows = int(mb * 1e6 / (cols * 10 + 8))
    with open(path, "w") as f:
        f.write("t," + ",".join(f"v{j}" for j in range(cols)) + "\n")
        block = 100_000
        for start in range(0, rows, block):
            n = min(block, rows - start)
            data = np.column_stack([np.arange(start, start + n), rng.normal(size=(n, cols))])
            np.savetxt(f, data, delimiter=",", fmt=["%d"] + ["%.6f"] * cols)
    return rows


def make_wide(path: Path, k: int) -> None:
    path.write_text(",".join(f"c{j}" for j in range(k)) + "\n" + ",".join(str(j % 97) for j in range(k)) + "\n")


def read_old(mod: types.ModuleType, path: Path, cols: list[str]) -> np.ndarray:
    t = mod.read_table(path)
    return np.stack([t.numeric(c) for c in cols], axis=1)


def read_new(path: Path, cols: list[str]) -> np.ndarray:
    return new.read_table(path, text_columns=[0]).numeric_block(cols)


def read_wide(path: Path, names: list[str]) -> np.ndarray:
    return new.read_table(path).numeric_block(names)


def timed(fn, *args) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--ref", default="main")
    ap.add_argument("--wide", default="10000,20000,40000")
    args = ap.parse_args(argv)
    old = old_module(args.ref)
    new.pandas()  # imported once before timing (lstmlab imports it on first use)
    pyarrow = importlib.util.find_spec("pyarrow") is not None
    rows = [f"| file | before ({args.ref}) s | after s | speed-up |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "long.csv"
        n = make_long(long, args.mb)
        cols = [f"v{j}" for j in range(8)]
        after, b = timed(read_new, long, cols)
        before, a = timed(read_old, old, long, cols)
        np.testing.assert_array_equal(a, b)
        size = long.stat().st_size / 1e6
        rows.append(f"| {size:.0f} MB, {n:,} rows x 9 columns | {before:.1f} | {after:.1f} | {before / after:.1f}x |")
        long.unlink()
        for k in (int(v) for v in args.wide.split(",") if v):
            wide = Path(tmp) / f"wide{k}.csv"
            make_wide(wide, k)
            names = [f"c{j}" for j in range(k)]
            after, b = timed(read_wide, wide, names)
            before, a = timed(read_old, old, wide, names)
            np.testing.assert_array_equal(a, b)
            rows.append(f"| 1 row x {k:,} columns | {before:.1f} | {after:.2f} | {before / after:.0f}x |")
    print("\n".join(rows))
    print(f"\npython {sys.version.split()[0]}, pandas {new.pandas().__version__}, pyarrow "
          f"{'installed (not used: the C engine is used)' if pyarrow else 'not installed'}")


if __name__ == "__main__":
    main()
