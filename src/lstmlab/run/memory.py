"""Will the model fit in memory?  A parameter estimate from the resolved layer specs, the memory
this process can still get, and a refusal that names the size option to lower."""

from __future__ import annotations

import os
from pathlib import Path

from .. import cells
from ..config import ConfigError

__all__ = ["estimate_params", "available_bytes", "check_model_size", "largest_size"]

_SIZE_KEYS = ("units", "output_dim", "input_dim")


def largest_size(specs: list[dict], prefix: str = "model.layers") -> tuple[str | None, int | None]:
    """The key path and value of the largest layer size in the specs (for error messages)."""
    best: tuple[str | None, int | None] = (None, None)
    for i, spec in enumerate(specs or []):
        inner = [(f"{prefix}[{i}]", spec)]
        for sub in ("layer", "backward_layer"):
            if isinstance(spec.get(sub), dict):
                inner.append((f"{prefix}[{i}].{sub}", spec[sub]))
        for path, sp in inner:
            for k in _SIZE_KEYS:
                v = sp.get(k)
                if isinstance(v, int) and not isinstance(v, bool) and (best[1] is None or v > best[1]):
                    best = (f"{path}.{k}", v)
    return best


def _recurrent(kind: str | None, width: int, units: int) -> int:
    """Parameters of one recurrent layer direction (4 gates when the kind is unknown)."""
    cell = cells.BY_LAYER.get(kind or "")
    gates = cell.n_gates if cell is not None else cells.LSTM.n_gates
    return gates * units * (width + units + 2)


def estimate_params(specs: list[dict], n_in: int) -> int:
    """Approximate parameter count of resolved layer specs on ``n_in`` input features (LSTM/GRU/
    SimpleRNN/Bidirectional/Dense/Embedding; other layers count 0 and keep the width)."""
    total, width = 0, int(n_in)
    for spec in specs:
        kind = spec.get("type")
        if kind == "Embedding":
            total += int(spec.get("input_dim") or 0) * int(spec["output_dim"])
            width = int(spec["output_dim"])
        elif kind in cells.BY_LAYER:
            u = int(spec["units"])
            total += _recurrent(kind, width, u)
            width = u
        elif kind == "Bidirectional":
            inner = spec["layer"]
            u = int(inner["units"])
            total += 2 * _recurrent(inner.get("type"), width, u)
            width = 2 * u if spec.get("merge_mode", "concat") == "concat" else u
        elif kind == "Dense":
            u = int(spec["units"])
            total += width * u + u
            width = u
    return total


def available_bytes() -> int | None:
    """Memory this process can still get: MemAvailable (free + reclaimable cache), capped by a cgroup
    v2 limit when there is one; None when unknown (not Linux)."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def check_model_size(cfg: dict, meta: dict, config_path) -> None:
    """Refuse a model whose weights, gradients and optimizer state would not fit in memory."""
    n_in = int(meta.get("n_features") or 1)
    n = estimate_params(cfg["model"]["layers"], n_in)
    itemsize = 8 if cfg["model"].get("dtype") == "float64" else 4
    need = 4 * n * itemsize  # weights, gradients, two Adam moments
    avail = available_bytes()
    if avail is not None and need > avail:
        key, value = largest_size(cfg["model"]["layers"])
        raise ConfigError(f"{config_path}: {key or 'model.layers'}: {value} makes a model of about {n:.3g} "
                          f"parameters ({need / 2**30:.3g} GiB with gradients and optimizer state), "
                          "more than "
                          f"the {avail / 2**30:.3g} GiB of memory available")
