"""A dedup replay of Kalshi lifecycle copies stores no event twice (dedup + the sink's real write path, no Kafka).

The gatherers key a lifecycle message with an anchor before it backward after ``MAX_WAIT_NS`` (the capped wait), a
copy that saw the next anchor in time leads with its forward key, a loose copy (a restarted gatherer) has only the
forward key: the live run's winner and a replay's winner (``mdpipe replay dedup``: fresh state, another read order)
can be different copies with different event keys. Both runs' events are loaded into ONE database through
:class:`sink.store.Store`, as the live sink and the replay's load do; every venue message must be one row.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable

import msgspec
import psycopg
import pytest

from dedup_stream.logic import Deduper, MemoryStore, Origin, Verdict
from dedup_stream.normalise import decision_event
from mdpipe.config import PostgresConfig
from schemas import RawFrame, encode_event, encode_raw
from sink.batch import Batch, Source
from sink.migrate import migrate
from sink.store import Store
from tests.venues.kalshi.test_lifecycle_copies import MARKET, Msg, Sub, simulate, three_gatherers
from venues.kalshi.anchors import MAX_WAIT_NS

pytestmark = pytest.mark.integration

S = 1_000_000_000
MS = 1_000_000


def flowing_stream(n: int = 16, every_ms: int = 300) -> list[Msg]:
    """Anchor X, ``n`` distinct non-anchor bodies every ``every_ms`` (the stream never stalls), anchor Y: most of
    the bodies wait longer than MAX_WAIT_NS for Y, so clean copies are keyed backward at the cap."""
    out = [Msg("X", True, 1 * S)]
    out += [Msg(f"m{i}", False, 1 * S + i * every_ms * MS) for i in range(1, n + 1)]
    out.append(Msg("Y", True, 1 * S + (n + 1) * every_ms * MS))
    assert (n + 1) * every_ms * MS > 2 * MAX_WAIT_NS
    return out


def with_payloads(frames: list[tuple[int, RawFrame]], stream: list[Msg]) -> list[tuple[int, RawFrame]]:
    """The simulation's frames with real market_lifecycle_v2 bodies (the payload names the venue position)."""
    out = []
    for t, frame in frames:
        pos = int(frame.payload)
        msg = stream[pos - 1]
        body: dict[str, object] = {"market_ticker": MARKET, "pos": pos}
        body.update({"event_type": "created", "open_ts": 1_700_000_000 + pos} if msg.anchor else {})
        body.update({} if msg.anchor else {"event_type": "deactivated", "is_deactivated": True})
        envelope = {"type": "market_lifecycle_v2", "sid": frame.sid, "seq": frame.seq, "msg": body}
        out.append((t, msgspec.structs.replace(frame, payload=json.dumps(envelope).encode())))
    return out


def ordered(frames: list[tuple[int, RawFrame]], order: list[str] | None, seed: int = 0) -> list[RawFrame]:
    """Emission order (``order`` None and seed 0: the live run), gatherer topics one after another (``order``), or a
    random interleaving that keeps each topic's order (``order`` None, seed > 0)."""
    by_g: dict[str, list[RawFrame]] = {}
    for _, frame in sorted(frames, key=lambda x: x[0]):
        by_g.setdefault(frame.gatherer, []).append(frame)
    if order is not None:
        return [f for g in order for f in by_g[g]]
    if seed == 0:
        return [f for _, f in sorted(frames, key=lambda x: x[0])]
    rnd = random.Random(seed)
    queues = {g: list(fs) for g, fs in by_g.items()}
    out = []
    while any(queues.values()):
        out.append(queues[rnd.choice([g for g, q in queues.items() if q])].pop(0))
    return out


def dedup_events(frames: list[RawFrame]) -> list[bytes]:
    """One dedup run from a fresh state (as ``mdpipe replay dedup`` starts): every record it emits, in order."""
    deduper = Deduper(MemoryStore())
    offsets: Counter[str] = Counter()
    out = []
    for frame in frames:
        topic = f"raw.{frame.gatherer}"
        origin = Origin(topic, 0, offsets[topic])
        offsets[topic] += 1
        decision = deduper.decide(encode_raw(frame), origin)
        if decision.emit or decision.verdict is getattr(Verdict, "ALIAS", None):
            out.append(encode_event(decision_event(decision)))
    return out


def load(dsn: str, records: list[bytes], first_offset: int) -> None:
    """The sink's write path: one batch of ``events`` records, committed by :class:`Store`."""
    store = Store(dsn, "g-lifecycle-replay")
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, first_offset + i, r) for i, r in enumerate(records)])
        result = store.write(batch, lambda dead: None)
        assert not result.dead
    finally:
        store.close()


