"""``import lstmlab as ll``: the public subpackages are reachable, nothing heavy is imported, no
function hides a module, and the package is free of import cycles."""

from __future__ import annotations

import ast
import importlib
import json
import os
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import lstmlab as ll

SUBPACKAGES = ("cells", "data", "diagnostics", "engine", "reference", "report", "tune")
# Known: lstmlab.diagnostics re-exports the function diagnose over its module diagnose.py (owned elsewhere).
KNOWN_SHADOWS = {"lstmlab.diagnostics.diagnose"}


def _fresh_import(code: str) -> dict:
    src = str(Path(ll.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", "import json, sys\nimport lstmlab as ll\n" + code],
                         capture_output=True, text=True, env=env, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_subpackages_reachable_after_plain_import_without_heavy_dependencies():
    got = _fresh_import(
        f"names = {SUBPACKAGES!r}\n"
        "splits = ll.data.load('adding', length=8, n_train=4, n_val=2, n_test=2)\n"
        "print(json.dumps({'kinds': [type(getattr(ll, n)).__name__ for n in names],\n"
        "                  'shape': list(splits.train.x.shape), 'tune': callable(ll.tune.tune),\n"
        "                  'heavy': sorted(m for m in ('matplotlib', 'optuna', 'tensorboard', 'pandas')\n"
        "                                  if m in sys.modules)}))")
    assert got == {"kinds": ["module"] * len(SUBPACKAGES), "shape": [4, 8, 2], "tune": True, "heavy": []}


def test_all_names_exist_and_trace_and_tune_are_what_they_say():
    assert len(set(ll.__all__)) == len(ll.__all__)
    missing = [n for n in ll.__all__ if not hasattr(ll, n)]
    assert not missing
    assert set(SUBPACKAGES) <= set(ll.__all__)
    assert isinstance(ll.tune, types.ModuleType) and ll.tune.__name__ == "lstmlab.tune"
    assert callable(ll.trace) and ll.trace.__module__ == "lstmlab.tracing"


def test_no_function_shadows_a_module():
    shadows = []
    for info in pkgutil.walk_packages(ll.__path__, "lstmlab."):
        if info.name.endswith("__main__"):
            continue  # running it is the CLI
        mod = importlib.import_module(info.name)
        parent, _, name = info.name.rpartition(".")
        attr = getattr(sys.modules[parent], name, None)
        if attr is not mod:
            shadows.append(f"{info.name} is hidden by {type(attr).__name__} {getattr(attr, '__qualname__', '')}")
    assert sorted(s for s in shadows if s.split()[0] not in KNOWN_SHADOWS) == []


def _import_graph() -> dict[str, set[str]]:
    """lstmlab module -> the lstmlab modules it imports anywhere in its source (functions included)."""
    root = Path(ll.__file__).parent
    mods = {".".join(("lstmlab",) + p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        base = m.split(".") if path.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module or ""
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {t for t in names if t in mods and t != m and not m.startswith(t + ".")}
    return graph


def test_no_import_cycles_between_modules():
    """Module-level and function-level imports alike; a package importing its own children is no cycle."""
    graph = _import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a]
                    if not (b.startswith(a + ".") or a.startswith(b + ".")) and reaches(b, a))
    assert cycles == []
