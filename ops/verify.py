"""Ground-truth verification: judge the database against what the venue itself says it generated and delivered.

`mdpipe verify` is independent of the thing it judges: what is *expected* comes from the emulator's truth file (every
event it generated, :mod:`venue_sim.truth`) and its record of deliveries (:mod:`venue_sim.record`, indexed by
:mod:`ops.verify_record`), never from the pipeline's own rows. Matching is by content, never by the pipeline's
event keys, so a bug in key derivation or dedup cannot hide itself. This module is the pure logic (no I/O);
:mod:`ops.verify_db` reads the database and :mod:`ops.verify_cli` prints the report.

Content identity of a venue event (all decimals normalised, so "0.4300" == "0.43"):

=========  ==============================================================================
kind       identity
=========  ==============================================================================
trade      trade_id (a venue without trade ids: market, ts_ms, yes_price, count, taker_side, as a multiset)
delta      market, side, price, delta, ts_ms   (identical bodies counted as a multiset)
ticker     market, ts_ms and every price/size field
lifecycle  market, event_type, result, settlement_value, open/close/determination/settled ts, is_deactivated,
           the remaining fields (``details``, compared as parsed JSON)
=========  ==============================================================================

The rules, per venue event ``e`` of market ``m`` with id ``i``:

1. **Delivered.** ``e`` travels on the channel of its kind (the record's ``channel_of_kind``; the emulator's native
   protocol: delta -> ``orderbook_delta``, trade -> ``trade``, ticker -> ``ticker``, lifecycle ->
   ``market_lifecycle_v2``; a venue profile's own, e.g. one channel for every kind). It was delivered to a gatherer
   when a sid of that channel on one of the gatherer's connections covered ``m`` at ``i`` and ``i`` is not in that
   sid's ``Suppressed`` ids. The number of gatherers it reached gives the coverage histogram (``held_by``: 0, 1, 2, 3
   gatherers).
2. **Expected** = delivered to at least one gatherer and not a ``BadMessage``. An expected event absent from the
   database is a *reported loss* when every gatherer it was delivered to has a ``coverage_gaps`` row covering ``m``
   (``{*}`` = all) and its channel (``''`` = all) around its generation time, else it is ``missing`` (a bug).
   Around = within ``gap_slack`` (2 s): gap windows are stamped with the gatherer's receive clock and bounded by the
   receive times of the messages around the hole, while ``e`` carries the venue's generation time; a lost message
   was generated up to one delivery latency before the window opened (the last good message was received after it
   was generated), and the window may be noticed late (a dead connection is detected after its silence).
   Identical events (same identity) are indistinguishable: when ``k`` of ``n`` copies are absent, as many of them
   as possible are taken from the copies that were reported.
3. **Not delivered to any gatherer.** Excused (``not_subscribed``) when the market was not live (``MarketLive``),
   or when no gatherer had subscribed the market's channel yet AND that first subscription came within
   ``subscribe_grace`` (10 s) of the market becoming live or of the first gatherer connecting, whichever is later.
   Anything else (a live market never subscribed, subscribed late, or released by every gatherer) is ``uncovered``:
   a loss the pipeline caused, unless every gatherer of the run had a gap open over it (then a reported loss).
   ``markets_uncovered`` counts the markets with an uncovered event. A market with events that should be in the
   database (expected, uncovered or reported lost) but no row at all in any table is ``markets_without_rows``.
4. **Rows** are matched to venue events by identity as a multiset: rows beyond the expected copies of an identity
   are ``duplicated``; rows of an identity with no expected copy are ``unexpected`` (this includes a row of a
   ``BadMessage``: bad input must be dead-lettered, never stored). ``bad_input`` counts the venue's bad messages.
5. **Snapshots** are matched by content against the venue's ``SnapshotSent`` (:mod:`ops.verify_books`);
   ``snapshots_unmatched`` counts snapshot rows equal to none of their market's.
6. **Books** rebuilt from the database equal the venue's at every ``BookCheckpoint`` (:mod:`ops.verify_books`).
7. **CLEAN** = missing, duplicated, unexpected, markets_uncovered, markets_without_rows, books_mismatched and
   snapshots_unmatched all 0. Reported losses are shown, not failed: the pipeline said where it was blind.

A venue whose messages are not the emulator's own (a profile, :meth:`venues.interface.Venue.truth_translator`) is
judged on the truth and record rewritten into its terms: its messages and markets, the books it sent, its channels.

Latency (venue generation -> database load, and venue -> gatherer receive) pairs each identity's generation times
with its rows' load times in order.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ops.verify_books import check_books, match_snapshots
from ops.verify_record import VenueRecord
from schemas.events import Ticker
from sink.book import Book, DeltaRow, SnapshotRow, exact

__all__ = [
    "DatabaseRows",
    "GapIndex",
    "GapWindow",
    "Observed",
    "Report",
    "Rules",
    "TruthItem",
    "compare",
    "identity",
    "iter_truth_items",
    "percentile",
]

Identity = tuple[Any, ...]
NS = 1_000_000_000

# Every value a ticker carries (the Ticker struct's own fields but its market id and the pipeline's hop stamps): the
# ticker's identity.
_BASE_FIELDS = {"v", "venue", "market", "event_key", "ts_ms", "recv_ns", "gatherer", "market_id"}
_BASE_FIELDS |= {"raw_ts_ms", "dedup_ns"}  # schemas.events: stamped by dedup, never the venue's
TICKER_VALUES: tuple[str, ...] = tuple(f for f in Ticker.__struct_fields__ if f not in _BASE_FIELDS)


def _n(value: Any) -> Any:
    """Normalise a decimal-ish value so that equal amounts compare equal ("0.4300" == "0.43")."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return exact(value)
    return value


