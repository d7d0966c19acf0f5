"""The Polymarket profile served by the emulator's real server (venue_sim.server.SimServer with the profile's
session factory on /ws/market) to the gatherer's real WebSocket clients (ingest.connection) running the Polymarket
session: books rebuilt from what the gatherer emitted equal the emulator's, through a fault that closes the
connection (the session reports the window it was down and re-subscribes; fresh books follow)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest

from schemas.events import BookDelta, BookSnapshot
from schemas.raw import RawFrame, decode_gap, decode_raw
from sink.book import DeltaRow, SnapshotRow
from venue_sim.book import Books
from venue_sim.faults import FaultSpec
from venue_sim.load import Generator
from venue_sim.markets import MarketTable
from venue_sim.server import ServerSettings, SimServer
from venues.polymarket.book import book_at
from venues.polymarket.emulator import Profile, ServerSession
from venues.polymarket.normalise import to_event
from venues.polymarket.session import PolymarketSession

SEED = 7


def rebuilt(frames: list[RawFrame], asset: str) -> tuple[tuple, tuple]:  # type: ignore[type-arg]
    snaps, deltas = [], []
    for f in frames:
        if f.market == asset and f.kind in ("snapshot", "delta"):
            e = to_event(f)
            if isinstance(e, BookSnapshot):
                snaps.append(SnapshotRow(e.ts_ms, e.event_key, e.yes, e.no, frozenset(e.after_keys)))
            elif isinstance(e, BookDelta):
                deltas.append(DeltaRow(e.ts_ms, e.event_key, e.side, e.price, e.delta))
    book = book_at(snaps, deltas, 1 << 62)
    assert book is not None
    return book.normalised()


def truth(gen: Generator, m: int) -> tuple[tuple, tuple]:  # type: ignore[type-arg]
    view = gen.books.peek(m)
    c = Decimal("0.01")
    yes = tuple(sorted(((p * c).normalize(), (s * c).normalize()) for p, s in view.yes.items()))
    no = tuple(sorted(((p * c).normalize(), (s * c).normalize()) for p, s in view.no.items()))
    return yes, no


async def _admin(method: str, path: str, payload: dict) -> tuple[int, dict]:  # type: ignore[type-arg]
    return 404, {}


async def _until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("client", ["websockets", "picows"])
def test_live_books_match_through_a_close_fault(client: str) -> None:
    from ingest.connection import connection_class

    async def body() -> None:
        markets = 3
        table = MarketTable(markets, SEED, 1_767_225_600_000)
        books = Books(SEED, markets)
        gen = Generator(table, books, SEED, rate=2000.0, identical_share=0.3, trade_share=0.1)
        profile = Profile(SEED, table.ticker)
        server = SimServer(
            ServerSettings(port=0), table, books, _admin, last_id=lambda: gen.next_id - 1,
            session_factory=lambda cid: ServerSession(profile, cid), ws_path="/ws/market",
        )  # fmt: skip
        await server.start()
        frames: list[RawFrame] = []
        dead: list[str] = []
        session = PolymarketSession(
            gatherer="g1", conn_id=1, emit=lambda m, b: frames.append(decode_raw(b)),
            dead=lambda b, r: dead.append(r),
        )  # fmt: skip
        assets = [a for m in range(markets) for a in profile.ids(m)[1:]]
        session.add_markets(assets)
        conn = connection_class(client)(session, f"ws://127.0.0.1:{server.port}/ws/market", dict, backoff_initial=0.05)
        conn.start()
        try:
            await _until(lambda: sum(f.kind == "snapshot" for f in frames) + len(session._held) == len(assets))
            for round_ in range(6):
                for _ in range(5):
                    server.broadcast(gen.generate(50))
                    await asyncio.sleep(0.01)
                    session.tick(time.time_ns())
                if round_ == 2:
                    server.apply_fault(FaultSpec(kind="close"))
                    await _until(lambda: conn.reconnects >= 1 or any(f.kind == "gap" for f in frames))
                    await _until(lambda: bool(server.connections) and conn.up)
                    await asyncio.sleep(0.2)
            await asyncio.sleep(0.3)
            session.flush(time.time_ns())
        finally:
            await conn.stop()
            await server.close()
        assert dead == []
        gaps = [decode_gap(f.payload) for f in frames if f.kind == "gap"]
        assert [g.kind for g in gaps] == ["down"] and gaps[0].markets == assets
        for m in range(markets):
            _, yes_token, no_token = profile.ids(m)
            yes, no = truth(gen, m)
            assert rebuilt(frames, yes_token) == (yes, no)
            assert rebuilt(frames, no_token) == (no, yes)

    asyncio.run(body())
