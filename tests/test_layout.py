"""
The architecture, checked: the core is sans I/O, and no module of C{chat}
imports another that imports it back, even for type checking only.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import chat

PACKAGE = Path(chat.__file__).resolve().parent


def test_the_core_imports_nothing_from_twisted() -> None:
    """Every module of chat.core loads in a fresh interpreter without Twisted."""
    modules = sorted(f"chat.core.{path.stem}" for path in (PACKAGE / "core").glob("[!_]*.py"))
    assert "chat.core.room" in modules
    probe = (
        f"import sys; import {', '.join(modules)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('twisted', 'zope')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    assert loaded.strip() == "[]"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The chat modules that C{path} imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from chat.core import grammar" imports the module chat.core.grammar.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "chat"}


def test_no_import_cycle_in_chat() -> None:
    graph = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}
    graph = {module: {m for m in imported if m in graph} for module, imported in graph.items()}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str], done: set[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in done:
                visit(imported, [*path, imported], done)
        done.add(module)

    finished: set[str] = set()
    for module in sorted(graph):
        if module not in finished:
            visit(module, [module], finished)
    assert cycles == []