def rows_per_position(dsn: str) -> Counter[int]:
    with psycopg.connect(dsn) as conn:
        got = conn.execute("SELECT (details::jsonb->>'pos')::int FROM market_lifecycle").fetchall()
    return Counter(p for (p,) in got)


def run_live_then_replays(dsn: str, subs: list[Sub], stream: list[Msg], **kw: object) -> None:
    frames = with_payloads(simulate(stream, subs, **kw), stream)  # type: ignore[arg-type]
    delivered = {p for p in range(1, len(stream) + 1) if any(s.gets(p) for s in subs)}
    offset = 0
    live = dedup_events(ordered(frames, None))
    load(dsn, live, offset)
    offset += len(live)
    assert rows_per_position(dsn) == Counter(delivered), "the live run alone"
    gatherers = sorted({s.gatherer for s in subs})
    orders: list[tuple[list[str] | None, int]] = [(list(p), 0) for p in itertools.permutations(gatherers)]
    orders += [(None, seed) for seed in range(1, 5)]
    for order, seed in orders:
        replay = dedup_events(ordered(frames, order, seed))
        load(dsn, replay, offset)  # the live sink and the replay's load both read these records
        offset += len(replay)
        got = rows_per_position(dsn)
        assert got == Counter(delivered), (order, seed, {p: n for p, n in got.items() if n != 1})


@pytest.fixture
def lifecycle_db(make_database: Callable[..., str]) -> str:
    dsn = make_database()
    migrate(dsn, PostgresConfig(timescaledb="off"))
    return dsn


def test_replays_in_any_order_after_a_restarted_gatherer_store_each_message_once(lifecycle_db: str) -> None:
    # g1, g2 clean (keyed backward at the cap, the last ones forward), g3 restarted after X (loose: forward only)
    run_live_then_replays(lifecycle_db, three_gatherers(restarted_from=3, max_wait_ns=MAX_WAIT_NS), flowing_stream())


def test_replays_with_a_gatherer_that_saw_the_next_anchor_in_time_store_each_message_once(lifecycle_db: str) -> None:
    # g2's receive clock runs 400 ms late: for the messages just before Y it leads with the forward key while g1 was
    # already keyed backward at the cap; g3 is loose
    stream = flowing_stream(n=10, every_ms=200)
    subs = three_gatherers(restarted_from=2, max_wait_ns=MAX_WAIT_NS)
    run_live_then_replays(lifecycle_db, subs, stream, skew_ns={"g2": 400 * MS})


def test_a_replay_after_the_live_row_was_deleted_restores_it_once(lifecycle_db: str) -> None:
    # mdpipe replay dedup after rows were lost: the replay's row comes back (by whichever copy wins), once
    stream = flowing_stream()
    subs = three_gatherers(restarted_from=3, max_wait_ns=MAX_WAIT_NS)
    frames = with_payloads(simulate(stream, subs), stream)
    live = dedup_events(ordered(frames, None))
    load(lifecycle_db, live, 0)
    with psycopg.connect(lifecycle_db) as conn:
        conn.execute("DELETE FROM market_lifecycle WHERE (details::jsonb->>'pos')::int BETWEEN 4 AND 9")
    replay = dedup_events(ordered(frames, ["g3", "g2", "g1"]))
    load(lifecycle_db, replay, len(live))
    assert rows_per_position(lifecycle_db) == Counter(range(1, len(stream) + 1))


def test_replays_after_a_stall_that_split_the_gatherers_store_each_message_once(lifecycle_db: str) -> None:
    # no cap: g1 lost m6 (a gap), so its stream is silent for longer than the hold after m5 and it keys m1..m5 at the
    # stall (backward keys only); g2 receives m6 within the hold and keys m1..m6 forward at Y; g3 restarted after X
    # (loose). The copies lead with different keys: the case main's e2e replay stored twice
    hold = 5 * S  # test_lifecycle_copies.HOLD
    bodies = [Msg(f"m{i}", False, 1 * S + i * 100 * MS) for i in range(1, 6)]
    m6 = Msg("m6", False, bodies[-1].t_ns + hold - 500 * MS)
    stream = [Msg("X", True, 1 * S), *bodies, m6, Msg("Y", True, m6.t_ns + hold - 500 * MS)]
    subs = three_gatherers(restarted_from=3, g1a=frozenset({7}), g1b=frozenset({7}))
    run_live_then_replays(lifecycle_db, subs, stream)
