"""The DuckDB examples of docs/data-layer.md run, as written, on an export and return rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archive.export import export
from archive.storage import open_location
from tests.archive.conftest import MIDNIGHT_MS

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[2] / "docs" / "data-layer.md"


def _examples() -> list[str]:
    return re.findall(r"```duckdb\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_duckdb_examples() -> None:
    assert len(_examples()) >= 2


def test_duckdb_examples_run_on_an_export(loaded_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    duckdb = pytest.importorskip("duckdb")
    config, _ = loaded_db
    export(config.postgres.dsn, open_location(str(tmp_path / "export")), MIDNIGHT_MS - 60_000, MIDNIGHT_MS + 60_000)
    monkeypatch.chdir(tmp_path)
    con = duckdb.connect()
    for example in _examples():
        rows = con.execute(example.strip().rstrip(";")).fetchall()
        assert rows, example
