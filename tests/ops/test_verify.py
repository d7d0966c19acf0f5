"""`mdpipe verify` rules (ops.verify docstring) on small synthetic runs: venue events, the venue's record of what
it delivered to whom, and database rows. No database: the rows are built as verify_db would read them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from ops.verify import (
    DatabaseRows,
    GapWindow,
    Observed,
    Rules,
    TruthItem,
    compare,
    identity,
    iter_truth_items,
    percentile,
)
from ops.verify_record import VenueRecord
from sink.book import DeltaRow, SnapshotRow
from venue_sim.record import (
    BadMessage,
    BookCheckpoint,
    ConnClosed,
    ConnOpened,
    MarketLive,
    Record,
    SnapshotSent,
    Subscribed,
    Suppressed,
    Unsubscribed,
)
from venue_sim.truth import TruthEvent

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # the venue's clock at the start of a synthetic run
BOOK, TRADE, LIFECYCLE = "orderbook_delta", "trade", "market_lifecycle_v2"


class Run:
    """A synthetic run, written in the order things happen: record entries take ``after_id`` = the last event
    generated so far, as the emulator writes them."""

    def __init__(self) -> None:
        self.events: list[TruthEvent] = []
        self.records: list[Record] = []
        self.now_ns = T0
        self.observed: list[Observed] = []
        self.snapshots: dict[str, list[SnapshotRow]] = {}
        self.deltas: dict[str, list[DeltaRow]] = {}
        self.gaps: list[GapWindow] = []
        self.snapshot_received_ns: dict[str, int] = {}  # when a gatherer first stored a snapshot (the old rule)

    @property
    def last_id(self) -> int:
        return len(self.events)

    def at(self, seconds: float) -> Run:
        self.now_ns = T0 + int(seconds * NS)
        return self

    # --- the venue's record ---
    def connect(self, conn: int, gatherer: str, client: str | None = None) -> None:
        self.records.append(ConnOpened(conn, client or f"mdpipe-gather/{gatherer}", self.now_ns, self.last_id))

    def subscribe(self, conn: int, sid: int, channel: str, markets: list[str]) -> None:
        self.records.append(Subscribed(conn, sid, channel, markets, self.last_id, self.now_ns))

    def unsubscribe(self, conn: int, sid: int, channel: str, markets: list[str]) -> None:
        self.records.append(Unsubscribed(conn, sid, channel, markets, self.last_id, self.now_ns, "unsubscribe"))

    def close(self, conn: int) -> None:
        self.records.append(ConnClosed(conn, self.now_ns, self.last_id, "fault"))

    def suppress(self, conn: int, sid: int, *ids: int) -> None:
        self.records.append(Suppressed(conn, sid, list(ids), "drop"))

    def live(self, market: str, live: bool = True) -> None:
        self.records.append(MarketLive(market, self.last_id, self.now_ns, live))

    def send_snapshot(self, conn: int, sid: int, market: str, yes: list[tuple[str, str]], no: list[tuple[str, str]]):
        self.records.append(SnapshotSent(conn, sid, market, self.last_id, yes, no))

    def checkpoint(self, market: str, ts_ms: int, yes: list[tuple[str, str]], no: list[tuple[str, str]]) -> None:
        self.records.append(BookCheckpoint(ts_ms, self.last_id, market, yes, no))

    # --- venue events ---
    def _event(self, kind: str, market: str, ts_ms: int, msg: dict[str, Any]) -> int:
        ev = TruthEvent(self.last_id + 1, kind, market, ts_ms, self.now_ns, json.dumps(msg).encode())  # type: ignore[arg-type]
        self.events.append(ev)
        self.now_ns += 1_000_000  # events 1 ms apart unless at() moves the clock
        return ev.id

    def delta(self, market: str, price: str, size: str, side: str = "yes", ts_ms: int | None = None) -> int:
        ts = ts_ms if ts_ms is not None else self.now_ns // 1_000_000
        msg = {"market_ticker": market, "price_dollars": price, "delta_fp": size, "side": side, "ts_ms": ts}
        return self._event("delta", market, ts, msg)

    def trade(self, market: str, trade_id: str) -> int:
        ts = self.now_ns // 1_000_000
        msg = {
            "trade_id": trade_id,
            "market_ticker": market,
            "yes_price_dollars": "0.4400",
            "no_price_dollars": "0.5600",
            "count_fp": "3.00",
            "ts_ms": ts,
        }
        return self._event("trade", market, ts, msg)

    def lifecycle(self, market: str, event_type: str, **extra: Any) -> int:
        return self._event(
            "lifecycle",
            market,
            self.now_ns // 1_000_000,
            {"market_ticker": market, **extra} | ({"event_type": event_type} if event_type else {}),
        )

    def bad(self, event_id: int, reason: str = "out-of-range number") -> None:
        self.records.append(BadMessage(event_id, reason))

    # --- the database ---
    def store(self, *ids: int, gatherer: str = "g1") -> None:
        """Rows for these events, as the sink would have loaded them."""
        for item in iter_truth_items([self.events[i - 1] for i in ids]):
            ev = self.events[item.id - 1]
            self.observed.append(Observed(item.kind, item.market, item.identity, ev.gen_ns + 5_000_000, ev.gen_ns))
            if item.kind == "delta":
                msg = json.loads(ev.msg)
                self.deltas.setdefault(item.market, []).append(
                    DeltaRow(
                        ev.ts_ms, f"k{ev.id}", msg["side"], Decimal(msg["price_dollars"]), Decimal(msg["delta_fp"])
                    )
                )

    def store_snapshot(
        self,
        market: str,
        ts_ms: int,
        yes: list[tuple[str, str]],
        no: list[tuple[str, str]] = (),  # type: ignore[assignment]
        after_keys: tuple[str, ...] = (),
    ) -> None:
        levels = [[(Decimal(p), Decimal(c)) for p, c in side] for side in (yes, no)]
        rows = self.snapshots.setdefault(market, [])
        rows.append(SnapshotRow(ts_ms, f"snap{len(rows)}", levels[0], levels[1], frozenset(after_keys)))
        self.snapshot_received_ns.setdefault(market, self.now_ns)

    def gap(self, gatherer: str, from_s: float, to_s: float, channel: str = "", markets: tuple[str, ...] = ("*",)):
        chosen = None if "*" in markets else frozenset(markets)
        self.gaps.append(GapWindow(gatherer, channel, chosen, T0 + int(from_s * NS), T0 + int(to_s * NS)))

    def report(self, **rules: Any) -> dict[str, Any]:
        return judge(self, Rules(**rules))


def judge(run: Run, rules: Rules) -> dict[str, Any]:
    record = VenueRecord.build(run.records)
    rows = DatabaseRows(run.observed, run.snapshots, run.deltas, run.gaps)
    return compare(iter_truth_items(run.events, record.bad), record, rows, rules).as_dict()


def held(markets: tuple[str, ...] = ("A",), gatherers: tuple[str, ...] = ("g1", "g2", "g3")) -> Run:
    """Markets live from the start; each gatherer connects (conn 1, 2, 3) and subscribes order book (sid 1),
    trades (sid 2) of ``markets`` and lifecycle (sid 3, all markets), and stores a snapshot of each market."""
    run = Run()
    for market in markets:
        run.live(market)
    for conn, g in enumerate(gatherers, 1):
        run.connect(conn, g)
        run.subscribe(conn, 1, BOOK, list(markets))
        run.subscribe(conn, 2, TRADE, list(markets))
        run.subscribe(conn, 3, LIFECYCLE, ["*"])
        for market in markets:
            run.send_snapshot(conn, 1, market, [], [])
    for market in markets:
        run.store_snapshot(market, T0 // 1_000_000, [])
    run.at(1)
    return run


def clean(report: dict[str, Any]) -> bool:
    return bool(report["clean"])


# --- identity ---


def delta_identity(market: str, price: str, d: str, ts: int) -> tuple:
    return identity("delta", market, {"side": "yes", "price": Decimal(price), "delta": Decimal(d), "ts_ms": ts})


def test_identity_normalises_decimal_scale() -> None:
    assert delta_identity("A", "0.4300", "-5.00", 1) == delta_identity("A", "0.43", "-5", 1)
    assert delta_identity("A", "0.43", "-5", 1) != delta_identity("A", "0.43", "-5", 2)


def test_lifecycle_identity_compares_details_as_json_not_as_text() -> None:
    base = {"event_type": "metadata_updated", "is_deactivated": None}
    as_sent = identity("lifecycle", "A", {**base, "details": '{"title":"X","fee":1.50,"n":100}'})
    as_jsonb = identity("lifecycle", "A", {**base, "details": '{"n": 100, "fee": 1.5, "title": "X"}'})
    other = identity("lifecycle", "A", {**base, "details": '{"n": 100, "fee": 1.5, "title": "Y"}'})
    assert as_sent == as_jsonb != other
    assert identity("lifecycle", "A", {**base, "details": ""}) == identity("lifecycle", "A", {**base, "details": None})


# --- rule 1: delivery, coverage histogram ---


def test_coverage_histogram_follows_subscriptions_suppressions_and_closed_connections() -> None:
    run = Run()
    run.live("A")
    run.connect(1, "g1")
    run.subscribe(1, 1, BOOK, ["A"])
    e1 = run.delta("A", "0.40", "1")  # g1 only: g2 subscribes after it
    run.connect(2, "g2")
    run.subscribe(2, 7, BOOK, ["A"])
    run.connect(3, "g3")
    run.subscribe(3, 4, BOOK, ["*"])  # an all-markets sid covers A too
    e2 = run.delta("A", "0.41", "1")  # g1, g2, g3
    e3 = run.delta("A", "0.42", "1")  # suppressed on g2's sid: g1, g3
    run.suppress(2, 7, e3)
    run.close(3)
    e4 = run.delta("A", "0.43", "1")  # g3's connection ended after e3: g1, g2
    run.unsubscribe(1, 1, BOOK, ["A"])
    run.unsubscribe(2, 7, BOOK, ["*"])
    e5 = run.delta("A", "0.44", "1")  # nobody
    run.store(e1, e2, e3, e4)
    report = run.report()
    assert report["held_by"] == {"0": 1, "1": 1, "2": 2, "3": 1}
    assert report["expected"] == 4 and report["missing"] == 0
    assert report["uncovered"] == 1 and report["markets_uncovered"] == 1  # e5: released by everybody while live
    assert "reached no gatherer" in report["uncovered_examples"][0] and f"id {e5} " in report["uncovered_examples"][0]


def test_a_connection_that_names_no_gatherer_delivers_to_no_gatherer() -> None:
    run = Run()
    run.live("A")
    run.connect(1, "", client="Python/3.11 websockets/14.1")
    run.subscribe(1, 1, BOOK, ["A"])
    run.at(1)
    e1 = run.delta("A", "0.40", "1")
    run.store(e1)
    report = run.report()
    assert report["gatherers"] == [] and report["other_clients"] == {"Python/3.11 websockets/14.1": 1}
    assert report["held_by"]["0"] == 1 and report["expected"] == 0
    assert report["unexpected"] == 1 and not clean(report)


def test_lifecycle_events_travel_on_the_all_markets_lifecycle_channel() -> None:
    run = held(("A",))
    e1 = run.lifecycle("B", "created")  # market B: not subscribed on any filtered channel, still delivered
    e2 = run.lifecycle("B", "", title="metadata form")
    run.store(e1)
    report = run.report()
    assert report["held_by"]["3"] == 2 and report["expected"] == 2
    assert report["missing"] == 1 and report["missing_by_kind"] == {"lifecycle": 1}
    assert f"id {e2} " in report["missing_examples"]["lifecycle"][0]


# --- rule 2: expected, missing vs reported loss ---


def test_clean_run_with_identical_bodies_counted_as_a_multiset() -> None:
    run = held(("A", "B"))
    a1 = run.delta("A", "0.43", "1", ts_ms=7)
    a2 = run.delta("A", "0.43", "1", ts_ms=7)
    b1 = run.delta("B", "0.10", "2", ts_ms=8)
    t1 = run.trade("A", "t-1")
    run.store(a1, a2, b1, t1)
    report = run.report()
    assert (report["missing"], report["duplicated"], report["unexpected"], report["matched"]) == (0, 0, 0, 4)
    assert clean(report) and report["latency_ms"]["count"] == 4 and report["latency_ms"]["max"] == 5.0
    by_kind = report["latency_by_kind"]
    assert list(by_kind) == ["delta", "trade"]  # the identical pair counts once per copy, in its kind
    assert (by_kind["delta"]["count"], by_kind["trade"]["count"]) == (3, 1)
    assert max(d["max"] for d in by_kind.values()) == report["latency_ms"]["max"]
    from ops.verify_cli import format_report

    lines = [line.split() for line in format_report(report).splitlines()]
    assert [(words[0], words[-2]) for words in lines if words[0] in by_kind] == [("delta", "(3"), ("trade", "(1")]


def test_one_of_two_identical_deltas_missing_and_a_duplicate() -> None:
    run = held()
    a1 = run.delta("A", "0.43", "1", ts_ms=7)
    run.delta("A", "0.43", "1", ts_ms=7)
    b = run.delta("A", "0.50", "1", ts_ms=9)
    run.store(a1, b, b)
    report = run.report()
    assert report["missing"] == 1 and report["missing_by_kind"] == {"delta": 1}
    assert report["duplicated"] == 1 and report["duplicated_by_kind"] == {"delta": 1}
    assert not clean(report)
    # identical events are told apart only by who received which: the example names every copy and its gatherers
    (example,) = report["missing_examples"]["delta"]
    assert "one of 2 identical venue events, 1 rows" in example, example
    assert "id 1 to g1,g2,g3; id 2 to g1,g2,g3" in example, example


def test_loss_is_reported_only_when_every_gatherer_it_reached_had_a_gap_open() -> None:
    run = held()
    run.suppress(3, 1, 1)  # event 1 never reached g3 (a fault on its sid): g1 and g2 had it
    run.at(10)
    lost = run.delta("A", "0.40", "1")
    assert lost == 1
    run.store()
    run.gap("g1", 9.5, 10.5, channel=BOOK, markets=("A",))
    report = run.report()
    assert report["missing"] == 1 and report["reported_losses"] == 0  # g2 had it and reported nothing: a bug
    run.gap("g2", 11.5, 12, channel="")  # starts 1.5 s after the event: inside the 2 s slack
    report = run.report()
    assert report["missing"] == 0 and report["reported_losses"] == 1 and report["reported_by_kind"] == {"delta": 1}
    assert clean(report)
    assert run.report(gap_slack_ns=NS)["missing"] == 1  # the same window is too late with a 1 s slack


def test_a_gap_of_another_market_or_channel_does_not_report_a_loss() -> None:
    run = held(("A", "B"))
    run.at(10)
    run.delta("A", "0.40", "1")
    for g in ("g1", "g2", "g3"):
        run.gap(g, 9, 11, markets=("B",))
        run.gap(g, 9, 11, channel=TRADE)
    report = run.report()
    assert report["missing"] == 1 and report["reported_losses"] == 0


def test_event_suppressed_on_every_gatherer_is_uncovered_unless_all_reported_it() -> None:
    run = held()
    run.at(10)
    e1 = run.delta("A", "0.40", "1")
    for conn in (1, 2, 3):
        run.suppress(conn, 1, e1)
    report = run.report()
    assert report["held_by"]["0"] == 1 and report["expected"] == 0
    assert report["uncovered"] == 1 and report["markets_uncovered"] == 1 and not clean(report)
    for g in ("g1", "g2", "g3"):
        run.gap(g, 9.9, 10.1, channel=BOOK)
    report = run.report()
    assert report["uncovered"] == 0 and report["reported_losses"] == 1 and clean(report)


# --- rule 3: not subscribed (grace) vs uncovered ---


def test_market_with_events_and_no_rows_is_not_clean() -> None:
    run = held(("A",))
    run.live("C")  # live, but no gatherer ever subscribes it
    run.at(30)
    run.delta("C", "0.10", "1")
    run.delta("C", "0.20", "1")
    report = run.report()
    assert report["uncovered"] == 2 and report["uncovered_by_kind"] == {"delta": 2}
    assert report["markets_uncovered"] == 1 and report["markets_without_rows"] == 1
    assert report["markets_without_rows_examples"] == ["C"] and "ever subscribed" in report["uncovered_examples"][0]
    assert not clean(report)


def test_events_before_a_prompt_first_subscription_are_excused() -> None:
    run = Run()
    run.live("A")
    run.at(2)
    run.connect(1, "g1")  # the first gatherer connects at 2 s, later than the market went live: the grace starts here
    run.at(5)
    early = run.delta("A", "0.10", "1")
    run.at(11.5)  # 9.5 s after the first gatherer connected
    run.subscribe(1, 1, BOOK, ["A"])
    run.send_snapshot(1, 1, "A", [("0.10", "1")], [])
    run.store_snapshot("A", run.now_ns // 1_000_000, [("0.10", "1")])
    held_event = run.delta("A", "0.20", "1")
    run.store(held_event)
    report = run.report()
    assert early == 1 and report["not_subscribed"] == 1 and report["uncovered"] == 0
    assert report["expected"] == 1 and clean(report)


def test_market_created_mid_run_and_subscribed_late_is_uncovered() -> None:
    run = held(("A",))
    run.at(20)
    run.live("N")  # created mid-run
    run.at(21)
    n1 = run.delta("N", "0.10", "1")
    run.at(50)  # subscribed 30 s after it went live (e.g. waiting for a lagging REST listing)
    run.subscribe(1, 1, BOOK, ["N"])
    run.send_snapshot(1, 1, "N", [("0.10", "1")], [])
    run.store_snapshot("N", run.now_ns // 1_000_000, [("0.10", "1")])
    n2 = run.delta("N", "0.20", "1")
    run.store(n2)
    report = run.report()
    assert n1 == 1 and report["uncovered"] == 1 and report["markets_uncovered"] == 1 and report["not_subscribed"] == 0
    assert "30.0 s after" in report["uncovered_examples"][0] and not clean(report)
    report = run.report(subscribe_grace_ns=40 * NS)
    assert report["uncovered"] == 0 and report["not_subscribed"] == 1 and clean(report)


def test_market_released_by_every_gatherer_while_live_is_uncovered_not_missing() -> None:
    run = held(("A",))
    e1 = run.delta("A", "0.10", "1")
    run.at(5)
    for conn in (1, 2, 3):
        run.unsubscribe(conn, 1, BOOK, ["A"])  # a paused market released by a stale REST listing
    e2 = run.delta("A", "0.20", "1")
    run.at(60)
    for conn in (1, 2, 3):
        run.subscribe(conn, 1, BOOK, ["A"])
    e3 = run.delta("A", "0.30", "1")
    run.store(e1, e3)
    report = run.report()
    assert e2 == 2 and report["uncovered"] == 1 and report["missing"] == 0 and report["markets_uncovered"] == 1
    assert not clean(report)


def test_events_while_a_market_is_not_live_are_excused() -> None:
    run = held(("A",))
    run.live("A", live=False)
    for conn in (1, 2, 3):
        run.unsubscribe(conn, 1, BOOK, ["A"])
    run.delta("A", "0.10", "1")
    report = run.report()
    assert report["not_subscribed"] == 1 and report["uncovered"] == 0 and clean(report)


# --- rule 4: bad input ---


def test_bad_input_must_not_be_stored() -> None:
    run = held()
    good = run.delta("A", "0.10", "1")
    bad = run.delta("A", "0.20", "1")
    run.bad(bad)
    run.store(good)
    report = run.report()
    assert report["bad_input"] == 1 and report["expected"] == 1 and report["missing"] == 0 and clean(report)
    run.store(bad)
    report = run.report()
    assert report["unexpected"] == 1 and "bad input" in report["unexpected_examples"][0] and not clean(report)


def test_bad_input_that_does_not_even_decode_is_counted() -> None:
    run = held()
    bad = run.delta("A", "1E+1000000", "1")  # decodes as a Decimal, cannot be normalised: no identity
    run.bad(bad)
    report = run.report()
    assert report["bad_input"] == 1 and report["expected"] == 0 and clean(report)


# --- rule 5: snapshots by content ---


def test_snapshot_rows_must_equal_a_snapshot_the_venue_sent() -> None:
    run = held()
    run.send_snapshot(1, 1, "A", [("0.4300", "15.00"), ("0.41", "120")], [("0.55", "40")])
    run.store_snapshot("A", T0 // 1_000_000 + 500, [("0.41", "120.00"), ("0.43", "15")], [("0.550", "40")])
    report = run.report()
    assert (report["snapshots"], report["snapshots_matched"], report["snapshots_unmatched"]) == (2, 2, 0)
    assert report["snapshots_sent"] == 4 and clean(report)
    run.store_snapshot("A", T0 // 1_000_000 + 600, [("0.41", "120"), ("0.43", "16")], [("0.55", "40")])
    report = run.report()
    assert report["snapshots_unmatched"] == 1 and "0.43x16" in report["snapshot_examples"][0] and not clean(report)


# --- rule 6: books ---


def book_run() -> tuple[Run, list[int]]:
    """Market A: two identical deltas and a third in the same millisecond; a snapshot sent between the first and
    the second; the venue's checkpoints before and after."""
    run = Run()
    run.live("A")
    run.connect(1, "g1")
    ms = T0 // 1_000_000 + 1_000
    d0 = run.delta("A", "0.40", "10", ts_ms=ms - 5)  # before the subscription: only in the snapshot
    run.subscribe(1, 1, BOOK, ["A"])
    run.checkpoint("A", ms - 1, [("0.40", "10")], [])
    d1 = run.delta("A", "0.43", "5", ts_ms=ms)
    run.send_snapshot(1, 1, "A", [("0.40", "10"), ("0.43", "5")], [])
    d2 = run.delta("A", "0.43", "5", ts_ms=ms)  # identical body, same millisecond, after the snapshot
    d3 = run.delta("A", "0.55", "7", side="no", ts_ms=ms)
    run.checkpoint("A", ms, [("0.40", "10"), ("0.43", "10")], [("0.55", "7")])
    d4 = run.delta("A", "0.40", "-10", ts_ms=ms + 3)
    run.checkpoint("A", ms + 3, [("0.43", "10")], [("0.55", "7")])
    run.store(d1, d2, d3, d4)
    return run, [d0, d1, d2, d3, d4]


