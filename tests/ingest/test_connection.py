"""The reconnect loop survives unexpected exceptions from a connection's life and from ``on_reconnect``, whichever
venue's session the connection drives (each venue's session from its ``Venue.session`` hook, as the gatherer makes
it)."""

from __future__ import annotations

import asyncio

import pytest

import venues
from ingest.connection import Connection
from venues.interface import VenueSession


class _Flaky(Connection):
    """Each connection attempt runs the next scripted outcome: an exception to raise, or a reason to return."""

    client = "test"

    def __init__(self, session: VenueSession, outcomes: list[BaseException | str], **kw: object) -> None:
        super().__init__(session, "ws://unused", dict, backoff_initial=0.001, backoff_max=0.002, **kw)  # type: ignore[arg-type]
        self.outcomes = outcomes
        self.attempts = 0
        self.done = asyncio.Event()

    async def _connect_and_pump(self) -> str:
        self.attempts += 1
        self._opened_now()
        if not self.outcomes:
            self.done.set()
            await asyncio.Event().wait()  # stay connected until stopped
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def _close(self) -> None:
        return None


def _session(name: str) -> VenueSession:
    venue = venues.get_venue(name)
    return venue.session(
        gatherer="g1",
        conn_id=3,
        channels=list(venue.channels),
        sub_cap=100,
        keyer=venue.keyer(120_000),
        stats=venue.session_stats(),
        emit=lambda market, value: None,
        dead=lambda data, reason: None,
    )


@pytest.mark.parametrize("name", venues.names())
def test_unexpected_exceptions_reconnect_instead_of_ending_the_task(name: str) -> None:
    reasons: list[str] = []

    def on_reconnect(reason: str) -> None:
        reasons.append(reason)
        if len(reasons) == 2:
            raise RuntimeError("metrics callback bug")

    async def main() -> _Flaky:
        session = _session(name)
        conn = _Flaky(session, [KeyError("sid"), "closed by venue", ZeroDivisionError("x")], on_reconnect=on_reconnect)
        task = conn.start()
        await asyncio.wait_for(conn.done.wait(), 10)
        assert not task.done() and session.is_connected  # still running, connected again
        await conn.stop()
        return conn

    conn = asyncio.run(main())
    assert conn.attempts == 4 and conn.reconnects == 3
    assert reasons == ["closed", "closed", "closed"]  # the callback's own failure did not stop the loop
