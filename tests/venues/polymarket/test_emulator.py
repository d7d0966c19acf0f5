"""The emulator's Polymarket profile against the real client session: the emulator's own event generator drives
both; a gatherer's normalised YES-token books equal the emulator's books (NO tokens their mirror), two gatherers
derive the same keys whatever the framing, and the fault kinds reach the session as the protocol allows."""

from __future__ import annotations

from decimal import Decimal

from schemas.events import BookDelta, BookSnapshot
from schemas.raw import RawFrame, decode_raw
from sink.book import DeltaRow, SnapshotRow
from venue_sim.book import Books
from venue_sim.load import Generator
from venue_sim.markets import MarketTable
from venues.polymarket.book import book_at
from venues.polymarket.emulator import Profile, ServerSession
from venues.polymarket.normalise import to_event
from venues.polymarket.session import PolymarketSession

SEED = 7
MS = 1_000_000


class Gatherer:
    def __init__(self, name: str, server: ServerSession, assets: list[str]) -> None:
        self.frames: list[RawFrame] = []
        self.dead: list[str] = []
        self.server = server
        self.session = PolymarketSession(
            gatherer=name, conn_id=1, emit=lambda m, b: self.frames.append(decode_raw(b)),
            dead=lambda b, r: self.dead.append(r),
        )  # fmt: skip
        self.session.add_markets(assets)
        self.now = 0

    def pump(self, ts_ms: int, batch: bool = False) -> None:
        """Client commands to the server, server frames to the client (as one JSON array when ``batch``)."""
        self.now += MS
        self.server.profile.clock_ms = max(self.server.profile.clock_ms, ts_ms)
        for cmd in self.session.data_to_send():
            self.server.receive_text(cmd)
        out = [text.encode() for text in self.server.data_to_send()]
        if batch and len(out) > 1 and all(o.startswith(b"{") for o in out):
            out = [b"[" + b",".join(out) + b"]"]
        for data in out:
            self.session.receive(data, self.now)


