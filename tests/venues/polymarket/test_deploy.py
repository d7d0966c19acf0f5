"""Polymarket's deployment files (venues/polymarket/deploy/) say what the venue's code says: the documented Gamma
and market-channel URLs, no authentication, and the emulator's paths for the product's sim profile."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from mdpipe.config import load_config
from tests.infra.env_files import read_env_file
from tests.mdpipe.test_example_config import assembled
from venues.polymarket import wire
from venues.polymarket.discovery import GAMMA_URL
from venues.polymarket.emulator import WS_PATH

DEPLOY = Path(__file__).resolve().parents[3] / "venues" / "polymarket" / "deploy"


def test_the_compose_product_gathers_from_the_documented_endpoints_without_keys() -> None:
    env = read_env_file(DEPLOY / "compose.env")
    assert env["MDPIPE_VENUE"] == "polymarket" and env["MDPIPE_VENUE__AUTH"] == "false"
    assert env["MDPIPE_VENUE__REST_URL"] == GAMMA_URL and env["MDPIPE_VENUE__WS_URL"] == wire.WS_URL
    assert (DEPLOY.parents[2] / "infra" / env["VENUE_PRIVATE_KEY_FILE"]).is_file()  # compose needs a file
    sim = {**env, **read_env_file(DEPLOY / "sim.env")}
    assert urlsplit(sim["MDPIPE_VENUE__WS_URL"]).path == WS_PATH == urlsplit(wire.WS_URL).path
    assert urlsplit(sim["MDPIPE_VENUE__REST_URL"]).hostname == "venue"


def test_the_example_with_polymarkets_section(tmp_path: Path) -> None:
    cfg = load_config(assembled("polymarket", tmp_path), environ={}, use_infra_state=False)
    assert cfg.venue.name == "polymarket" and not cfg.venue.auth
    assert (cfg.venue.rest_url, cfg.venue.ws_url) == (GAMMA_URL, wire.WS_URL)
