"""``lstmlab report RUN_DIR [--out FILE]``: write a self-contained HTML report of a run."""

from __future__ import annotations

import argparse

from ..cliutil import refuse
from .html import write_report

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab report``."""
    p = subparsers.add_parser("report", help="write a self-contained HTML report (plots embedded) of a run",
                              description=__doc__.splitlines()[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `lstmlab train` or `demo`")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="where to write the HTML (default RUN_DIR/report.html)")
    p.add_argument("--examples", type=int, default=3, metavar="N",
                   help="how many data examples to show in the attention figures (default 3)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point: 0 written, 2 bad input (no such run directory, bad --examples)."""
    try:
        if args.examples < 1:
            raise ValueError(f"--examples: expected a positive integer, got {args.examples}")
        path = write_report(args.run_dir, out=args.out, examples=args.examples)
    except (FileNotFoundError, ValueError, OSError) as exc:
        return refuse("report", exc, args)
    print(f"wrote {path}")
    return 0
