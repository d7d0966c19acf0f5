"""Kalshi's deployment facts (venues/kalshi/deploy/) and its production guide (docs/production-kalshi.md) cannot
rot: the example assembled with Kalshi's section is a production Kalshi configuration, the compose product profile
gathers from Kalshi production with its keys, and every setting, environment variable, command and flag the guide
names exists."""

from __future__ import annotations

import contextlib
import io
import shlex
from pathlib import Path

import pytest

from mdpipe.config import load_config
from tests.infra.env_files import read_env_file, venue_env
from tests.mdpipe.test_example_config import (
    COMMAND_FLAG,
    _shell_commands,
    _subparsers,
    assembled,
    settings_named,
    unknown_settings,
)
from venues import default_name, get_venue

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "venues" / "kalshi" / "deploy"
GUIDE = ROOT / "docs" / "production-kalshi.md"


def test_kalshi_is_the_default_venue_of_a_deployment() -> None:
    assert default_name() == "kalshi"  # make product without MDPIPE_VENUE; configs without venue.name


def test_the_example_with_kalshis_section_is_a_production_kalshi_configuration(tmp_path: Path) -> None:
    cfg = load_config(assembled("kalshi", tmp_path), environ={}, use_infra_state=False)
    assert cfg.venue.name == "kalshi" and cfg.venue.auth
    assert cfg.venue.rest_url == "https://external-api.kalshi.com/trade-api/v2"
    assert cfg.venue.ws_url == "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    # the defaults the section relies on: every market-data channel, the statuses a gatherer holds
    listings = get_venue("kalshi").discovery(cfg.venue.rest_url, 1000)
    assert cfg.gather.channels == [] and listings.statuses(cfg.gather.discovery_statuses) == [
        "open",
        "paused",
        "unopened",
    ]
    # three gatherers on one Basic-tier account (200 read tokens/s at 10 tokens a request) stay under its budget
    assert len(cfg.gather.ids) * cfg.gather.rest_requests_per_s < 200 / 10


def test_the_compose_product_gathers_from_kalshi_production() -> None:
    env = read_env_file(DEPLOY / "compose.env")
    assert env == {
        "MDPIPE_VENUE": "kalshi",
        "MDPIPE_VENUE__REST_URL": "https://api.elections.kalshi.com/trade-api/v2",
        "MDPIPE_VENUE__WS_URL": "wss://api.elections.kalshi.com/trade-api/ws/v2",
        "MDPIPE_VENUE__AUTH": "true",
    }
    readme = (DEPLOY / "README.md").read_text()
    for name in ("VENUE_KEY_ID", "VENUE_PRIVATE_KEY_FILE", "infra/secrets/kalshi-private-key.pem"):
        assert name in readme, name


def test_every_setting_and_environment_variable_the_guide_names_exists() -> None:
    named = settings_named(GUIDE.read_text())
    assert len(named) >= 10, "the patterns still find the settings"
    assert unknown_settings(named) == []


def test_every_command_and_flag_in_the_guide_exists() -> None:
    from mdpipe.cli import build_parser

    text = GUIDE.read_text()
    commands = _shell_commands(text)
    assert len(commands) >= 8, commands
    parser = build_parser()
    for words in commands:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                parser.parse_args(words)
            except SystemExit:
                pytest.fail(f"`mdpipe {shlex.join(words)}` does not parse: {err.getvalue().strip()}")
    subparsers = _subparsers()
    flags = COMMAND_FLAG.findall(text)
    assert len(flags) >= 5, flags
    missing = [f"{cmd} {flag}" for cmd, flag in flags if flag not in subparsers[cmd]._option_string_actions]
    assert missing == []


def test_the_gatherer_benchmark_the_guide_names_has_tls() -> None:
    from bench.gatherer.__main__ import main

    assert "BENCH_ARGS=--tls" in GUIDE.read_text()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["--help"])
    assert "--tls" in out.getvalue()


def test_the_key_compose_mounts_signs_what_kalshi_verifies(tmp_path: Path) -> None:
    """The whole chain of the compose product for Kalshi: the key file each gatherer's secret names, mounted where
    compose mounts it, read through the gatherer's configuration, signs a request that the PUBLIC key of that pair
    verifies (Kalshi's RSA-PSS over timestamp + method + path); a gatherer's own pair (MDPIPE_G<n>_*) for it alone."""
    from tests.infra.test_compose import _environment, _mounted_secrets, _services
    from venue_sim.keys import generate_test_keypair, load_public_key, verify

    shared, own = generate_test_keypair(tmp_path / "shared"), generate_test_keypair(tmp_path / "own")
    env = {
        **venue_env(venue="kalshi"),
        "VENUE_KEY_ID": shared.key_id,
        "VENUE_PRIVATE_KEY_FILE": shared.private_path,
        "MDPIPE_G3_KEY_ID": own.key_id,
        "MDPIPE_G3_PRIVATE_KEY_FILE": own.private_path,
    }
    for name, keys in {"gather-g1": shared, "gather-g2": shared, "gather-g3": own}.items():
        service = _services()[name]
        config = load_config(environ=_environment(service, env), use_infra_state=False)
        assert config.venue.name == "kalshi" and config.venue.auth, name
        mounted = _mounted_secrets(service, env)[config.venue.private_key_path]
        assert mounted == Path(keys.private_path).resolve(), name
        signer = get_venue("kalshi").signer(config.venue.key_id, "", str(mounted))
        headers = signer.headers(ts_ms=1_700_000_000_000, method="GET", path="/trade-api/ws/v2")
        assert headers["KALSHI-ACCESS-KEY"] == keys.key_id, name
        public = load_public_key(keys.public_key_pem)
        assert verify(public, headers["KALSHI-ACCESS-SIGNATURE"], "1700000000000", "GET", "/trade-api/ws/v2"), name
        other = load_public_key((own if keys is shared else shared).public_key_pem)
        assert not verify(other, headers["KALSHI-ACCESS-SIGNATURE"], "1700000000000", "GET", "/trade-api/ws/v2")
