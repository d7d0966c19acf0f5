"""Where a Kalshi snapshot is placed when it arrives inside a burst of snapshots (venues.kalshi.snapshots).

A (re)subscription of thousands of markets is answered by a burst of snapshots, and the market's deltas reach the
connection only after the whole burst. When the gatherer needs longer than ``hold_ns`` to read the burst (a loaded
machine), an early snapshot of the burst must still be placed by the first timestamped message after it, never at
its own receive time: the venue took it before that, and deltas stamped in between are not in its book.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sink.book import DeltaRow, SnapshotRow, contains
from venues.kalshi.snapshots import BURST_MAX_HOLDS, SnapshotPlacer

MS = 1_000_000
HOLD = 1_000 * MS
TICK = 250 * MS  # the gatherer's watchdog calls expire() about this often


def _placer() -> tuple[SnapshotPlacer, list[tuple[str, int, list[str]]]]:
    placed: list[tuple[str, int, list[str]]] = []
    placer = SnapshotPlacer(lambda p, b, after: placed.append((p.market, b, list(after))), hold_ns=HOLD)
    return placer, placed


def _row(placed: tuple[str, int, list[str]]) -> SnapshotRow:
    _, b, after = placed
    return SnapshotRow(b, "s", [], [], frozenset(after))


def _delta(ts_ms: int, key: str) -> DeltaRow:
    return DeltaRow(ts_ms, key, "yes", Decimal("0.58"), Decimal(13))


def _run(placer: SnapshotPlacer, timeline: list[tuple[int, Any]], first_tick: int, end: int) -> None:
    """Feed receipts ``(recv_ns, action)`` in time order, with the watchdog's ``expire`` every TICK in between."""
    tick = first_tick
    for recv_ns, action in sorted(timeline, key=lambda item: item[0]):
        while tick <= recv_ns:
            placer.expire(tick)
            tick += TICK
        action()
    while tick <= end:
        placer.expire(tick)
        tick += TICK


