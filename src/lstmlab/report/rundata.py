"""What the report reads from a run directory (every file optional), and the run's models."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model import load_model
from ..run import RunDir
from . import figures as F

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["RunData", "read_run", "get", "load_models"]


@dataclass
class RunData:
    """What the report found in a run directory (every field may be empty)."""

    run_dir: Path
    config: dict | None = None
    config_text: str | None = None
    config_file: str | None = None
    result: dict | None = None
    metrics: list[dict] = field(default_factory=list)
    health: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    diagnose_files: list[Path] = field(default_factory=list)
    data_meta: dict | None = None
    models: dict[str, Path] = field(default_factory=dict)
    state: dict | None = None
    histories: dict[str, dict[str, list]] = field(default_factory=dict)
    health_groups: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def model_path(self) -> Path | None:
        """The run's (first) model file."""
        return next(iter(self.models.values()), None)


def read_run(run_dir: str | os.PathLike) -> RunData:
    """Collect the files of ``run_dir``; raise ``FileNotFoundError`` if it is not a directory."""
    rd = RunDir(run_dir)
    if not rd.root.is_dir():
        raise FileNotFoundError(f"RUN_DIR: {str(rd.root)!r} is not a directory")
    run = RunData(rd.root)
    _read_config(run, rd)
    for path in (rd.result, rd.demo_result):
        res = rd.read_json(path)
        if isinstance(res, dict):
            run.result = res
            break
    run.metrics = rd.read_jsonl(rd.metrics)
    rows = rd.read_jsonl(rd.health)
    run.health = [r for r in rows if "event" not in r]
    run.events = [r for r in rows if "event" in r] + rd.read_jsonl(rd.events)
    if run.result and isinstance(run.result.get("events"), list):
        run.events += [e for e in run.result["events"] if isinstance(e, dict)]
    run.events.sort(key=lambda e: F._num(e.get("step")) if math.isfinite(F._num(e.get("step"))) else 0.0)
    order = [str(m) for m in (get(run.result, "settings", "models") or [])]
    run.diagnose_files = sorted(rd.diagnose_files(), key=lambda p: next(
        (k for k, m in enumerate(order) if p.stem.endswith(m)), len(order)))
    meta = rd.read_json(rd.data_meta)
    run.data_meta = meta if isinstance(meta, dict) else None
    state = rd.read_json(rd.state)
    run.state = state if isinstance(state, dict) else None
    run.models = _model_files(rd, run.result)
    res = run.result or {}
    hist = res.get("history")
    if isinstance(hist, dict) and hist and all(isinstance(v, dict) for v in hist.values()):
        run.histories = {str(k): v for k, v in hist.items()}
    recs = res.get("records")
    if not run.health and isinstance(recs, dict):
        run.health_groups = {str(k): [r for r in v if isinstance(r, dict)] for k, v in recs.items()
                             if isinstance(v, list)}
    return run


def _read_config(run: RunData, rd: RunDir) -> None:
    """The resolved config (JSON, else parsed from the TOML) and its text for the page."""
    if rd.config_json.is_file():
        run.config = rd.read_json(rd.config_json)
    if rd.config_toml.is_file():
        run.config_text = rd.config_toml.read_text(encoding="utf-8", errors="replace")
        run.config_file = rd.config_toml.name
        if run.config is None:
            try:
                run.config = tomllib.loads(run.config_text)
            except ValueError:
                run.config = None
    elif isinstance(run.config, dict):
        run.config_text, run.config_file = json.dumps(run.config, indent=1), rd.config_json.name


def _model_files(rd: RunDir, result: dict | None) -> dict[str, Path]:
    """The run's model (final, else best or last checkpoint), or the models side by side (e.g.
    ``lstmlab demo``: SimpleRNN.lstmlab, GRU.lstmlab, ...) in the order the result names them."""
    for cand in rd.model_candidates():
        if cand.is_file():
            return {"model": cand}
    found = {p.stem: p for p in rd.model_files()}
    order = list(get(result, "settings", "models") or [])
    models = {k: found[k] for k in order if k in found}
    models.update({k: v for k, v in found.items() if k not in models})
    return models


def get(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...``, or None where a level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def load_models(run: RunData, limit: int = 4) -> tuple[dict[str, Any], dict[str, str]]:
    """Load up to ``limit`` of the run's models (eval mode); errors by name for the others."""
    models, errors = {}, {}
    for name, path in list(run.models.items())[:limit]:
        try:
            try:
                model = load_model(path)
            except Exception:  # noqa: BLE001 - the weights may still load without the optimizer
                model = load_model(path, compile=False)
            model.eval()
            models[name] = model
        except Exception as exc:  # noqa: BLE001
            errors[name] = f"{type(exc).__name__}: {exc}"
    return models, errors
