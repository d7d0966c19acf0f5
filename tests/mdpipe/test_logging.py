"""Structured logs: one event per line, key=value or JSON, written to the current stderr."""

from __future__ import annotations

import io
import json
import logging

import pytest

from mdpipe.logging import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_root() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_kv_line_quotes_values_with_spaces(monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging("INFO", "kv")
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)  # replaced after configuration: the handler must follow it
    get_logger("mdpipe.test", gatherer="g1").info("gap_detected", sid=3, reason="seq jump")
    line = buf.getvalue().strip()
    assert "\n" not in line
    assert "event=gap_detected" in line and "gatherer=g1" in line and "sid=3" in line
    assert 'reason="seq jump"' in line


def test_json_lines_and_level_filter() -> None:
    buf = io.StringIO()
    configure_logging("WARNING", "json", stream=buf)
    log = get_logger("mdpipe.test")
    log.info("hidden")
    log.warning("spool_used", records=5)
    (line,) = buf.getvalue().splitlines()
    record = json.loads(line)
    assert record["event"] == "spool_used" and record["records"] == 5 and record["level"] == "warning"