def _json_identity(text: str | None) -> Any:
    """A JSON text as a hashable value independent of key order, spacing and number spelling (jsonb rewrites all
    three); None for no text."""
    if not text:
        return None

    def canon(v: Any) -> Any:
        if isinstance(v, dict):
            return ("{", *sorted((k, canon(x)) for k, x in v.items()))
        if isinstance(v, list):
            return ("[", *(canon(x) for x in v))
        return _n(v)

    return canon(json.loads(text, parse_float=Decimal, parse_int=Decimal))


def identity(kind: str, market: str, fields: dict[str, Any], trade_ids: bool = True) -> Identity:
    """The content identity of one venue event, from normalised Event-field names.

    ``fields`` uses the names of the ``schemas.events`` structs (and of the sink's columns). ``trade_ids``: the venue
    gives every trade its id (:attr:`venues.interface.Venue.trade_ids`); else a trade is its content (market, time,
    price, size, taker side) and identical fills count as a multiset.
    """
    if kind == "trade":
        if not trade_ids:
            price, count = _n(fields["yes_price"]), _n(fields["count"])
            return ("trade", market, fields["ts_ms"], price, count, fields["taker_side"])
        return ("trade", fields["trade_id"])
    if kind == "delta":
        return ("delta", market, fields["side"], _n(fields["price"]), _n(fields["delta"]), fields["ts_ms"])
    if kind == "ticker":
        return ("ticker", market, fields["ts_ms"], *(_n(fields.get(k)) for k in TICKER_VALUES))
    if kind == "lifecycle":
        return (
            "lifecycle",
            market,
            fields["event_type"],
            fields.get("result"),
            _n(fields.get("settlement_value")),
            *(fields.get(k) for k in ("open_ts", "close_ts", "determination_ts", "settled_ts")),
            fields.get("is_deactivated"),
            _json_identity(fields.get("details")),
        )
    raise ValueError(f"no identity for kind {kind!r}")


@dataclass(slots=True)
class TruthItem:
    """One event the venue generated."""

    id: int
    kind: str
    market: str
    identity: Identity | None  # None: the body does not even decode (only for bad input)
    gen_ns: int


@dataclass(slots=True)
class Observed:
    """One row found in the database."""

    kind: str
    market: str
    identity: Identity
    loaded_ns: int
    received_ns: int = 0  # when the winning gatherer received it


@dataclass(frozen=True, slots=True)
class GapWindow:
    """One ``coverage_gaps`` row: a window in which ``gatherer`` may have missed messages."""

    gatherer: str
    channel: str  # "" = every channel
    markets: frozenset[str] | None  # None = every market
    from_ns: int
    to_ns: int


