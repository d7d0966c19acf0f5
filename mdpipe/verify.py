"""Ground-truth verification: compare what the venue emulator sent with what landed in the database.

Matching is by content, independent of the pipeline's own event keys, so a bug in key derivation or
dedup cannot hide itself. Each venue event has an identity derived from its body:

=========  ==============================================================================
kind       identity (all decimals normalised, so "0.4300" == "0.43")
=========  ==============================================================================
trade      trade_id
delta      market, side, price, delta, ts_ms   (identical bodies counted as a multiset)
ticker     market, ts_ms and every price/size field
lifecycle  market, event_type, result, settlement_value, open/close/determination/settled ts
=========  ==============================================================================

An event is *expected* in the database when it was generated after the pipeline first held the market
(the first order-book snapshot any gatherer received for it): before that nobody was subscribed, and the
snapshot carries the book state instead. Events found in the database are matched whatever their time.
Order-book snapshots are per-subscription answers, not venue events: they are counted, not matched.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from schemas.events import Ticker

__all__ = ["Observed", "Report", "TruthItem", "compare", "identity", "percentile"]

Identity = tuple[Any, ...]

# Every value a ticker carries (the Ticker struct's own fields but its market id): the ticker's identity.
_BASE_FIELDS = {"v", "venue", "market", "event_key", "ts_ms", "recv_ns", "gatherer", "market_id"}
TICKER_VALUES: tuple[str, ...] = tuple(f for f in Ticker.__struct_fields__ if f not in _BASE_FIELDS)


def _n(value: Any) -> Any:
    """Normalise a decimal-ish value so that equal amounts compare equal ("0.4300" == "0.43")."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value.normalize() if value else Decimal(0)
    return value


def identity(kind: str, market: str, fields: dict[str, Any]) -> Identity:
    """The content identity of one venue event, from normalised Event-field names.

    ``fields`` uses the names of the ``schemas.events`` structs (and of the sink's columns).
    """
    if kind == "trade":
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
        )
    raise ValueError(f"no identity for kind {kind!r}")


@dataclass(slots=True)
class TruthItem:
    """One event the venue generated."""

    kind: str
    market: str
    identity: Identity
    gen_ns: int


@dataclass(slots=True)
class Observed:
    """One row found in the database."""

    kind: str
    market: str
    identity: Identity
    loaded_ns: int
    received_ns: int = 0  # when the winning gatherer received it


