"""What every ``lstmlab`` subcommand does alike: one error line with exit 2, and running it alone.

Subcommand modules (``demo``, ``run.cli``, ``doctor.cli``, ``generate``, ``report.cli``, ...) import
this small module; it imports nothing from lstmlab, so it never closes an import cycle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def refuse(command: str, exc: BaseException, args: argparse.Namespace, *, speak: bool = True) -> int:
    """Exit code 2 with one line ``lstmlab COMMAND: error: ...`` on stderr (re-raised under ``--debug``)."""
    if getattr(args, "debug", False):
        raise exc
    text = str(exc).strip()
    if speak:
        print(f"lstmlab {command}: error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
    return 2


def standalone(command: str, add_parser: Callable, run: Callable[[argparse.Namespace], int],
               argv: list[str] | None = None) -> int:
    """Run one subcommand as ``python -m lstmlab.MODULE ARGS`` (or from a test) with the CLI's parser."""
    parser = argparse.ArgumentParser(prog="lstmlab")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args([command] + list(sys.argv[1:] if argv is None else argv)))
