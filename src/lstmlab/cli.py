"""The ``lstmlab`` command: demo, train, diagnose, generate (and more as they land).

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and a ``run(args)``
returning the exit code.  User-input errors exit with code 2 and one line, no traceback,
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .cliutil import refuse
from .validation import InputError

SUBCOMMANDS = ("lstmlab.demo", "lstmlab.run.cli", "lstmlab.doctor.cli", "lstmlab.diagnostics.cli",
               "lstmlab.generate", "lstmlab.tune", "lstmlab.report.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstmlab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("lstmlab"):
                continue  # subcommand not part of this build
            raise
        if hasattr(mod, "add_parser"):
            mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if not getattr(args, "command", None) or not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (InputError, ValueError, FileNotFoundError, KeyError) as exc:
        return refuse(args.command, exc, args)
    except KeyboardInterrupt:
        print(f"lstmlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
