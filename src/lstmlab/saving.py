"""Model files: one safetensors file, config and optimizer metadata as JSON, no pickle.

Layout: tensors ``model/<state key>`` and ``optimizer/<param index>/<state key>``; the
safetensors metadata holds ``lstmlab_format``, ``config`` (the architecture), ``compile``
(loss, metrics, clipping, optimizer spec) and ``optimizer`` (param groups and non-tensor
state).  Files are written atomically (:func:`lstmlab.run.files.atomic_write`).

A model file may come from anyone, so reading is bounded before anything is loaded: the header
(at most :data:`MAX_HEADER_BYTES`) is parsed first and the stored tensors may hold at most
:data:`MAX_ELEMENTS` elements in all; :func:`read_header` gives their shapes without reading data.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from .run.files import atomic_write

FORMAT = "1"
MAX_HEADER_BYTES = 16 * 2**20
"""Largest safetensors header (JSON: tensor table and metadata) a model file may have."""
MAX_ELEMENTS = 2**30
"""Most tensor elements (weights and optimizer state together) a model file may store (4 GiB at float32)."""
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class ModelFileError(ValueError):
    """A model file that is missing, truncated, corrupt, from another program or asks for too much."""


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
        if "__tuple__" in v and isinstance(v["__tuple__"], list):
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


# ---------------------------------------------------------------------------------------------
# reading: header first (bounded), data only once the header is accepted
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """What a model file declares, read without loading any tensor data."""

    path: Path
    meta: dict[str, str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]

    @property
    def where(self) -> str:
        return f"model file {str(self.path)!r}"

    def elements(self, prefix: str = "") -> int:
        return sum(math.prod(s) for k, s in self.shapes.items() if k.startswith(prefix))

    def largest(self, prefix: str = "") -> int:
        return max((math.prod(s) for k, s in self.shapes.items() if k.startswith(prefix)), default=0)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (messages here are one line)."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def printable(text) -> str:
    """A key from a file, fit for a one-line message: as is when short and printable, else its repr."""
    text = str(text)
    return text if text.isprintable() and len(text) <= 80 else repr(text)[:80]


def _corrupt(where: str, why: BaseException | str) -> ModelFileError:
    why = first_line(why) if isinstance(why, BaseException) else why
    return ModelFileError(f"{where}: not a readable lstmlab model (truncated or corrupt: {why})")


def _header_size(p: Path, where: str) -> int:
    """The JSON header's length from the first 8 bytes, checked against the cap and the file size."""
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelFileError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if n < 2 or n + 8 > size:
        raise _corrupt(where, f"{size} bytes, header length {n}")
    if n > MAX_HEADER_BYTES:
        raise ModelFileError(f"{where}: header of {n} bytes, expected at most {MAX_HEADER_BYTES} "
                             "(lstmlab.saving.MAX_HEADER_BYTES)")
    return n


