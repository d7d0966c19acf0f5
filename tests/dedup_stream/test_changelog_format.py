"""Changelog record layouts (pure): batch records round-trip, older single records pass through, keys never clash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedup_stream.changelog_format import BATCH_PREFIX, MAX_PAIRS, BatchKeys, encode_batch, expand, is_batch
from dedup_stream.logic import store_key
from schemas import RawFrame

pairs_st = st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=40)), max_size=50)


@given(pairs_st)
def test_a_batch_record_expands_to_its_writes_in_order(pairs: list[tuple[bytes, bytes]]) -> None:
    key = BatchKeys().next()
    assert is_batch(key)
    assert list(expand(key, encode_batch(pairs))) == pairs


@given(st.binary(min_size=1, max_size=40), st.one_of(st.none(), st.binary(max_size=40)))
def test_an_older_single_record_is_its_own_write(key: bytes, value: bytes | None) -> None:
    if key.startswith(BATCH_PREFIX):
        return
    assert list(expand(key, value)) == [(key, value)]  # a None value (tombstone) stays a delete


@given(st.text(min_size=1, max_size=30), st.text(max_size=30))
def test_store_keys_are_never_batch_keys(market: str, event_key: str) -> None:
    frame = RawFrame(
        venue="venue-a", gatherer="g1", conn=0, sid=None, seq=None, recv_ns=1, kind="delta",
        market=market, event_key=event_key, payload=b"{}",
    )  # fmt: skip
    if market.startswith("\x01"):  # not a ticker: venue tickers are printable
        return
    assert not is_batch(store_key(frame))


def test_batch_keys_are_unique_per_record_and_per_writer() -> None:
    one, two = BatchKeys(), BatchKeys()
    keys = [one.next() for _ in range(1000)] + [two.next() for _ in range(1000)]
    assert len(set(keys)) == len(keys)  # compaction keeps every batch record


def test_a_corrupt_batch_record_stops_the_restore() -> None:
    with pytest.raises(ValueError, match="changelog batch record"):
        list(expand(BatchKeys().next(), b"\x93not pairs"))


def test_max_pairs_bounds_a_record_well_under_the_broker_limit() -> None:
    pairs = [(b"KXMARKET-26JAN01-T50\x1fdelta:" + b"x" * 60, b"y" * 60) for _ in range(MAX_PAIRS)]
    assert len(encode_batch(pairs)) < 512 << 10
