"""``lstmlab doctor CONFIG.toml --run-dir DIR [--budget-minutes M] [--storage URL --study NAME]``.

Exit codes: 0 done (also when the doctor could not help: the report says so), 2 refused (bad
config, data, run directory, budget or storage: one line naming the key, option or file).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from ..cliutil import refuse, standalone
from ..config import ConfigError
from ..run.files import clean
from ..validation import InputError
from .api import DoctorSettings, doctor

__all__ = ["add_parser", "run", "main"]

EPILOG = """\
the doctor trains the config as given for a short probe under the GradientMonitor, diagnoses it,
proposes treatments from the diagnosis and the data (patching, chrono initialisation, readouts,
cell changes, clipping, ...), probes them in an Optuna study (successive halving, selection on
validation data), trains the winner and writes best.toml, doctor.md and report.html into DIR.
  lstmlab train DIR/best.toml --run-dir RUN_DIR      # re-runs the answer to the same score"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab doctor``."""
    p = subparsers.add_parser("doctor", help="diagnose a config, probe treatments, train the winner",
                              description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("config", help="TOML config ([data], [model], [train]) with a validation split")
    p.add_argument("--run-dir", required=True, help="a new directory for the probes, best.toml and the report")
    p.add_argument("--budget-minutes", default="10", metavar="M",
                   help="wall-clock minutes for probing and training the winner (default 10)")
    p.add_argument("--storage", help="SQLAlchemy URL of the probe study (default: sqlite file RUN_DIR/study.db)")
    p.add_argument("--study", help="study name (default: doctor)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def _minutes(text: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"--budget-minutes: expected a positive number of minutes, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"--budget-minutes: expected a positive number of minutes, got {text!r}")
    return v


def _print(*a, **k) -> None:
    print(*a, **{"flush": True, **k})


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab doctor``: 0 done, 2 bad input."""
    try:
        if args.threads is not None and args.threads < 1:
            raise ConfigError(f"--threads: expected a positive integer, got {args.threads}")
        with warnings.catch_warnings():
            if not getattr(args, "debug", False):
                warnings.simplefilter("ignore")
            result = doctor(args.config, args.run_dir, budget_minutes=_minutes(args.budget_minutes),
                            storage=args.storage, study=args.study, out=_print,
                            settings=DoctorSettings(threads=args.threads))
    except (ConfigError, InputError, ValueError, FileNotFoundError, KeyError, OSError) as exc:
        return refuse("doctor", exc, args)
    print(json.dumps(clean(result)), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return standalone("doctor", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
