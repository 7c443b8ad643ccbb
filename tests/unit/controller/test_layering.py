"""How the controller's HTTP modules depend on each other: routes read through ``Database`` only,
and the app, its routers and the dashboard import without a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import edgefleet.controller

pytestmark = pytest.mark.unit

CONTROLLER = Path(edgefleet.controller.__file__).resolve().parent
HTTP_MODULES = [
    *sorted((CONTROLLER / "routers").glob("*.py")),
    CONTROLLER / "api.py",
    CONTROLLER / "dependencies.py",
    CONTROLLER / "http_errors.py",
    CONTROLLER / "context.py",
]
_SQL_MODULES = (
    "edgefleet.controller.dal.sql",
    "edgefleet.controller.dal.sqlite",
    "edgefleet.controller.dal.postgres",
)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", HTTP_MODULES, ids=lambda p: p.name)
def test_http_modules_read_through_the_database_interface(path: Path) -> None:
    imports = _imports(path)
    assert [m for m in imports if m.startswith(_SQL_MODULES)] == []
    assert "importlib" not in imports
    source = path.read_text(encoding="utf-8")
    assert "._conn(" not in source
    assert "_principal" not in source


@pytest.mark.parametrize(
    "module",
    [
        "edgefleet.controller.routers.dashboard",
        "edgefleet.controller.routers",
        "edgefleet.controller.dependencies",
        "edgefleet.controller.api",
    ],
)
def test_each_http_module_imports_first_without_a_cycle(module: str) -> None:
    # A fresh interpreter: an import cycle shows only when the module is the first one loaded.
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