class GapIndex:
    """Which gatherer reported a window covering a (channel, market, time)."""

    def __init__(self, gaps: Iterable[GapWindow], slack_ns: int) -> None:
        self.slack_ns = slack_ns
        self.by_gatherer: dict[str, list[GapWindow]] = defaultdict(list)
        for gap in gaps:
            self.by_gatherer[gap.gatherer].append(gap)

    def covers(self, gatherer: str, channel: str, market: str, at_ns: int) -> bool:
        slack = self.slack_ns
        return any(
            (not g.channel or g.channel == channel)
            and (g.markets is None or market in g.markets)
            and g.from_ns - slack <= at_ns <= g.to_ns + slack
            for g in self.by_gatherer.get(gatherer, ())
        )

    def all_cover(self, gatherers: Iterable[str], channel: str, market: str, at_ns: int) -> bool:
        """Every one of ``gatherers`` (at least one) reported a window over this event."""
        gatherers = list(gatherers)
        return bool(gatherers) and all(self.covers(g, channel, market, at_ns) for g in gatherers)


@dataclass(frozen=True)
class Rules:
    subscribe_grace_ns: int = 10 * NS  # rule 3
    gap_slack_ns: int = 2 * NS  # rule 2
    examples: int = 5  # per problem
    latency_after_ns: int = 0  # latencies only for events generated from then on (to leave out a warm-up)


@dataclass
class DatabaseRows:
    """What the database holds, as the comparison needs it (:func:`ops.verify_db.read_database`)."""

    observed: Iterable[Observed] = ()
    snapshots: dict[str, list[SnapshotRow]] = field(default_factory=dict)
    deltas: dict[str, list[DeltaRow]] = field(default_factory=dict)
    gaps: list[GapWindow] = field(default_factory=list)
    # the database's own book_at at each checkpoint (market, ts_ms) (None: no snapshot row at or before it); when
    # absent the books are rebuilt here from ``snapshots`` and ``deltas`` (:mod:`ops.verify_books`)
    books: dict[tuple[str, int], Book | None] | None = None


@dataclass
class Report:
    venue_events: int = 0
    bad_input: int = 0
    expected: int = 0
    not_subscribed: int = 0
    reported_losses: int = 0
    uncovered: int = 0
    markets_uncovered: int = 0
    markets_without_rows: int = 0
    held_by: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    matched: int = 0
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    snapshots: int = 0
    snapshots_sent: int = 0
    snapshots_matched: int = 0
    snapshots_unmatched: int = 0
    book_checkpoints: int = 0
    books_checked: int = 0
    markets_traded: int = 0  # markets with a delta delivered to a gatherer: every one should be books_checked
    books_compared: int = 0
    books_unchecked: int = 0
    books_mismatched: int = 0
    gatherers: list[str] = field(default_factory=list)
    other_clients: dict[str, int] = field(default_factory=dict)
    missing_by_kind: dict[str, int] = field(default_factory=dict)
    reported_by_kind: dict[str, int] = field(default_factory=dict)
    uncovered_by_kind: dict[str, int] = field(default_factory=dict)
    duplicated_by_kind: dict[str, int] = field(default_factory=dict)
    unexpected_by_kind: dict[str, int] = field(default_factory=dict)
    missing_examples: dict[str, list[str]] = field(default_factory=dict)
    reported_examples: list[str] = field(default_factory=list)
    uncovered_examples: list[str] = field(default_factory=list)
    markets_without_rows_examples: list[str] = field(default_factory=list)
    duplicated_examples: list[str] = field(default_factory=list)
    unexpected_examples: list[str] = field(default_factory=list)
    snapshot_examples: list[str] = field(default_factory=list)
    book_examples: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # venue -> database
    latency_by_kind: dict[str, dict[str, float]] = field(default_factory=dict)  # the same per kind of event
    receive_latency_ms: dict[str, float] = field(default_factory=dict)  # venue -> gatherer (the baseline hop)

    @property
    def clean(self) -> bool:
        return not (
            self.missing
            or self.duplicated
            or self.unexpected
            or self.markets_uncovered
            or self.markets_without_rows
            or self.books_mismatched
            or self.snapshots_unmatched
        )

    def as_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["clean"] = self.clean
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[rank]


def _add_example(bucket: list[str], text: str, limit: int) -> None:
    if len(bucket) < limit:
        bucket.append(text)


