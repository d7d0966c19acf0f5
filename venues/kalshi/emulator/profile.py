"""Kalshi as the emulator's server hosts it: the :class:`venues.interface.EmulatorProfile` of
:meth:`venues.kalshi.Kalshi.emulator`.

One :class:`venues.kalshi.emulator.protocol.ServerSession` per connection on ``/trade-api/ws/v2`` over the
generator's market table and books (snapshots read the books as generated), the REST API of
:mod:`venues.kalshi.emulator.rest` under ``/trade-api/v2``, and the three ``KALSHI-ACCESS-*`` headers of a signed
upgrade (key id, timestamp in ms, RSA-PSS signature of timestamp + ``GET`` + path; :mod:`venues.kalshi.auth` is the
client side).
"""

from __future__ import annotations

from typing import Any

from venue_sim.book import Books
from venue_sim.markets import MarketTable
from venues.interface import EmulatorProfile
from venues.kalshi.auth import WS_PATH
from venues.kalshi.emulator.protocol import ServerSession
from venues.kalshi.emulator.rest import REST_BASE, RestApi

__all__ = ["AUTH_HEADERS", "REST_BASE", "WS_PATH", "emulator_profile"]

AUTH_HEADERS = ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE")


def emulator_profile(markets: MarketTable, books: Books, *, sub_cap: int = 0, recorder: Any = None) -> EmulatorProfile:
    """Kalshi's protocol over one run's ``markets`` and ``books``: sessions capped at ``sub_cap`` markets per
    subscription (0: no cap, error 26 above it), writing the venue record through ``recorder`` (None: none)."""

    def session(conn_id: int) -> ServerSession:
        return ServerSession(conn_id, markets, books, sub_cap, recorder)

    return EmulatorProfile(
        WS_PATH, session, rest_base=REST_BASE, rest_handler=RestApi(markets, books), auth_headers=AUTH_HEADERS
    )
