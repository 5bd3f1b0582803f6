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

MODEL_NAMES = ("model.lstmlab", "checkpoints/last.lstmlab")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab diagnose``."""
    p = subparsers.add_parser(
        "diagnose", help="verdict (vanishing / exploding / healthy) and remedies for a model or run",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: lstmlab diagnose runs/adding --split test\n"
               "         lstmlab diagnose model.lstmlab --data adding --option length=200")
    p.add_argument("target", metavar="MODEL_FILE|RUN_DIR",
                   help="a .lstmlab model file, or a run directory holding model.lstmlab or "
                        "checkpoints/last.lstmlab")
    p.add_argument("--data", metavar="SOURCE",
                   help="data source for lstmlab.data.load (default: the run's own)")
    p.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                   help="data option, repeatable (values parsed as JSON when they can be: 50, 0.1, true)")
    p.add_argument("--split", choices=("train", "val", "test"), default="train",
                   help="split to take the batch from")
    p.add_argument("--batch-size", type=int, default=64, help="sequences in the batch (default 64)")
    p.add_argument("--loss", help="loss name when the model file stores none (default: from the data kind)")
    p.add_argument("--out", metavar="DIR", help="folder for gradients.png/.svg and report.json")
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
        for name in MODEL_NAMES:
            if (path / name).is_file():
                return path / name, path
        raise FileNotFoundError(f"{target}: no {' or '.join(MODEL_NAMES)} in this run directory")
    if not path.exists():
        raise FileNotFoundError(f"{target}: no such model file or run directory")
    return path, None


def _run_config(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    for name in ("config.resolved.json",):
        p = run_dir / name
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
    import numpy as np

    from ..data import load
    from ..model import load_model
    from .diagnose import diagnose

    model_path, run_dir = resolve_target(args.target)
    cfg = _run_config(run_dir)
    options = parse_options(args.option)
    source = args.data
    if source is None:
        data_cfg = dict(cfg.get("data") or {})
        source = data_cfg.pop("source", None)
        if source is None:
            raise ValueError("--data: missing; name a data source (e.g. --data adding), or give a run "
                             "directory whose config.resolved.json has a [data] source")
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
    out = Path(args.out) if args.out else (run_dir / "diagnostics" if run_dir is not None
                                           else model_path.with_name(model_path.stem + "_diagnostics"))
    out.mkdir(parents=True, exist_ok=True)
    report.plot(out / "gradients.png")
    report.plot(out / "gradients.svg")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1, allow_nan=False))
    if args.json:
        print(json.dumps(report.to_dict(), allow_nan=False))
        return 0
    print(f"model: {model_path}   data: {source} ({args.split}, {n} sequences)")
    print(report.explain())
    print()
    print(report.table())
    print()
    print(f"figures: {out / 'gradients.png'}, {out / 'gradients.svg'}; report: {out / 'report.json'}")
    return 0
