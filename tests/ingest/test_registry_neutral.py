"""The market registry is venue-neutral: it decides holding from whatever vocabulary the venue's
:class:`venues.interface.StatusListings` gives it (here an invented one; a real venue's rules and their property
test: tests/venues/<name>/)."""

from __future__ import annotations

from ingest.registry import MarketRegistry
from tests.ingest.toy_listings import Listed, ToyListings
from venues.interface import discovery_kind

S = 1_000_000_000


def test_the_toy_is_status_listings() -> None:
    assert discovery_kind(ToyListings()) == "status_listings"


def test_the_venue_vocabulary_decides_holding() -> None:
    reg = MarketRegistry(ToyListings(), 60.0)
    changes = reg.apply_listing([Listed("A", "live"), Listed("B", "asleep"), Listed("C", "gone")], 0)
    assert changes.add == ["A", "B"] and sorted(reg.held) == ["A", "B"]
    assert [(r.venue, r.ticker, r.status) for r in changes.refs] == [
        ("toy", t, s) for t, s in zip("ABC", ("live", "asleep", "gone"), strict=True)
    ]
    assert reg.apply_lifecycle("B", "died", 10 * S) == (False, True)
    # the lifecycle change outranks a REST view requested within the lag, and stands in for its status
    stale = reg.apply_listing([Listed("B", "live")], 20 * S)
    assert stale.add == [] and stale.stale == 1 and [r.status for r in stale.refs] == ["gone"]
    assert reg.apply_lifecycle("D", "born", 30 * S) == (True, False)
    assert reg.apply_lifecycle("D", "renamed", 31 * S) == (False, False)
    odd = reg.apply_listing([Listed("A", "under_review")], 40 * S)
    assert odd.unknown_statuses == ["under_review"] and "A" in reg