def _describe(item: TruthItem, gatherers: Iterable[str] = ()) -> str:
    to = ",".join(sorted(gatherers))
    return f"id {item.id} {item.market} {item.identity!r}" + (f" (delivered to {to})" if to else "")


class _Judge:
    """One comparison: the state shared by the rules of the module docstring."""

    def __init__(self, record: VenueRecord, gaps: GapIndex, rules: Rules) -> None:
        self.traded: set[str] = set()
        self.record = record
        self.gaps = gaps
        self.rules = rules
        self.report = Report(gatherers=list(record.gatherers), other_clients=dict(record.other_clients))
        # identity -> the expected event, or its copies when identical events share it (most identities have one)
        self.expected: dict[Identity, TruthItem | list[TruthItem]] = {}
        self.not_expected: dict[Identity, str] = {}  # identity of an undelivered or bad event -> why
        self.should_have_rows: set[str] = set()  # markets with an event that should be in the database
        self.uncovered_markets: set[str] = set()
        self.uncovered_by_kind: Counter[str] = Counter()
        self.reported_by_kind: Counter[str] = Counter()
        self.held: Counter[int] = Counter()

    def add_truth(self, item: TruthItem) -> None:
        report, record = self.report, self.record
        report.venue_events += 1
        channel = self.record.channel_of_kind[item.kind]
        gatherers = record.delivered(channel, item.market, item.id)
        self.held[len(gatherers)] += 1
        if item.id in record.bad:
            report.bad_input += 1
            if item.identity is not None:
                self.not_expected.setdefault(item.identity, f"bad input ({record.bad[item.id]})")
            return
        if item.identity is None:
            raise ValueError(f"truth event {item.id} ({item.kind} {item.market}) has no identity")
        if gatherers:
            if item.kind == "delta":
                self.traded.add(item.market)
            found = self.expected.get(item.identity)
            if found is None:
                self.expected[item.identity] = item
            elif isinstance(found, list):
                found.append(item)
            else:
                self.expected[item.identity] = [found, item]
            self.should_have_rows.add(item.market)
            return
        self.not_expected.setdefault(item.identity, "not delivered to any gatherer")
        why = self._uncovered_because(item, channel)
        if why is None:
            report.not_subscribed += 1
            return
        self.should_have_rows.add(item.market)
        if self.gaps.all_cover(record.gatherers, channel, item.market, item.gen_ns):
            report.reported_losses += 1
            self.reported_by_kind[item.kind] += 1
            _add_example(report.reported_examples, f"{_describe(item)}: {why}", self.rules.examples)
            return
        report.uncovered += 1
        self.uncovered_by_kind[item.kind] += 1
        if item.market not in self.uncovered_markets:
            self.uncovered_markets.add(item.market)
            _add_example(report.uncovered_examples, f"{_describe(item)}: {why}", self.rules.examples)

    def _uncovered_because(self, item: TruthItem, channel: str) -> str | None:
        """Why an undelivered event of a live market is the pipeline's loss; None when it is excused (rule 3)."""
        record = self.record
        if not record.live(item.market, item.id):
            return None
        first = record.first_subscription(channel, item.market)
        if first is None:
            return f"no gatherer ever subscribed {channel} of this live market"
        if item.id > first.after_id:
            return f"reached no gatherer ({channel} released, suppressed or disconnected everywhere) while live"
        ref = max(record.first_live_ns.get(item.market, 0), record.first_gatherer_ns or 0)
        late_s, grace_s = (first.at_ns - ref) / NS, self.rules.subscribe_grace_ns / NS
        if late_s <= grace_s:
            return None
        return f"first subscribed {late_s:.1f} s after it could have been (grace {grace_s:g} s)"

    def judge_rows(self, observed: Iterable[Observed], markets_with_rows: set[str]) -> None:
        report, limit = self.report, self.rules.examples
        # identity -> its row, or its rows when there are several (one identity hashed once per row; most have one)
        seen: dict[Identity, Observed | list[Observed]] = {}
        for row in observed:
            report.rows += 1
            markets_with_rows.add(row.market)
            ident = row.identity
            found = seen.get(ident)
            if found is None:
                seen[ident] = row
            elif isinstance(found, list):
                found.append(row)
            else:
                seen[ident] = [found, row]

        latencies: list[float] = []
        by_kind: dict[str, list[float]] = {}
        receive_latencies: list[float] = []
        missing_by_kind: Counter[str] = Counter()
        dup_by_kind: Counter[str] = Counter()
        after = self.rules.latency_after_ns
        for ident, venue in self.expected.items():
            got = seen.pop(ident, None)
            if type(venue) is TruthItem and type(got) is Observed:  # the common case: one event, one row
                report.expected += 1
                report.matched += 1
                if venue.gen_ns >= after:
                    latency = (got.loaded_ns - venue.gen_ns) / 1e6
                    latencies.append(latency)
                    by_kind.setdefault(venue.kind, []).append(latency)
                    if got.received_ns:
                        receive_latencies.append((got.received_ns - venue.gen_ns) / 1e6)
                continue
            copies = venue if isinstance(venue, list) else [venue]
            rows = [] if got is None else got if isinstance(got, list) else [got]
            report.expected += len(copies)
            if len(rows) < len(copies):
                self._absent(copies, len(copies) - len(rows), missing_by_kind)
            elif len(rows) > len(copies):
                extra = len(rows) - len(copies)
                report.duplicated += extra
                dup_by_kind[copies[0].kind] += extra
                _add_example(report.duplicated_examples, f"{ident!r} x{len(rows)} (venue sent {len(copies)})", limit)
            report.matched += min(len(rows), len(copies))
            gens = sorted(item.gen_ns for item in copies)
            for gen_ns, load_ns in zip(gens, sorted(r.loaded_ns for r in rows), strict=False):
                if gen_ns >= after:
                    latencies.append((load_ns - gen_ns) / 1e6)
                    by_kind.setdefault(copies[0].kind, []).append(latencies[-1])
            for gen_ns, recv_ns in zip(gens, sorted(r.received_ns for r in rows), strict=False):
                if recv_ns and gen_ns >= after:
                    receive_latencies.append((recv_ns - gen_ns) / 1e6)
        unexpected_by_kind: Counter[str] = Counter()
        for ident, got in seen.items():  # identities no expected event has
            rows = got if isinstance(got, list) else [got]
            report.unexpected += len(rows)
            unexpected_by_kind[rows[0].kind] += len(rows)
            why = self.not_expected.get(ident, "no such venue event")
            _add_example(report.unexpected_examples, f"{ident!r} x{len(rows)}: {why}", limit)
        report.missing_by_kind = dict(missing_by_kind)
        report.duplicated_by_kind = dict(dup_by_kind)
        report.unexpected_by_kind = dict(unexpected_by_kind)
        report.latency_ms = _distribution(latencies)
        report.latency_by_kind = {kind: _distribution(values) for kind, values in sorted(by_kind.items())}
        report.receive_latency_ms = _distribution(receive_latencies)

    def _absent(self, copies: list[TruthItem], absent: int, by_kind: Counter[str]) -> None:
        """``absent`` of these identical expected copies have no row: reported losses first, the rest missing."""
        report, limit = self.report, self.rules.examples
        reported, unreported = [], []
        for item in copies:
            channel = self.record.channel_of_kind[item.kind]
            gatherers = self.record.delivered(channel, item.market, item.id)
            covered = self.gaps.all_cover(gatherers, channel, item.market, item.gen_ns)
            (reported if covered else unreported).append((item, gatherers))
        n_reported = min(absent, len(reported))
        # identical events are told apart only by who received which: an example names every copy's gatherers
        twins = ""
        if len(copies) > 1:
            who = "; ".join(f"id {c.id} to {','.join(sorted(g)) or 'none'}" for c, g in reported + unreported)
            twins = f" (one of {len(copies)} identical venue events, {len(copies) - absent} rows: {who})"
        for item, gatherers in reported[:n_reported]:
            report.reported_losses += 1
            self.reported_by_kind[item.kind] += 1
            _add_example(report.reported_examples, _describe(item, gatherers) + twins, limit)
        for item, gatherers in unreported[: absent - n_reported]:
            report.missing += 1
            by_kind[item.kind] += 1
            _add_example(report.missing_examples.setdefault(item.kind, []), _describe(item, gatherers) + twins, limit)

    def finish(self, markets_with_rows: set[str]) -> Report:
        report = self.report
        report.markets_uncovered = len(self.uncovered_markets)
        report.uncovered_by_kind = dict(self.uncovered_by_kind)
        report.reported_by_kind = dict(self.reported_by_kind)
        top = max([3, len(self.record.gatherers), *self.held])
        report.held_by = {str(n): self.held.get(n, 0) for n in range(top + 1)}
        without = sorted(self.should_have_rows - markets_with_rows)
        report.markets_without_rows = len(without)
        report.markets_without_rows_examples = without[: self.rules.examples]
        report.markets_traded = len(self.traded)
        return report


