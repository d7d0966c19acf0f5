"""The venue registry: venues are the folders of venues/, looked up by name; unknown names fail in one line."""

from __future__ import annotations

import pytest

import venues
from mdpipe.config import ConfigError, load_config
from venues.interface import Venue


def test_every_folder_is_a_venue_named_as_its_folder() -> None:
    for name in venues.names():
        venue = venues.get_venue(name)
        assert isinstance(venue, Venue) and venue.name == name
        assert venue.channels, f"{name}: no market-data channels"


def test_exactly_one_default_venue() -> None:
    assert [n for n in venues.names() if venues.get_venue(n).default] == [venues.default_name()]


def test_an_unknown_venue_is_one_line_listing_the_known_ones() -> None:
    with pytest.raises(venues.UnknownVenue) as info:
        venues.get_venue("nowhere")
    text = str(info.value)
    assert "\n" not in text and "'nowhere'" in text
    assert text.endswith("known venues: " + ", ".join(venues.names()))


def test_config_without_a_venue_name_means_the_default_venue() -> None:
    assert load_config(None, environ={}, use_infra_state=False).venue.name == venues.default_name()


@pytest.mark.parametrize("name", venues.names())
def test_config_accepts_every_known_venue(name: str) -> None:
    assert load_config(None, environ={"MDPIPE_VENUE__NAME": name}, use_infra_state=False).venue.name == name


def test_config_rejects_an_unknown_venue_naming_the_setting_and_the_known_venues(tmp_path) -> None:
    path = tmp_path / "mdpipe.toml"
    path.write_text('[venue]\nname = "nowhere"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, use_infra_state=False)
    text = str(info.value)
    assert "\n" not in text and text.startswith("config setting venue.name")
    assert "unknown venue 'nowhere'; known venues: " + ", ".join(venues.names()) in text


def test_discovery_statuses_default_to_each_venues_own() -> None:
    """gather.discovery_statuses defaults to [] (the venue's listing statuses), so every venue loads with it; a
    list is checked by the venue, and a venue that does not list by status refuses one."""
    from mdpipe.config import GatherConfig
    from venues.interface import discovery_kind

    assert GatherConfig().discovery_statuses == []
    for name in venues.names():
        cfg = load_config(environ={"MDPIPE_VENUE__NAME": name}, use_infra_state=False)
        found = venues.get_venue(name).discovery(cfg.venue.rest_url, 1000)
        if discovery_kind(found) == "status_listings":
            assert found.statuses(cfg.gather.discovery_statuses) == list(found.listing_statuses), name
            assert found.listing_statuses, name
            continue
        environ = {"MDPIPE_VENUE__NAME": name, "MDPIPE_GATHER__DISCOVERY_STATUSES": '["open"]'}
        with pytest.raises(ConfigError, match=r"gather\.discovery_statuses .*does not list by status"):
            load_config(environ=environ, use_infra_state=False)


@pytest.mark.parametrize("name", venues.names())
def test_each_venues_discovery_is_none_or_fully_one_kind(name: str) -> None:
    """What Venue.discovery returns carries its kind as a tag and every member of that kind's protocol (the gatherer
    goes by the tag, not by which members happen to be there)."""
    from venues.interface import DISCOVERY_KINDS, discovery_kind, protocol_members

    cfg = load_config(environ={"MDPIPE_VENUE__NAME": name}, use_infra_state=False)
    found = venues.get_venue(name).discovery(cfg.venue.rest_url, 1000)
    if found is None:
        return
    kind = discovery_kind(found)
    assert kind in DISCOVERY_KINDS and found.kind == kind
    members = protocol_members(DISCOVERY_KINDS[kind])
    assert "kind" in members and len(members) >= 4
    assert [m for m in members if not hasattr(found, m)] == []


def test_a_discovery_missing_a_member_or_its_tag_is_refused_not_taken_for_the_other_kind() -> None:
    from venues.interface import discovery_kind

    class HalfListings:  # status listings without look-ups: structurally neither kind
        kind = "status_listings"
        lookup_batch = 2
        listing_statuses = ("open",)

        def statuses(self, requested: list[str]) -> list[str]:
            return requested

        def listing_url(self, status: str, cursor: str = "") -> str:
            return ""

        def page(self, body: bytes) -> tuple[list[object], str]:
            return [], ""

    with pytest.raises(TypeError, match=r"HalfListings: a status_listings discovery without .*lookup_url"):
        discovery_kind(HalfListings())

    class Untagged:
        def next_url(self) -> str | None:
            return None

    with pytest.raises(TypeError, match=r"Untagged: discovery kind None"):
        discovery_kind(Untagged())
    assert discovery_kind(None) is None
