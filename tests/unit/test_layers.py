"""The tools (CLI, devstack, document generators) and the bench stand on the
services and the library: neither of those may import them, or a service
would ship with, and start up through, the operator's tools."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPPER = ("tools", "bench")


def imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def upward_imports(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for module in imported_modules(path.read_text(encoding="utf-8")):
            if module.split(".")[0] in UPPER:
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


@pytest.mark.parametrize("package", ["lapor", "services"])
def test_library_and_services_import_no_tool(package: str) -> None:
    assert upward_imports(package) == []


def test_the_scan_sees_a_tool_import() -> None:
    source = "import tools.devstack\nfrom bench.run import main\nfrom lapor import places\n"
    assert imported_modules(source) == {"tools.devstack", "bench.run", "lapor"}


def test_every_tool_module_is_in_tools() -> None:
    moved = ("cli", "accounts_cli", "hotspots_cli", "backup_cli", "backup", "keys")
    moved += ("terminal", "devstack", "openapi", "asyncapi")
    assert [name for name in moved if (ROOT / "lapor" / f"{name}.py").exists()] == []
    assert (ROOT / "tools" / "deadletters_cli.py").exists()
    assert not (ROOT / "services" / "deadletters" / "cli.py").exists()