def test_books_rebuilt_with_same_millisecond_boundaries_and_identical_deltas_match() -> None:
    run, (_, _, d2, d3, _) = book_run()
    ms = T0 // 1_000_000 + 1_000
    run.store_snapshot("A", ms, [("0.40", "10"), ("0.43", "5")], after_keys=(f"k{d2}", f"k{d3}"))
    report = run.report()
    assert report["book_checkpoints"] == 3 and report["books_compared"] == 2 and report["books_unchecked"] == 1
    assert report["books_checked"] == 1 and report["books_mismatched"] == 0 and clean(report)


def test_a_snapshot_placed_wrongly_in_its_millisecond_is_a_book_mismatch() -> None:
    run, (_, _, _, d3, _) = book_run()
    ms = T0 // 1_000_000 + 1_000
    # after_keys misses the second identical delta: the rebuilt book holds one 0.43x5 too few
    run.store_snapshot("A", ms, [("0.40", "10"), ("0.43", "5")], after_keys=(f"k{d3}",))
    report = run.report()
    assert report["books_mismatched"] == 1 and report["snapshots_unmatched"] == 0 and not clean(report)
    assert "yes 0.43: db 5 venue 10" in report["book_examples"][0]


def test_a_lost_delta_is_a_book_mismatch_and_a_subscribed_market_without_snapshot_too() -> None:
    run, (_, _, d2, d3, _) = book_run()
    ms = T0 // 1_000_000 + 1_000
    run.store_snapshot("A", ms, [("0.40", "10"), ("0.43", "5")], after_keys=(f"k{d2}", f"k{d3}"))
    run.deltas["A"] = [d for d in run.deltas["A"] if d.event_key != f"k{d3}"]
    report = run.report()
    assert report["books_mismatched"] == 1 and "no 0.55: db - venue 7" in report["book_examples"][0]
    run.snapshots.clear()
    report = run.report()
    assert report["books_mismatched"] == 1 and "no snapshot row" in report["book_examples"][0]


# --- misc ---


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) in (50.0, 51.0)
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) == 0.0


def test_truth_event_that_does_not_decode_is_an_error_unless_bad_input() -> None:
    ev = TruthEvent(1, "delta", "A", 1, 1, b'{"market_ticker":"A"}')
    try:
        list(iter_truth_items([ev]))
    except ValueError as exc:
        assert "truth event 1" in str(exc)
    else:
        raise AssertionError("an undecodable good event must fail the run")
    assert list(iter_truth_items([ev], bad_ids=[1])) == [TruthItem(1, "delta", "A", None, 1)]


def test_identity_keeps_every_digit_of_a_number() -> None:
    """Two sizes equal in their first 28 digits are two different events to the judge (the default decimal context
    would round both to one value, and a row with the wrong size would pass as the venue's)."""
    assert delta_identity("A", "0.5", "1234567890123456.78901234567891", 1) != (
        delta_identity("A", "0.5", "1234567890123456.78901234567892", 1)
    )
