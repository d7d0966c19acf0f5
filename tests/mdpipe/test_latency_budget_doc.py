"""docs/latency-budget.md states each timer's default: it must be the default mdpipe.config gives that setting."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from mdpipe.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "latency-budget.md"
# "`section.key` (20 ms", "(256 KB)", "(1 s; was 2 s)", "(50,000 frames)": the first figure after a setting's name
STATED = re.compile(r"`([a-z]+)\.([a-z_]+)` \((\d[\d,.]*) (ms|s|KB|frames)\b")
TO_SECONDS = {"ms": 0.001, "s": 1.0}


SECTIONS = {f.name for f in msgspec.structs.fields(Config)}


def stated_defaults(text: str) -> list[tuple[str, str, float, str]]:
    """(section, key, figure, unit) of every mdpipe setting named with its default (librdkafka's own keys, such as
    ``linger.ms``, are not mdpipe settings)."""
    return [
        (section, key, float(value.replace(",", "")), unit)
        for section, key, value, unit in STATED.findall(text)
        if section in SECTIONS
    ]


def in_setting_unit(key: str, value: float, unit: str) -> float:
    """The stated figure in the unit the setting's name carries (``_ms``, ``_s``, ``_bytes``; a count as is)."""
    if unit == "KB":
        assert key.endswith("_bytes"), key
        return value * 1024
    if unit in TO_SECONDS:
        if key.endswith("_ms"):
            return value * TO_SECONDS[unit] / 0.001
        assert key.endswith("_s"), key
        return value * TO_SECONDS[unit]
    return value


def test_the_reader_finds_each_stated_default() -> None:
    text = (
        "`sink.batch_ms` (50 ms), librdkafka `linger.ms` (1 ms) and `dedup.fetch_min_bytes` (256 KB), "
        "`dedup.commit_every` (50,000 frames)"
    )
    assert stated_defaults(text) == [
        ("sink", "batch_ms", 50.0, "ms"),
        ("dedup", "fetch_min_bytes", 256.0, "KB"),
        ("dedup", "commit_every", 50_000.0, "frames"),
    ]
    assert in_setting_unit("kafka_commit_interval_ms", 1, "s") == 1000
    assert in_setting_unit("fetch_min_bytes", 64, "KB") == 65_536


def test_every_default_the_latency_budget_states_is_the_configured_one() -> None:
    found = stated_defaults(DOC.read_text())
    assert len(found) >= 10, found  # the table names every timer on the path: the reader must see them
    defaults = Config()
    wrong = []
    for section, key, value, unit in found:
        configured = getattr(getattr(defaults, section), key)
        if in_setting_unit(key, value, unit) != pytest.approx(configured):
            wrong.append(f"{section}.{key}: doc {value:g} {unit}, config {configured}")
    assert not wrong, wrong
