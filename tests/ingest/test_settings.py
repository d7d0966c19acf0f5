"""The gatherer takes its own config sections (``gather``, ``venue``): the config's defaults are the only ones, and
`mdpipe gather`'s flags are folded into those sections, through their validation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ingest import cli as gather_cli
from mdpipe.config import Config, ConfigError, GatherConfig, KafkaConfig, VenueConfig

KAFKA = KafkaConfig(bootstrap_servers="127.0.0.1:9")  # nothing is sent: the gatherer is built, not started


def _build(tmp_path: Path, config: Config, *flags: str) -> Any:
    parser = argparse.ArgumentParser()
    gather_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["gather", "--id", "g1", "--no-auth", "--spool-dir", str(tmp_path), *flags])
    return gather_cli.build_gatherer(args, config)


def test_the_gatherer_runs_on_its_sections_and_their_defaults(tmp_path: Path) -> None:
    g = _build(tmp_path, Config(kafka=KAFKA))
    assert g.opts == GatherConfig() and g.venue_config == VenueConfig()
    defaults = GatherConfig()
    assert g.plan.per_connection == defaults.markets_per_connection
    assert g._linger_s == defaults.linger_ms / 1000
    assert g.rest.pacer.rate == defaults.rest_requests_per_s
    assert (g.raw_topic, g.dlq_topic, g.markets_topic) == ("raw.g1", "dlq", "markets")


def test_a_setting_of_the_section_reaches_the_gatherer(tmp_path: Path) -> None:
    gather = GatherConfig(rest_requests_per_s=2.5, linger_ms=7, markets_per_connection=11, silence_timeout_s=9.0)
    g = _build(tmp_path, Config(kafka=KAFKA, gather=gather))
    assert g.opts == gather
    assert g.rest.pacer.rate == 2.5 and g._linger_s == 0.007 and g.plan.per_connection == 11


def test_flags_go_into_the_sections_and_leave_the_rest_alone(tmp_path: Path) -> None:
    config = Config(kafka=KAFKA, gather=GatherConfig(silence_timeout_s=9.0))
    g = _build(tmp_path, config, "--markets-per-connection", "5", "--ws-url", "ws://venue:1/ws")
    assert g.opts == msgspec.structs.replace(config.gather, markets_per_connection=5)
    assert g.venue_config == msgspec.structs.replace(config.venue, ws_url="ws://venue:1/ws")
    with pytest.raises(ConfigError, match="markets_per_connection"):
        _build(tmp_path, config, "--markets-per-connection", "-3")
