"""``lstmlab train CONFIG.toml --run-dir DIR``: run a config into a resumable run directory.

What the run directory holds: see :mod:`lstmlab.run.rundir`; how a run goes and resumes: see
:mod:`lstmlab.run.session`.  Exit codes: 0 trained, 1 diverged (the loss or the weights became
NaN/Inf), 2 refused (bad config, data or run directory: one line naming the key or the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from ..cliutil import refuse, standalone
from ..config import ConfigError
from ..distributed import env_rank
from ..report import write_report
from ..validation import InputError
from .files import clean
from .rundir import RunDirError
from .session import train

__all__ = ["add_parser", "run", "main"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab train``."""
    p = subparsers.add_parser("train", help="train a model from a TOML config into a run directory",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example configs: examples/configs/*.toml")
    p.add_argument("config", nargs="?", help="TOML config ([data], [model], [train])")
    p.add_argument("--run-dir", required=True, help="directory for checkpoints, metrics and events")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def _print(*a, **k) -> None:
    print(*a, **k)


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"lstmlab train: warning: {str(message).strip().splitlines()[0]}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab train``: 0 ok, 1 diverged, 2 bad input."""
    main_rank = env_rank() == 0  # under torchrun only rank 0 speaks; the others just exit alike
    try:
        with warnings.catch_warnings():
            if not getattr(args, "debug", False):
                warnings.showwarning = _one_line
            result = train(args.config, args.run_dir, resume=args.resume, out=_print, progress=True)
    except (ConfigError, RunDirError, InputError, ValueError, FileNotFoundError, KeyError, OSError) as exc:
        return refuse("train", exc, args, speak=main_rank)
    if main_rank:
        try:  # the self-contained HTML page of the run; a report problem never fails the training
            print(f"lstmlab train: wrote {write_report(args.run_dir)}", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"lstmlab train: warning: report not written ({type(exc).__name__}: {exc})", file=sys.stderr)
        print(json.dumps(clean(dict(result))), flush=True)
    return 1 if result["status"] == "diverged" else 0


def main(argv: list[str] | None = None) -> int:
    return standalone("train", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
