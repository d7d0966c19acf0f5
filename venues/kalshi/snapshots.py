"""Where a book snapshot sits in its market's delta stream, decided by the gatherer that received it (pure logic).

A Kalshi ``orderbook_snapshot`` carries no time: it is "the book now", sent when a subscription starts and on
``get_snapshot``. To rebuild a book at any time from stored rows (:mod:`sink.book`), a snapshot row must say which of
the market's deltas it already contains — and the deltas in the database may be any gatherer's copies, so the answer
must be in terms every copy shares: venue time (``ts_ms``) and event keys.

On one subscription the venue sends the snapshot and then every later delta of the market, in order. So the first
deltas of the market that arrive AFTER the snapshot on the same sid are exactly the ones it does not contain. The
snapshot's position is ``(B, after)``: ``B`` = the smallest venue time among the deltas that followed it,
``after`` = the keys of those at exactly ``B``. It contains every delta with ``ts < B``, those at ``B`` not in
``after``, and none with ``ts > B`` (the venue stamps deltas in the order it applies them). To see those deltas the
snapshot waits ``hold_ns`` before it is emitted (deltas of one venue millisecond arrive together, so a short hold
suffices), and it is emitted at once when its subscription or connection ends.

If no delta of the market followed within the hold (a quiet market), ``B`` is the venue time of the first message of
any market that reached the same connection after the snapshot (every later delta of this market comes after that
message, every earlier one is in the snapshot), with an empty ``after``. If no timestamped message arrived on the
connection (a quiet connection), ``B`` is the gatherer's own clock at the snapshot's receipt: correct while the
venue's clock and the network delay together are off by less than the hold (documented; counted as
``clock_placed``).

A connection still receiving snapshots is not quiet. The venue answers a (re)subscription of thousands of markets
with a burst of snapshots and sends the deltas that followed each of them only after the whole burst, so on a loaded
machine the first snapshots of a burst can wait longer than the hold with nothing timestamped behind them although
deltas stamped after them (and before their receipt) are on their way. A snapshot that has seen no timestamped
message therefore waits until no snapshot has arrived on the connection for ``hold_ns`` (the burst is over and its
followers had a hold to arrive) before the clock places it, but never longer than :data:`BURST_MAX_HOLDS` holds (a
connection that keeps receiving snapshots and nothing timestamped, e.g. quiet markets subscribed one by one, is not
a burst that ends). A snapshot superseded by a newer one of its market on its sid before anything timestamped
followed it holds the same deltas as the newer one and takes its position.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BURST_MAX_HOLDS", "PendingSnapshot", "SnapshotPlacer"]

# The longest a snapshot that has seen nothing timestamped waits for its connection's burst of snapshots to end, in
# holds: far more than a loaded gatherer needs to read a resubscription's burst, and a bound on the wait (and on a
# market's superseded twins) where snapshots keep coming.
BURST_MAX_HOLDS = 10


class PendingSnapshot:
    """A snapshot waiting for its position. ``frame`` is what the caller needs to emit it later."""

    __slots__ = ("after", "b", "first_after", "frame", "market", "placed", "recv_ns", "sid", "twins")

    def __init__(self, sid: int, market: str, recv_ns: int, frame: object) -> None:
        self.sid = sid
        self.market = market
        self.recv_ns = recv_ns
        self.frame = frame
        self.b: int | None = None  # smallest ts of the market's deltas that followed on the sid
        self.after: list[str] = []  # their keys at exactly b
        self.first_after: int | None = None  # ts of the first timestamped message on the connection after it
        self.placed = False
        self.twins: list[PendingSnapshot] = []  # older snapshots of the market it superseded unseen (same position)


class SnapshotPlacer:
    """Pending snapshots of one connection; ``emit(pending, venue_ms, after_keys)`` is called when each is placed."""

    def __init__(self, emit: Callable[[PendingSnapshot, int, list[str]], None], hold_ns: int = 1_000_000_000) -> None:
        self._emit = emit
        self.hold_ns = hold_ns
        self.pending: dict[tuple[int, str], PendingSnapshot] = {}
        self._awaiting_clock: list[PendingSnapshot] = []
        self.last_snapshot_ns = 0  # receipt of the connection's latest snapshot: a burst is over a hold after it
        self.clock_placed = 0

    def snapshot(self, sid: int, market: str, recv_ns: int, frame: object) -> None:
        self.last_snapshot_ns = max(self.last_snapshot_ns, recv_ns)
        old = self.pending.pop((sid, market), None)
        p = PendingSnapshot(sid, market, recv_ns, frame)
        if (
            old is not None
            and old.b is None
            and old.first_after is None
            and recv_ns - (old.twins[-1] if old.twins else old).recv_ns < self.hold_ns * BURST_MAX_HOLDS
        ):
            # a newer snapshot on the same sid with nothing timestamped between: no delta of the market came between
            # them, so both hold the same deltas and the older one is placed where the newer one will be
            p.twins = [old, *old.twins]
        elif old is not None:  # a newer snapshot on the same sid: the older one is placed with what it saw
            self._place(old, recv_ns)
        self.pending[(sid, market)] = p
        self._awaiting_clock.append(p)

    def delta(self, sid: int, market: str, ts_ms: int | None, key: str) -> None:
        """A delta of ``market`` arrived on ``sid`` (call only while :attr:`pending` is non-empty)."""
        p = self.pending.get((sid, market))
        if p is None or ts_ms is None:
            return
        if p.b is None or ts_ms < p.b:
            p.b = ts_ms
            p.after = [key]
        elif ts_ms == p.b:
            p.after.append(key)

    def clock(self, ts_ms: int) -> None:
        """A message with venue time ``ts_ms`` arrived on this connection (call only while awaiting)."""
        for p in self._awaiting_clock:
            if p.first_after is None:
                p.first_after = ts_ms
        self._awaiting_clock.clear()

    @property
    def awaiting_clock(self) -> bool:
        return bool(self._awaiting_clock)

    def expire(self, now_ns: int) -> None:
        """Place the snapshots held at least ``hold_ns``; one that has seen no timestamped message only once no
        snapshot has arrived for ``hold_ns`` either (the connection is quiet, not busy with a burst), or once it has
        waited :data:`BURST_MAX_HOLDS` holds."""
        hold = self.hold_ns
        in_burst = now_ns - self.last_snapshot_ns < hold
        longest = hold * BURST_MAX_HOLDS
        due = [
            p
            for p in self.pending.values()
            if now_ns - p.recv_ns >= hold
            and not (in_burst and p.b is None and p.first_after is None and now_ns - p.recv_ns < longest)
        ]
        for p in due:
            del self.pending[(p.sid, p.market)]
            self._place(p, now_ns)

    def end_sid(self, sid: int, now_ns: int) -> None:
        """The subscription ended: its snapshots are placed now."""
        for key in [k for k in self.pending if k[0] == sid]:
            self._place(self.pending.pop(key), now_ns)

    def close(self, now_ns: int) -> None:
        """The connection ended: every pending snapshot is placed now."""
        pending = list(self.pending.values())
        self.pending.clear()  # the same dict: callers keep a reference to test it cheaply
        for p in pending:
            self._place(p, now_ns)

    def _place(self, p: PendingSnapshot, now_ns: int) -> None:
        if not self.pending:
            self._awaiting_clock.clear()
        if p.b is not None:
            b, after = p.b, p.after
        elif p.first_after is not None:
            b, after = p.first_after, []
        else:
            self.clock_placed += 1 + len(p.twins)
            b, after = p.recv_ns // 1_000_000, []
        for each in (*p.twins, p):
            each.placed = True
            self._emit(each, b, after)