def run(events: int = 3000, *, markets: int = 4) -> tuple[Generator, Profile, list]:  # type: ignore[type-arg]
    table = MarketTable(markets, SEED, 1_767_225_600_000)
    gen = Generator(table, Books(SEED, markets), SEED, rate=2000.0, identical_share=0.3, trade_share=0.1)
    profile = Profile(SEED, table.ticker)
    batches = [gen.generate(100) for _ in range(events // 100)]
    return gen, profile, batches


def rebuilt(frames: list[RawFrame], asset: str) -> tuple[tuple, tuple]:  # type: ignore[type-arg]
    snaps, deltas = [], []
    for f in frames:
        if f.market != asset or f.kind not in ("snapshot", "delta"):
            continue
        e = to_event(f)
        if isinstance(e, BookSnapshot):
            snaps.append(SnapshotRow(e.ts_ms, e.event_key, e.yes, e.no, frozenset(e.after_keys)))
        elif isinstance(e, BookDelta):
            deltas.append(DeltaRow(e.ts_ms, e.event_key, e.side, e.price, e.delta, e.replaces, e.ordinal))
    book = book_at(snaps, deltas, 1 << 62)
    assert book is not None
    return book.normalised()


def truth(gen: Generator, m: int) -> tuple[tuple, tuple]:  # type: ignore[type-arg]
    view = gen.books.peek(m)
    cents = Decimal("0.01")
    yes = tuple(sorted(((p * cents).normalize(), (s * cents).normalize()) for p, s in view.yes.items()))
    no = tuple(sorted(((p * cents).normalize(), (s * cents).normalize()) for p, s in view.no.items()))
    return yes, no


def two_gatherers() -> tuple[Generator, Profile, list, Gatherer, Gatherer]:  # type: ignore[type-arg]
    """A generated run and two gatherers connected to it, holding every token of its four markets."""
    gen, profile, batches = run()
    assets = [a for m in range(4) for a in profile.ids(m)[1:]]
    g1 = Gatherer("g1", ServerSession(profile, 1), assets)
    g2 = Gatherer("g2", ServerSession(profile, 2), assets)
    for g in (g1, g2):
        g.session.connected(0)
        g.pump(gen.markets.base_ts_ms)
    return gen, profile, batches, g1, g2


def test_gatherers_rebuild_the_emulators_books_and_agree_on_keys() -> None:
    gen, profile, batches, g1, g2 = two_gatherers()
    for batch in batches:
        ts = batch[-1][3]
        for g, batched in ((g1, False), (g2, True)):
            g.server.deliver(batch)  # the shared profile translates each batch once
            g.pump(ts, batch=batched)
            g.session.tick(g.now)
    for g in (g1, g2):
        g.session.flush(g.now)
        assert g.dead == [] and g.session.stats.book_mismatch == 0 and g.session.stats.foreign == 0
    for m in range(4):
        _, yes_token, no_token = profile.ids(m)
        yes, no = truth(gen, m)
        assert rebuilt(g1.frames, yes_token) == (yes, no)  # the YES token is the emulator's book
        assert rebuilt(g1.frames, no_token) == (no, yes)  # the NO token its mirror
        assert rebuilt(g2.frames, yes_token) == (yes, no)
    events = [(f.kind, f.market, f.event_key) for f in g1.frames if f.kind in ("delta", "trade")]
    assert events == [(f.kind, f.market, f.event_key) for f in g2.frames if f.kind in ("delta", "trade")]
    assert len({e[2] for e in events}) == len(events) and gen.identical > 0  # twins in one ms stay two


def test_fault_kinds_reach_the_session() -> None:
    gen, profile, batches = run(1000)
    assets = [a for m in range(4) for a in profile.ids(m)[1:]]
    server = ServerSession(profile, 1)
    g = Gatherer("g1", server, assets)
    g.session.connected(0)
    g.session.add_markets([assets[0]])  # already subscribed: no second frame, nothing sent twice
    g.pump(gen.markets.base_ts_ms)
    books = sum(f.kind == "snapshot" for f in g.frames) + len(g.session._held)
    assert books == len(assets)
    g.session.receive(b"PING", 0)  # a server never sends it, but nothing breaks: dead-lettered
    server.receive_text("PING")
    assert server.data_to_send() == ["PONG"]
    server.drop_next = 3
    server.redeliver_next = 1
    server.deliver(batches[0])
    server.out.append('{"event_type":"price_change","market":')  # what the server's malformed fault writes
    bad: list = []  # type: ignore[type-arg]
    gen.bad_delta(bad)  # the emulator's badnumber fault: a venue event with an out-of-range number
    server.deliver(bad)
    g.pump(batches[0][-1][3])
    assert server.suppressed == 3 and server.redelivered == 1 and profile.bad == 1
    assert len(g.dead) == 3  # the stray PING, the malformed frame, the bad number (named by its field)
    assert "malformed" in g.dead[0] and "truncated" in g.dead[1] and "price: 1E+1000000" in g.dead[2]
    keys = [f.event_key for f in g.frames if f.kind in ("delta", "trade")]
    assert len(keys) == len(set(keys))  # a re-delivered copy gets n + 1: a new key (a duplicate row, documented)


def test_discovery_walks_the_emulators_gamma_listing() -> None:
    from urllib.parse import parse_qs, urlsplit

    from venue_sim.markets import ST_FINALIZED
    from venues.polymarket.discovery import Pager, assets_by_condition
    from venues.polymarket.emulator import gamma_keyset_page

    table = MarketTable(7, SEED, 1_767_225_600_000)
    table.set_status(3, ST_FINALIZED, 1_767_225_600_000)
    profile = Profile(SEED, table.ticker)
    pager = Pager("gamma", base_url="http://sim", limit=2)
    found = []
    while (url := pager.next_url()) is not None:
        query = parse_qs(urlsplit(url).query)
        found += pager.feed(
            gamma_keyset_page(profile, table, query.get("after_cursor", [""])[0], int(query["limit"][0]))
        )
    assets = assets_by_condition(found)
    assert pager.pages == 3 and len(assets) == 6
    assert assets == {profile.ids(m)[0]: list(profile.ids(m)[1:]) for m in (0, 1, 2, 4, 5, 6)}


def _twin_head(batches: list, profile: Profile) -> tuple[int, int]:  # type: ignore[type-arg]
    """(batch index, message index) of the first price_change whose next message changes the same level in the same
    venue millisecond (the generator's identical-delta twin: on Polymarket, two new sizes of one level)."""
    for b, batch in enumerate(batches):
        outs = profile.batch(batch)
        bodies = {e[0]: (e[2], e[3], e[4]) for e in batch}
        for i in range(len(outs) - 1):
            a, nxt = outs[i], outs[i + 1]
            twin = a.event_id and nxt.event_id == a.event_id + 1 and bodies[a.event_id] == bodies[nxt.event_id]
            if twin and b'"price_change"' in a.data:
                return b, i
    raise AssertionError("no twin in the generated stream")


def test_a_gatherer_that_lost_a_change_keys_the_next_change_of_its_level_as_the_others_do() -> None:
    """The venue loses (``drop`` fault, silent on this wire) the first of two changes of one level in one venue ms on
    g2's connection: g2's copy of the second change must get the key g1's copy of it has, not a key of its own (which
    dedup would store as a second row: the Polymarket ``duplicated: 2`` of the all-venues e2e test, one row per token).
    """
    _, profile, batches, g1, g2 = two_gatherers()
    head_batch, head = _twin_head(batches, profile)
    for b, batch in enumerate(batches):
        outs = profile.batch(batch)
        g1.server.deliver_outs(outs)
        if b == head_batch:
            g2.server.deliver_outs(outs[:head])
            g2.server.drop_next = 1  # the venue's drop fault: the twin's first change never reaches g2
            g2.server.deliver_outs(outs[head:])
            assert g2.server.suppressed == 1
        else:
            g2.server.deliver_outs(outs)
        for g in (g1, g2):
            g.pump(batch[-1][3])
            g.session.tick(g.now)
    for g in (g1, g2):
        g.session.flush(g.now)
    assert g2.session.stats.book_mismatch == 0  # the loss shows nowhere: the second change states the level's size
    k1 = [f.event_key for f in g1.frames if f.kind == "delta"]
    k2 = [f.event_key for f in g2.frames if f.kind == "delta"]
    assert len(k2) == len(k1) - 2  # the lost message had one entry per token
    assert set(k2) - set(k1) == set()  # every copy of g2 is a copy of a message g1 has: no second row
    assert len(set(k1)) == len(k1)  # and g1's messages all stay distinct
