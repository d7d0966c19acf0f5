"""`mdpipe verify` comparison rules on hand-made truth and rows (no database)."""

from __future__ import annotations

from decimal import Decimal

from mdpipe.verify import Observed, TruthItem, compare, identity, percentile


def delta(market: str, price: str, d: str, ts: int) -> tuple:
    return identity("delta", market, {"side": "yes", "price": Decimal(price), "delta": Decimal(d), "ts_ms": ts})


def truth(ident: tuple, gen_ns: int, market: str = "A", kind: str = "delta") -> TruthItem:
    return TruthItem(kind, market, ident, gen_ns)


def row(ident: tuple, loaded_ns: int, market: str = "A", kind: str = "delta") -> Observed:
    return Observed(kind, market, ident, loaded_ns)


HELD = {"A": 100, "B": 100}


def test_identity_normalises_decimal_scale() -> None:
    assert delta("A", "0.4300", "-5.00", 1) == delta("A", "0.43", "-5", 1)
    assert delta("A", "0.43", "-5", 1) != delta("A", "0.43", "-5", 2)


def test_clean_run_with_identical_bodies_counted_as_multiset() -> None:
    same = delta("A", "0.43", "1", 7)
    report = compare(
        [truth(same, 200), truth(same, 201), truth(delta("B", "0.1", "2", 8), 300, "B")],
        [row(same, 1_000_200), row(same, 2_000_201), row(delta("B", "0.1", "2", 8), 3_000_300, "B")],
        HELD,
    )
    assert (report.missing, report.duplicated, report.unexpected, report.matched) == (0, 0, 0, 3)
    assert report.clean
    assert report.latency_ms["max"] == 3.0 and report.latency_ms["count"] == 3


def test_one_of_two_identical_deltas_missing() -> None:
    same = delta("A", "0.43", "1", 7)
    report = compare([truth(same, 200), truth(same, 201)], [row(same, 900)], HELD)
    assert report.missing == 1 and report.missing_by_kind == {"delta": 1}
    assert report.missing_examples["delta"] and not report.clean


def test_duplicate_and_unexpected_rows() -> None:
    a = delta("A", "0.43", "1", 7)
    report = compare([truth(a, 200)], [row(a, 900), row(a, 901), row(delta("A", "0.9", "1", 9), 950)], HELD)
    assert (report.duplicated, report.unexpected, report.missing) == (1, 1, 0)
    assert report.duplicated_by_kind == {"delta": 1}


def test_events_before_the_market_was_held_are_not_expected_but_still_matched() -> None:
    before, after = delta("A", "0.1", "1", 1), delta("A", "0.2", "1", 2)
    report = compare([truth(before, 50), truth(after, 150)], [row(after, 900)], HELD)
    assert (report.missing, report.expected, report.not_subscribed) == (0, 1, 1)
    report = compare([truth(before, 50)], [row(before, 900), row(before, 901)], HELD)
    assert (report.matched, report.duplicated, report.unexpected) == (1, 1, 0)


def test_market_never_held_expects_nothing() -> None:
    report = compare([truth(delta("C", "0.1", "1", 1), 500, "C")], [], HELD)
    assert report.expected == 0 and report.clean


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) in (50.0, 51.0)
    assert percentile(values, 99) == 99.0
    assert percentile([], 99) == 0.0