@dataclass
class Report:
    venue_events: int = 0
    expected: int = 0
    not_subscribed: int = 0
    rows: int = 0
    matched: int = 0
    missing: int = 0
    duplicated: int = 0
    unexpected: int = 0
    snapshots: int = 0
    missing_by_kind: dict[str, int] = field(default_factory=dict)
    duplicated_by_kind: dict[str, int] = field(default_factory=dict)
    missing_examples: dict[str, list[str]] = field(default_factory=dict)
    duplicated_examples: list[str] = field(default_factory=list)
    unexpected_examples: list[str] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # venue -> database
    receive_latency_ms: dict[str, float] = field(default_factory=dict)  # venue -> gatherer (the baseline hop)

    @property
    def clean(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.unexpected == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue_events": self.venue_events,
            "expected": self.expected,
            "not_subscribed": self.not_subscribed,
            "rows": self.rows,
            "matched": self.matched,
            "missing": self.missing,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "snapshots": self.snapshots,
            "missing_by_kind": self.missing_by_kind,
            "duplicated_by_kind": self.duplicated_by_kind,
            "missing_examples": self.missing_examples,
            "duplicated_examples": self.duplicated_examples,
            "unexpected_examples": self.unexpected_examples,
            "latency_ms": self.latency_ms,
            "receive_latency_ms": self.receive_latency_ms,
            "clean": self.clean,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[rank]


def compare(
    truth: Iterable[TruthItem],
    observed: Iterable[Observed],
    first_held_ns: dict[str, int],
    snapshots: int = 0,
    examples: int = 5,
    latency_after_ns: int = 0,
) -> Report:
    """Compare the venue's events with the database rows (see the module docstring for the rules).

    Latencies are taken for events generated at or after ``latency_after_ns`` (to leave out a warm-up).
    """
    report = Report(snapshots=snapshots)
    expected_by_id: dict[Identity, list[int]] = defaultdict(list)  # identity -> gen_ns of each copy the venue made
    early: Counter[Identity] = Counter()
    kinds: dict[Identity, str] = {}
    for item in truth:
        report.venue_events += 1
        kinds[item.identity] = item.kind
        held = first_held_ns.get(item.market)
        if held is not None and item.gen_ns >= held:
            expected_by_id[item.identity].append(item.gen_ns)
        else:
            early[item.identity] += 1
    report.expected = sum(len(v) for v in expected_by_id.values())

    seen: dict[Identity, list[int]] = defaultdict(list)
    received: dict[Identity, list[int]] = defaultdict(list)
    for row in observed:
        report.rows += 1
        seen[row.identity].append(row.loaded_ns)
        received[row.identity].append(row.received_ns)

    latencies: list[float] = []
    receive_latencies: list[float] = []
    missing_by_kind: Counter[str] = Counter()
    dup_by_kind: Counter[str] = Counter()
    for ident, gens in expected_by_id.items():
        loads = sorted(seen.get(ident, ()))
        got, want = len(loads), len(gens) + early.get(ident, 0)
        if got < len(gens):
            missing = len(gens) - got
            report.missing += missing
            missing_by_kind[kinds[ident]] += missing
            bucket = report.missing_examples.setdefault(kinds[ident], [])
            if len(bucket) < examples:
                bucket.append(repr(ident))
        if got > want:
            report.duplicated += got - want
            dup_by_kind[kinds[ident]] += got - want
            if len(report.duplicated_examples) < examples:
                report.duplicated_examples.append(f"{ident!r} x{got} (venue sent {want})")
        for gen_ns, load_ns in zip(sorted(gens), loads, strict=False):
            if gen_ns >= latency_after_ns:
                latencies.append((load_ns - gen_ns) / 1e6)
        for gen_ns, recv_ns in zip(sorted(gens), sorted(received.get(ident, ())), strict=False):
            if recv_ns and gen_ns >= latency_after_ns:
                receive_latencies.append((recv_ns - gen_ns) / 1e6)
        report.matched += min(got, want)
    for ident, loads in seen.items():
        if ident in expected_by_id:
            continue
        venue_copies = early.get(ident, 0)
        if venue_copies == 0:
            report.unexpected += len(loads)
            if len(report.unexpected_examples) < examples:
                report.unexpected_examples.append(repr(ident))
        else:
            report.matched += min(len(loads), venue_copies)
            if len(loads) > venue_copies:
                report.duplicated += len(loads) - venue_copies
                dup_by_kind[kinds[ident]] += len(loads) - venue_copies
                if len(report.duplicated_examples) < examples:
                    report.duplicated_examples.append(f"{ident!r} x{len(loads)} (venue sent {venue_copies})")
    report.not_subscribed = sum(early.values()) - sum(min(len(seen.get(i, ())), n) for i, n in early.items())
    report.missing_by_kind = dict(missing_by_kind)
    report.duplicated_by_kind = dict(dup_by_kind)
    report.latency_ms = _distribution(latencies)
    report.receive_latency_ms = _distribution(receive_latencies)
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


def iter_truth_items(events: Iterable[Any]) -> Iterator[TruthItem]:
    """Turn emulator ground-truth records (``venue_sim.truth.TruthEvent``) into comparable items."""
    from schemas.kalshi import msg_to_event

    for ev in events:
        event = msg_to_event(ev.kind, ev.msg, market=ev.market, event_key="", recv_ns=ev.gen_ns, gatherer="")
        fields = {f: getattr(event, f) for f in event.__struct_fields__}
        yield TruthItem(ev.kind, ev.market, identity(ev.kind, ev.market, fields), ev.gen_ns)
