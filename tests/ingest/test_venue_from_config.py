"""The gatherer takes its venue from ``venue.name`` (registry look-up) and, with ``gather.channels`` empty, every
market-data channel that venue declares."""

from __future__ import annotations

from pathlib import Path

import venues
from ingest.cli import build_gatherer
from mdpipe.cli import build_parser
from mdpipe.config import load_config


def test_the_gatherer_uses_the_configured_venue_and_its_channels(tmp_path: Path) -> None:
    config = load_config(None, environ={"MDPIPE_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9"}, use_infra_state=False)
    assert config.gather.channels == []  # nothing configured: the venue's own channels
    args = build_parser().parse_args(["gather", "--id", "g1", "--no-auth", "--spool-dir", str(tmp_path)])
    gatherer = build_gatherer(args, config)
    try:
        venue = venues.get_venue(config.venue.name)
        assert gatherer.venue is venue
        assert gatherer.venue_config.name == config.venue.name
        assert gatherer.channels == list(venue.channels)
        session = gatherer._connection(0).session
        assert type(session) is type(venue.session(**_session_args()))
    finally:
        gatherer.producer.close(timeout=0.1)


def _session_args() -> dict[str, object]:
    venue = venues.get_venue(venues.default_name())
    return {
        "gatherer": "g1",
        "conn_id": 0,
        "channels": list(venue.channels),
        "sub_cap": 10,
        "keyer": venue.keyer(1000),
        "emit": lambda *a: None,
        "dead": lambda *a: None,
    }
