"""The emulator takes its own config section: `mdpipe sim` hands VenueSim the ``sim`` section with its flags folded
in (through the section's validation); only the run's own knobs (address, faults, TLS, ...) travel in SimOptions."""

from __future__ import annotations

import argparse
from typing import Any

import msgspec
import pytest

import venue_sim.app
import venues
from mdpipe.config import Config, ConfigError, SimConfig
from venue_sim import cli as sim_cli


def _started_with(
    args: list[str], monkeypatch: pytest.MonkeyPatch, config: Config | None = None, venue: list[str] | None = None
) -> tuple[Any, Any]:
    parser = argparse.ArgumentParser()
    sim_cli.add_parser(parser.add_subparsers())
    got: list[tuple[Any, Any]] = []
    venue_seen = venue

    class Stop(Exception):
        pass

    def capture(section: SimConfig, options: Any = None, *, venue: str = "") -> None:
        got.append((section, options))
        if venue_seen is not None:
            venue_seen.append(venue)
        raise Stop

    monkeypatch.setattr(venue_sim.app, "VenueSim", capture)
    with pytest.raises(Stop):
        sim_cli.run(parser.parse_args(["sim", *args]), config or Config())
    return got[0]


def test_a_bare_sim_runs_on_the_config_section_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config(sim=SimConfig(markets=77, rate=12.5, pause_markets=3, flap_share=0.5, public_key_path="k.pem"))
    section, options = _started_with([], monkeypatch, config)
    assert section == config.sim
    assert options.pong_timeout_s == 2 * config.sim.heartbeat_s


def test_flags_go_into_the_section_and_leave_the_rest_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    section, options = _started_with(["--no-auth", "--markets", "5", "--flap-share", "0.1", "--tls"], monkeypatch)
    assert section == msgspec.structs.replace(SimConfig(), auth=False, markets=5, flap_share=0.1)
    assert options.tls


def test_a_flag_outside_the_settings_range_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="flap_share"):
        _started_with(["--no-auth", "--flap-share", "1.5"], monkeypatch)


def test_the_venue_served_is_the_flag_else_the_config_venue(monkeypatch: pytest.MonkeyPatch) -> None:
    other = next(n for n in venues.names() if n != venues.default_name())
    seen: list[str] = []
    _started_with(["--no-auth"], monkeypatch, venue=seen)
    _started_with(["--no-auth", "--venue", other], monkeypatch, venue=seen)
    assert seen == [venues.default_name(), other]


def test_an_unknown_venue_is_a_config_error_naming_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="known venues"):
        _started_with(["--no-auth", "--venue", "nosuchvenue"], monkeypatch)
