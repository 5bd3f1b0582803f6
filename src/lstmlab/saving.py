"""Model files: one safetensors file, config and optimizer metadata as JSON, no pickle.

Layout: tensors ``model/<state key>`` and ``optimizer/<param index>/<state key>``; the
safetensors metadata holds ``lstmlab_format``, ``config`` (the architecture), ``compile``
(loss, metrics, clipping, optimizer spec) and ``optimizer`` (param groups and non-tensor
state).  Files are written atomically (:func:`lstmlab.run.files.atomic_write`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .run.files import atomic_write

FORMAT = "1"


class ModelFileError(ValueError):
    """A model file that is missing, truncated, corrupt or from another program."""


def _jsonable(v):
    if isinstance(v, torch.Tensor):
        return {"__tensor__": v.tolist()}
    if isinstance(v, tuple):
        return {"__tuple__": [_jsonable(x) for x in v]}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def _unjson(v):
    if isinstance(v, dict):
        if "__tuple__" in v:
            return tuple(_unjson(x) for x in v["__tuple__"])
        return {k: _unjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unjson(x) for x in v]
    return v


def pack(model, include_optimizer: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"lstmlab_format": FORMAT, "config": json.dumps(model.get_config()),
            "compile": json.dumps(model.compile_config())}
    opt = getattr(model, "optimizer", None)
    if include_optimizer and opt is not None:
        sd = opt.state_dict()
        other: dict = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optimizer/{idx}/{k}"] = v.detach().cpu().contiguous().clone()
                else:
                    other.setdefault(str(idx), {})[k] = _jsonable(v)
        meta["optimizer"] = json.dumps({"param_groups": _jsonable(sd["param_groups"]), "other": other,
                                        "tensor_steps": sorted(str(i) for i in sd["state"])})
    return tensors, meta


def save(model, path: str | os.PathLike, include_optimizer: bool = True) -> None:
    tensors, meta = pack(model, include_optimizer)
    atomic_write(path, safetensors_bytes(tensors, metadata=meta))


def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and sanity-check a model file; errors name the file and what is wrong."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model file {str(p)!r}: no such file")
    if p.is_dir():
        raise ModelFileError(f"model file {str(p)!r}: expected a file, got a directory")
    try:
        tensors = load_file(str(p))
        from safetensors import safe_open

        with safe_open(str(p), "pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"model file {str(p)!r}: not a readable lstmlab model "
                             f"(truncated or corrupt: {exc})") from None
    if meta.get("lstmlab_format") != FORMAT or "config" not in meta:
        raise ModelFileError(f"model file {str(p)!r}: expected lstmlab format {FORMAT}, got metadata keys "
                             f"{sorted(meta)}")
    return tensors, meta


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict | None:
    if "optimizer" not in meta:
        return None
    info = json.loads(meta["optimizer"])
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optimizer/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, extra in info["other"].items():
        state.setdefault(int(idx), {}).update(_unjson(extra))
    return {"state": state, "param_groups": _unjson(info["param_groups"])}


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