def test_early_snapshot_of_a_slow_burst_is_placed_by_the_delta_after_it() -> None:
    """The demo run's case (KXSIM-E5-M50): the venue took M's snapshot between its deltas at 447_203 and 447_434 ms;
    the gatherer received it at 447_690 ms, then 7000 more snapshots until 449_040 ms (longer than the 1 s hold),
    then the delta at 447_434 ms. Placed at its receive time, the snapshot would claim that delta."""
    placer, placed = _placer()
    t0 = 447_690 * MS
    timeline: list[tuple[int, Any]] = [(t0, lambda: placer.snapshot(2, "M", t0, None))]
    for i in range(1, 7000):
        at = t0 + i * 193_000  # 0.193 ms apart: the burst lasts 1.35 s
        timeline.append((at, lambda at=at, i=i: placer.snapshot(2, f"O{i}", at, None)))
    after = 449_236 * MS

    def delta_after() -> None:
        placer.delta(2, "M", 447_434, "d:late:1")
        placer.clock(447_434)

    timeline.append((after, delta_after))
    _run(placer, timeline, t0 + TICK // 2, after + 3 * HOLD)
    placer.close(after + 4 * HOLD)
    mine = [p for p in placed if p[0] == "M"]
    assert len(mine) == 1
    snapshot = _row(mine[0])
    assert contains(snapshot, _delta(447_203, "d:inside:1"))
    assert not contains(snapshot, _delta(447_434, "d:late:1")), f"placed at {mine[0][1:]}: claims a later delta"


def test_quiet_connection_is_placed_by_the_clock_once_the_burst_is_over() -> None:
    """Nothing timestamped follows the burst: each snapshot is placed at its receive time, a hold after the burst."""
    placer, placed = _placer()
    t0 = 10_000 * MS
    timeline = [(t0 + i * 300 * MS, lambda i=i: placer.snapshot(1, f"M{i}", t0 + i * 300 * MS, None)) for i in range(6)]
    last = t0 + 5 * 300 * MS
    _run(placer, timeline, t0 + TICK // 2, last + HOLD - TICK)
    assert placed == [], "placed while snapshots still arrived"
    _run(placer, [], last + HOLD, last + HOLD + TICK)
    assert sorted(placed) == [(f"M{i}", 10_000 + i * 300, []) for i in range(6)]
    assert placer.clock_placed == 6


@st.composite
def burst_run(draw: Any) -> dict[str, Any]:
    """Deltas of M (venue ms), the index before which the venue took M's snapshot, when the gatherer received it, the
    burst of other markets' snapshots after it (shorter than the cap on a burst's wait), and the connection's
    timestamped messages after the burst (M's later deltas and other markets' messages, in venue order, each
    received less than a hold after its venue time and after the burst, those of one venue millisecond together)."""
    n = draw(st.integers(0, 12))
    ts = 100_000
    deltas = []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 1, 5, 120, 400, 1_500]))
        deltas.append(ts)
    cut = draw(st.integers(0, n))
    lo = deltas[cut - 1] if cut else 99_000
    hi = deltas[cut] if cut < n else lo + 2_000
    taken = draw(st.integers(lo, hi))  # venue time of the snapshot (the venue stamps in the order it applies)
    recv = taken * MS + draw(st.integers(0, 900)) * MS
    gap = draw(st.sampled_from([1, 20, 90, 300])) * MS
    # bursts that end (with a hold for what follows them to arrive) within the cap of BURST_MAX_HOLDS holds: a longer
    # one's snapshots are clock-placed at the cap (test_snapshots_that_keep_coming_wait_at_most_the_burst_cap)
    burst = draw(st.integers(0, min(40, (BURST_MAX_HOLDS - 2) * HOLD // gap)))
    again = draw(st.integers(0, burst))  # > 0: the burst's snapshot at this index is M's again (a get_snapshot)
    others = sorted(draw(st.lists(st.integers(taken, hi + 3_000), max_size=6)))
    return {
        "again": again,
        "deltas": deltas,
        "cut": cut,
        "recv": recv,
        "burst": burst,
        "gap": gap,
        "others": others,
        "lat": draw(st.lists(st.integers(0, 999), min_size=n + len(others), max_size=n + len(others))),
    }


@settings(max_examples=300, deadline=None)
@given(burst_run())
def test_snapshot_in_a_burst_contains_exactly_the_deltas_before_it(run: dict[str, Any]) -> None:
    deltas, cut, recv = run["deltas"], run["cut"], run["recv"]
    placer, placed = _placer()
    timeline: list[tuple[int, Any]] = [(recv, lambda: placer.snapshot(1, "M", recv, None))]
    burst_end = recv
    for i in range(1, run["burst"] + 1):
        at = burst_end = recv + i * run["gap"]
        market = "M" if i == run["again"] else f"O{i}"
        timeline.append((at, lambda at=at, market=market: placer.snapshot(1, market, at, None)))
    keys = [f"d:{i}:1" for i in range(len(deltas))]
    later = sorted(
        [(ts, 0, keys[i]) for i, ts in enumerate(deltas) if i >= cut] + [(ts, 1, "") for ts in run["others"]]
    )
    prev, prev_ts = burst_end, None
    for (ts, is_other, key), lat in zip(later, run["lat"], strict=False):
        # messages of one venue millisecond arrive together (one venue write): the module's documented assumption
        at = prev = prev if ts == prev_ts else max(prev + 1_000, burst_end + 1_000, ts * MS + lat * MS)
        prev_ts = ts

        def receive(ts: int = ts, is_other: int = is_other, key: str = key) -> None:
            if placer.pending and not is_other:
                placer.delta(1, "M", ts, key)
            if placer.awaiting_clock:
                placer.clock(ts)

        timeline.append((at, receive))
    _run(placer, timeline, recv + TICK // 3, prev + 2 * HOLD)
    placer.close(prev + 3 * HOLD)
    mine = [p for p in placed if p[0] == "M"]
    assert len(mine) == (2 if run["again"] else 1)
    for one in mine:
        snapshot = _row(one)
        assert [contains(snapshot, _delta(ts, keys[i])) for i, ts in enumerate(deltas)] == [
            i < cut for i in range(len(deltas))
        ]


def test_superseded_snapshot_that_saw_nothing_takes_the_newer_ones_position() -> None:
    """Two snapshots of M on one sid (a get_snapshot inside a burst) with nothing timestamped between them hold the
    same deltas: the older one is placed where the newer one is, not at its own receive time."""
    placer, placed = _placer()
    placer.snapshot(2, "M", 500_400 * MS, "old")
    placer.snapshot(2, "O", 500_600 * MS, None)
    placer.snapshot(2, "M", 500_900 * MS, "new")
    placer.delta(2, "M", 500_100, "d:late:1")
    placer.clock(500_100)
    placer.expire(502_000 * MS)
    mine = sorted((b, after) for market, b, after in placed if market == "M")
    assert mine == [(500_100, ["d:late:1"]), (500_100, ["d:late:1"])]
    assert all(not contains(SnapshotRow(b, "s", [], [], frozenset(a)), _delta(500_100, "d:late:1")) for b, a in mine)


def test_snapshots_that_keep_coming_wait_at_most_the_burst_cap() -> None:
    """A connection receiving a snapshot every half hold and nothing timestamped (quiet markets subscribed one by one,
    or one market re-snapshotted) is never quiet for a hold: each snapshot is still clock-placed once it has waited
    BURST_MAX_HOLDS holds, and a re-snapshotted market's superseded twins stay bounded."""
    waited: list[int] = []
    now = [0]
    placer = SnapshotPlacer(lambda p, b, after: waited.append(now[0] - p.recv_ns), hold_ns=HOLD)
    start = 1_000_000 * MS
    most_twins = 0
    for i in range(240):  # 120 holds: a snapshot every half hold, every other one of the same market
        at = start + i * HOLD // 2
        placer.snapshot(1, "M" if i % 2 == 0 else f"Q{i}", at, None)
        most_twins = max(most_twins, *(len(p.twins) for p in placer.pending.values()))
        for tick in (at + TICK, at + 2 * TICK - 1):
            now[0] = tick
            placer.expire(tick)
    assert len(waited) >= 200, f"only {len(waited)} of 240 snapshots placed while snapshots kept coming"
    assert max(waited) <= BURST_MAX_HOLDS * HOLD + TICK, f"a snapshot waited {max(waited) / HOLD:.1f} holds"
    assert most_twins <= 2 * BURST_MAX_HOLDS
