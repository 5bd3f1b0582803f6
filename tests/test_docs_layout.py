"""The README's Layout section and docs/architecture.md name every package of the source tree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "lstmlab"


def _packages() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _layout() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


@pytest.mark.parametrize("package", _packages())
def test_readme_layout_names_every_package(package: str) -> None:
    assert f"src/lstmlab/{package}/" in _layout(), f"README Layout does not list src/lstmlab/{package}/"


@pytest.mark.parametrize("package", _packages())
def test_architecture_doc_names_every_package(package: str) -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"{package}/" in text, f"docs/architecture.md does not mention {package}/"


def test_layout_names_only_paths_that_exist() -> None:
    for path in re.findall(r"^(src/lstmlab/\S+)", _layout(), flags=re.M):
        assert (ROOT / path.rstrip("/")).exists(), f"README Layout lists {path}, which does not exist"
