"""The pure core does no I/O, and dependencies point one way: bin -> capture -> jobstore."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = ["jobstore/domain.py", "jobstore/routing.py", "jobstore/spec.py", "capture/records.py"]
IO_MODULES = {"psycopg", "httpx", "click", "socket", "subprocess", "requests"}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", [m for m in PURE if (ROOT / m).exists()])
def test_pure_modules_import_no_io(module):
    assert not imported(ROOT / module) & IO_MODULES


def test_jobstore_never_imports_capture():
    for path in (ROOT / "jobstore").rglob("*.py"):
        assert "capture" not in imported(path), path


def test_bin_scripts_are_thin():
    for path in (ROOT / "bin").iterdir():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert len(lines) <= 12, f"{path.name} holds logic; move it into a package"
