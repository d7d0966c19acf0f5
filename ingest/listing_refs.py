"""Which market references a venue's own discovery pass publishes to the ``markets`` topic (pure logic, no I/O).

A venue whose discovery walks a complete listing each pass (:class:`venues.interface.Discovery` with ``refs``) gives
the reference of every listed market each time; publishing them all every pass would rewrite the compacted topic
and the sink's ``markets`` rows for nothing. :class:`ListingRefs` keeps the last published reference per market and
passes on only what changed (every field but ``updated_ns``): new markets, changed ones, and markets the listing no
longer shows, republished once with status ``unlisted`` (the listing is the only source of such a venue's status: a
market that leaves it is closed, resolved or removed). A gatherer's first pass publishes everything it lists.
"""

from __future__ import annotations

import msgspec

from schemas.markets import MarketRef

__all__ = ["UNLISTED", "ListingRefs"]

UNLISTED = "unlisted"


class ListingRefs:
    """The last published reference of each market a venue's listing showed (module docstring)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, MarketRef] = {}

    def __len__(self) -> int:
        return len(self._last)

    def changes(self, listed: list[MarketRef], now_ns: int) -> list[MarketRef]:
        """The references to publish after a COMPLETE listing ``listed`` (a failed pass must not call this: it would
        mark the markets of the pages it did not get unlisted)."""
        out: list[MarketRef] = []
        seen: dict[str, MarketRef] = {}
        for ref in listed:
            if ref.ticker in seen:  # listed twice: the first one counts
                continue
            seen[ref.ticker] = ref
            old = self._last.get(ref.ticker)
            if old is None or msgspec.structs.replace(old, updated_ns=ref.updated_ns) != ref:
                out.append(ref)
        for ticker, old in self._last.items():
            if ticker not in seen:
                out.append(msgspec.structs.replace(old, status=UNLISTED, updated_ns=now_ns))
        self._last = seen
        return out
