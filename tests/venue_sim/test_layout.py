"""The sans-I/O modules of the emulator stay free of asyncio, sockets and websockets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import venue_sim

PURE = ["book", "load", "lifecycle", "markets", "faults", "truth", "wire"]  # a venue's protocol: tests/venues/
FORBIDDEN = {"asyncio", "socket", "websockets", "threading", "time"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    path = Path(venue_sim.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    allowed_time = module == "truth"  # periodic flush reads a monotonic clock
    bad = (imported & FORBIDDEN) - ({"time"} if allowed_time else set())
    assert not bad, f"{module}.py imports {sorted(bad)}"