def compare(
    truth: Iterable[TruthItem],
    record: VenueRecord,
    rows: DatabaseRows,
    rules: Rules | None = None,
    book_rule: Callable[[Any, Any, int], Book | None] | None = None,
) -> Report:
    """Judge the database rows against the venue's truth and record (the rules of the module docstring); books are
    rebuilt with ``book_rule`` when given (the venue's, :meth:`venues.interface.Venue.book_rule`)."""
    rules = rules or Rules()
    judge = _Judge(record, GapIndex(rows.gaps, rules.gap_slack_ns), rules)
    for item in truth:
        judge.add_truth(item)
    markets_with_rows = {market for market, snaps in rows.snapshots.items() if snaps}
    judge.judge_rows(rows.observed, markets_with_rows)
    report = judge.finish(markets_with_rows)

    snaps = match_snapshots(rows.snapshots, record.snapshots_sent, rules.examples)
    report.snapshots, report.snapshots_matched, report.snapshots_unmatched = snaps.rows, snaps.matched, snaps.unmatched
    report.snapshots_sent = record.snapshots_sent_count
    report.snapshot_examples = snaps.examples
    books = check_books(
        record.checkpoints, record, rows.snapshots, rows.deltas, rules.examples, rows.books, book_rule=book_rule
    )
    report.book_checkpoints, report.books_checked = books.checkpoints, books.checked
    report.books_compared, report.books_unchecked = books.compared, books.unchecked
    report.books_mismatched = len(books.mismatched)
    report.book_examples = books.examples
    return report


