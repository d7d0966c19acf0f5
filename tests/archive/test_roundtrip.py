"""`mdpipe demo --export`: export what was loaded, read it back, compare; a broken export is caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import archive.export
from archive.roundtrip import data_range, export_roundtrip
from mdpipe.cli import main
from tests.archive.conftest import MIDNIGHT_MS

pytestmark = pytest.mark.integration


def test_roundtrip_of_a_clean_database(loaded_db, tmp_path: Path) -> None:
    config, rows = loaded_db
    span = data_range(config.postgres.dsn)
    assert span is not None and span[0] < MIDNIGHT_MS < span[1]
    out = export_roundtrip(config.postgres.dsn, str(tmp_path))
    assert (out["export_rows"], out["export_db_rows"], out["export_mismatched"]) == (rows, rows, 0)
    assert out["export_rows_per_s"] > 0


def test_roundtrip_of_an_empty_database(archive_config, tmp_path: Path) -> None:
    assert export_roundtrip(archive_config.postgres.dsn, str(tmp_path))["export_rows"] == 0


@pytest.mark.parametrize("sabotage", ["drop_last_row", "change_a_size"])
def test_a_broken_export_is_caught(loaded_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sabotage: str) -> None:
    """An exporter that loses a row or alters a value (here: injected into the record batches it writes) is seen."""
    config, _ = loaded_db
    real = archive.export.to_batch

    def broken(schema: pa.Schema, columns: Any, rows: Any) -> pa.RecordBatch:
        rows = list(rows)
        if schema.metadata[b"mdpipe.table"] == b"trades":
            if sabotage == "drop_last_row":
                rows = rows[:-1]
            else:
                i = [c.name for c in columns].index("count")
                rows[0] = (*rows[0][:i], rows[0][i] * 10, *rows[0][i + 1 :])
        return real(schema, columns, rows)

    monkeypatch.setattr(archive.export, "to_batch", broken)
    out = export_roundtrip(config.postgres.dsn, str(tmp_path))
    assert out["export_mismatched"] > 0


class _FakeRun:
    """Stands in for ops.pipeline_run.PipelineRun: the pipeline 'loaded' the database given."""

    dsn = ""
    workdir = Path()

    def __init__(self, config: Any, options: Any) -> None:
        self.rest_url = "http://sim"
        self.urls = {"sim": ("http://sim", "ws://sim")}  # venue -> (REST, WebSocket), as PipelineRun.urls
        self.events_log: list[str] = []
        self.children: dict[str, Any] = {}

    def start(self) -> None: ...
    def run(self, show: Any) -> None: ...
    def stop(self) -> None: ...

    def verify(self) -> dict[str, Any]:
        keys = ["venue_events", "expected", "rows", "missing", "duplicated", "unexpected", "reported_losses",
                "markets_uncovered", "markets_without_rows", "books_checked", "markets_traded", "books_mismatched",
                "snapshots_unmatched", "bad_input"]  # fmt: skip
        return {**dict.fromkeys(keys, 0), "held_by": {}, "latency_ms": {}, "clean": True}


def _demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dsn: str, workdir: Path
) -> tuple[int, dict[str, Any]]:
    import ops.pipeline_run
    import ops.verify_cli

    monkeypatch.setattr(_FakeRun, "dsn", dsn)
    monkeypatch.setattr(_FakeRun, "workdir", workdir)
    monkeypatch.setattr(ops.pipeline_run, "PipelineRun", _FakeRun)
    monkeypatch.setattr(ops.verify_cli, "format_report", lambda report: "report")
    status = main(["demo", "--duration", "1", "--export"])
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("DEMO ")][-1]
    return status, json.loads(line[5:])


def test_demo_json_gains_the_export_fields(loaded_db, tmp_path: Path, monkeypatch, capsys) -> None:
    config, rows = loaded_db
    status, summary = _demo(monkeypatch, capsys, config.postgres.dsn, tmp_path)
    assert status == 0
    assert (summary["export_rows"], summary["export_mismatched"]) == (rows, 0)
    assert list((tmp_path / "export").glob("trades/date=*/*.parquet"))


def test_demo_fails_when_the_export_differs(loaded_db, tmp_path: Path, monkeypatch, capsys) -> None:
    config, _ = loaded_db
    real = archive.export.to_batch
    monkeypatch.setattr(archive.export, "to_batch", lambda s, c, rows: real(s, c, list(rows)[1:]))  # loses rows
    status, summary = _demo(monkeypatch, capsys, config.postgres.dsn, tmp_path)
    assert summary["export_mismatched"] > 0
    assert status == 1
