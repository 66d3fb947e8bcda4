"""The architecture, checked: the core is sans I/O."""

from __future__ import annotations

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