def _distribution(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()
    return {
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(values[-1], 1),
        "count": len(values),
    }


def iter_truth_items(
    events: Iterable[Any],
    bad_ids: Iterable[int] = (),
    venue: str | None = None,
    *,
    translator: Any = None,
    sent: Callable[[str, Book], None] | None = None,
) -> Iterator[TruthItem]:
    """Turn emulator ground-truth records (``venue_sim.truth.TruthEvent``) into comparable items.

    Bodies are normalised by ``venue``'s truth normaliser (:mod:`venues`; None: the default venue, whose emulator
    wrote the truth file), or, with ``translator`` (:class:`venues.interface.TruthTranslator`), turned into the
    venue's messages, one item per message (``sent`` hears every book the venue sent). A bad-input event
    (``bad_ids``) whose body does not decode or normalise gets no identity; any other event that does not is an error
    in the truth file.
    """
    from schemas.codec import SchemaError
    from venues import default_name, get_venue

    the_venue = get_venue(venue or default_name())
    trade_ids = the_venue.trade_ids
    bad = set(bad_ids)
    if translator is not None:
        for ev, kind, market, event in translator.truth(events, sent or (lambda market, book: None)):
            ident: Identity | None = None
            if isinstance(event, Exception):
                if ev.id not in bad:
                    raise ValueError(f"truth event {ev.id} ({kind} {market}) does not decode: {event}") from None
            else:
                ident = identity(kind, market, {f: getattr(event, f) for f in event.__struct_fields__}, trade_ids)
            yield TruthItem(ev.id, kind, market, ident, ev.gen_ns)
        return
    msg_to_event = the_venue.truth_normaliser()
    for ev in events:
        try:
            event = msg_to_event(
                ev.kind,
                ev.msg,
                market=ev.market,
                event_key="",
                recv_ns=ev.gen_ns,
                gatherer="",
                envelope_type=ev.wire_type,
            )
            fields = {f: getattr(event, f) for f in event.__struct_fields__}
            ident = identity(ev.kind, ev.market, fields, trade_ids)
        except (SchemaError, ArithmeticError, ValueError) as exc:
            if ev.id not in bad:
                raise ValueError(f"truth event {ev.id} ({ev.kind} {ev.market}) does not decode: {exc}") from None
            ident = None
        yield TruthItem(ev.id, ev.kind, ev.market, ident, ev.gen_ns)
