"""``lstmlab diagnose MODEL_FILE|RUN_DIR --data SOURCE [--option k=v ...] [--out DIR]``.

Loads the model, takes one batch of the data, runs :func:`lstmlab.diagnose` and prints the
verdict, the reasoning, the table and the remedies; writes ``gradients.png`` / ``.svg`` and
``report.json`` into ``--out`` (default: ``RUN_DIR/diagnostics`` or ``<model>_diagnostics``).
A RUN_DIR written by ``lstmlab train`` supplies its own data source (``config.resolved.json``).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load
from ..model import load_model
from ..run import RunDir
from .diagnose import diagnose


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab diagnose``."""
    p = subparsers.add_parser(
        "diagnose", help="verdict (vanishing / exploding / healthy) and remedies for a model or run",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: lstmlab diagnose runs/adding --split test\n"
               "         lstmlab diagnose model.lstmlab --data adding --option length=200")
    p.add_argument("target", metavar="MODEL_FILE|RUN_DIR",
                   help=f"a .lstmlab model file, or a run directory holding {RunDir.MODEL} or "
                        f"{RunDir.CHECKPOINTS}/{RunDir.LAST}")
    p.add_argument("--data", metavar="SOURCE",
                   help="data source for lstmlab.data.load (default: the run's own)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="data option, repeatable (values parsed as JSON when they can be: 50, 0.1, true)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train",
                   help="split to take the batch from")
    p.add_argument("--batch-size", type=int, default=64, help="sequences in the batch (default 64)")
    p.add_argument("--loss", help="loss name when the model file stores none (default: from the data kind)")
    p.add_argument("--out", metavar="DIR", help=f"folder for {' and '.join(RunDir.DIAGNOSE_FIGURES)} and "
                                                f"{RunDir.DIAGNOSE_JSON}")
    p.add_argument("--json", action="store_true", help="print the full report as JSON instead of text")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["length=50", "name=x"]`` -> ``{"length": 50, "name": "x"}`` (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option: expected KEY=VALUE, got {item!r}")
        raw = raw.strip()
        low = raw.lower()
        if low in ("true", "false"):
            value: Any = low == "true"
        elif low in ("none", "null"):
            value = None
        else:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
        out[key.strip()] = value
    return out


def resolve_target(target: str) -> tuple[Path, Path | None]:
    """(model file, run dir or None) for a MODEL_FILE or RUN_DIR argument."""
    path = Path(target)
    if path.is_dir():
        rd = RunDir(path)
        names = (rd.model, rd.last)
        for name in names:
            if name.is_file():
                return name, path
        raise FileNotFoundError(f"{target}: no {' or '.join(str(n.relative_to(path)) for n in names)} in this "
                                "run directory")
    if not path.exists():
        raise FileNotFoundError(f"{target}: no such model file or run directory")
    return path, None


def _run_config(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    p = RunDir(run_dir).config_json
    if p.is_file():
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: not valid JSON ({exc})") from None
    return {}


def _default_loss(meta: dict, y) -> str | None:
    kind = meta.get("kind")
    if kind == "regression":
        return "mse"
    if kind is not None or getattr(y, "dtype", None) is not None and y.dtype.kind in "iu":
        return "sparse_categorical_crossentropy"
    return None


def run(args: argparse.Namespace) -> int:
    """Entry point: 0 after printing the report (whatever the verdict); errors raise for the main CLI."""
    model_path, run_dir = resolve_target(args.target)
    cfg = _run_config(run_dir)
    options = parse_options(args.option)
    source = args.data
    if source is None:
        data_cfg = dict(cfg.get("data") or {})
        source = data_cfg.pop("source", None)
        if source is None:
            raise ValueError("--data: missing; name a data source (e.g. --data adding), or give a run "
                             f"directory whose {RunDir.CONFIG_JSON} has a [data] source")
        options = {**{k: v for k, v in data_cfg.items() if v is not None}, **options}
    if args.batch_size < 1:
        raise ValueError(f"--batch-size: expected a positive integer, got {args.batch_size}")
    splits = load(source, **options)
    part = getattr(splits, args.split)
    if len(part) == 0:
        part = splits.train
    n = min(args.batch_size, len(part))
    if n == 0:
        raise ValueError(f"--data {source}: the data has no sequences")
    x, y = part.x[:n], part.y[:n]
    lengths = None if part.lengths is None else np.asarray(part.lengths[:n])
    model = load_model(model_path)
    loss = None
    if getattr(model, "loss_name", None) is None:
        loss = args.loss or ((cfg.get("train") or {}).get("loss")) or _default_loss(splits.meta, y)
        if loss is None:
            raise ValueError("--loss: the model file stores no loss; give one (e.g. --loss mse)")
    elif args.loss:
        loss = args.loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = diagnose(model, x, y, loss=loss, lengths=lengths)
    out = RunDir(Path(args.out) if args.out else (RunDir(run_dir).diagnostics if run_dir is not None
                                                 else model_path.with_name(model_path.stem + "_diagnostics")))
    figures = [out.path(name) for name in out.DIAGNOSE_FIGURES]
    fig = report.plot()
    for path in figures:
        out.save_figure(fig, path, dpi=110 if path.suffix == ".png" else None)
    out.write_text(out.path(out.DIAGNOSE_JSON), json.dumps(report.to_dict(), indent=1, allow_nan=False))
    if args.json:
        print(json.dumps(report.to_dict(), allow_nan=False))
        return 0
    print(f"model: {model_path}   data: {source} ({args.split}, {n} sequences)")
    print(report.explain())
    print()
    print(report.table())
    print()
    print(f"figures: {', '.join(str(p) for p in figures)}; report: {out.path(out.DIAGNOSE_JSON)}")
    return 0