def read_header(path: str | os.PathLike) -> Header:
    """Shapes, dtypes and metadata of a model file, checked against the caps; no tensor data is read."""
    p = Path(path)
    where = f"model file {str(p)!r}"
    if not p.exists():
        raise FileNotFoundError(f"{where}: no such file")
    if p.is_dir():
        raise ModelFileError(f"{where}: expected a file, got a directory")
    if not p.is_file():
        raise ModelFileError(f"{where}: expected a regular file, got a device, pipe or socket")
    _header_size(p, where)
    try:
        with safe_open(str(p), "pt") as fh:
            meta = dict(fh.metadata() or {})
            slices = {k: fh.get_slice(k) for k in fh.keys()}
            shapes = {k: tuple(int(n) for n in s.get_shape()) for k, s in slices.items()}
            dtypes = {k: str(s.get_dtype()) for k, s in slices.items()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise _corrupt(where, exc) from None
    if meta.get("lstmlab_format") != FORMAT or "config" not in meta:
        raise ModelFileError(f"{where}: expected lstmlab format {FORMAT}, got metadata keys {sorted(meta)}")
    header = Header(p, meta, shapes, dtypes)
    if header.elements() > MAX_ELEMENTS:
        raise ModelFileError(f"{where}: stores {header.elements()} tensor elements, expected at most "
                             f"{MAX_ELEMENTS} (lstmlab.saving.MAX_ELEMENTS)")
    return header


def read_tensors(header: Header) -> dict[str, torch.Tensor]:
    """The tensors of a file whose header was accepted (each checked against that header)."""
    out = {}
    try:
        with safe_open(str(header.path), "pt") as fh:
            if set(fh.keys()) != set(header.shapes):
                raise ModelFileError(f"{header.where}: changed while it was read")
            for key, shape in header.shapes.items():
                out[key] = fh.get_tensor(key)
                if tuple(out[key].shape) != shape:
                    raise ModelFileError(f"{header.where}: changed while it was read")
    except (SafetensorError, OSError, RuntimeError, TypeError) as exc:
        raise _corrupt(header.where, exc) from None
    return out


def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and sanity-check a model file; errors name the file and what is wrong."""
    header = read_header(path)
    return read_tensors(header), header.meta


def parse_json(meta: dict[str, str], key: str, where: str, default: str | None = None) -> object:
    """``json.loads`` of a metadata entry; any failure (bad JSON, nesting too deep) names the file and key."""
    text = meta.get(key, default)
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{where}: {key}: not valid JSON ({type(exc).__name__}: {first_line(exc)})") from None


def _plain(v) -> bool:
    """A hyper-parameter value torch can take from a file: a scalar, a string or a tuple of numbers."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    return isinstance(v, (tuple, list)) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _index(text, where: str) -> int:
    if not isinstance(text, str) or not text.isdigit() or len(text) > 9:
        raise ModelFileError(f"{where}: expected a parameter index, got {text!r}")
    return int(text)


def _check_group(group, where: str) -> dict:
    if not isinstance(group, dict):
        raise ModelFileError(f"{where}: expected an object, got {group!r:.80}")
    params = group.get("params")
    if not isinstance(params, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                               for i in params):
        raise ModelFileError(f"{where}.params: expected a list of parameter indices, got {params!r:.80}")
    lr = group.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ModelFileError(f"{where}.lr: expected a positive number, got {lr!r:.80}")
    for k, v in group.items():
        if k != "params" and not _plain(v):
            raise ModelFileError(f"{where}.{printable(k)}: expected a number, string or tuple of numbers, "
                                 f"got {v!r:.80}")
    return group


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, str],
                    where: str = "model file") -> dict | None:
    """The optimizer ``state_dict`` stored in the file, its structure and value types checked."""
    if "optimizer" not in meta:
        return None
    info = parse_json(meta, "optimizer", where)
    if not isinstance(info, dict) or not isinstance(info.get("param_groups"), list) \
            or not isinstance(info.get("other", {}), dict):
        raise ModelFileError(f"{where}: optimizer: expected an object with a param_groups list and an other "
                             "object")
    groups = [_check_group(_unjson(g), f"{where}: optimizer.param_groups[{i}]")
              for i, g in enumerate(info["param_groups"])]
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optimizer/"):
            _, idx, name = (key.split("/", 2) + ["", ""])[:3]
            state.setdefault(_index(idx, f"{where}: tensor {key!r}"), {})[name] = v
    for idx, extra in info.get("other", {}).items():
        extra = _unjson(extra)
        bad = [k for k, v in extra.items() if not _plain(v)] if isinstance(extra, dict) else ["(not an object)"]
        if bad:
            raise ModelFileError(f"{where}: optimizer.other[{idx!r:.40}].{printable(bad[0])}: expected a number "
                                 "or string")
        state.setdefault(_index(idx, f"{where}: optimizer.other"), {}).update(extra)
    return {"state": state, "param_groups": groups}


def model_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
