"""The venue's sans-I/O modules (the gatherer's session, keys, wire structs, the emulator's wire formats) stay free
of asyncio, sockets, websockets, threads and clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import venues.kalshi

PURE = ["protocol", "snapshots", "anchors", "keys", "messages", "emulator_wire"]
PURE += ["emulator/__init__", "emulator/bodies", "emulator/levels", "emulator/protocol", "emulator/rest"]
FORBIDDEN = {"asyncio", "socket", "websockets", "picows", "threading", "time", "confluent_kafka", "psycopg"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    path = Path(venues.kalshi.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    bad = imported & FORBIDDEN
    assert not bad, f"{module}.py imports {sorted(bad)}"
