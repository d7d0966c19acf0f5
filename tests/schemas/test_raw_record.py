"""Raw records carrying one frame or a bundle (schemas.raw_record): round trips, the tag, counts, origins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import RawFrame, SchemaError, encode_raw
from schemas.raw_record import (
    MAX_BUNDLE_FRAMES,
    encode_bundle,
    frame_count,
    frame_origin,
    frames_of,
    is_bundle,
    split_bundle,
)

frames = st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=70)


@given(frames)
def test_a_bundle_carries_its_frames_in_order(values: list[bytes]) -> None:
    record = encode_bundle(values)
    assert is_bundle(record)
    assert split_bundle(record) == values
    assert frames_of(record) == values
    assert frame_count(record) == len(values)


@given(
    st.builds(
        RawFrame,
        venue=st.text(max_size=8),
        gatherer=st.text(max_size=8),
        conn=st.integers(0, 1000),
        sid=st.none() | st.integers(0, 10**6),
        seq=st.none() | st.integers(0, 10**9),
        recv_ns=st.integers(0, 2**62),
        kind=st.sampled_from(["snapshot", "delta", "trade", "ticker", "lifecycle", "gap"]),
        market=st.text(max_size=30),
        event_key=st.text(max_size=40),
        payload=st.binary(max_size=200),
    )
)
def test_a_plain_frame_is_never_taken_for_a_bundle(frame: RawFrame) -> None:
    value = encode_raw(frame)
    assert not is_bundle(value)
    assert frames_of(value) == [value]
    assert frame_count(value) == 1


def test_counts_come_from_the_array_header_for_every_size() -> None:
    for n in (1, 15, 16, 65535, 65536):
        assert frame_count(encode_bundle([b""] * n)) == n
    assert frame_count(None) == 1
    assert frame_count(b"\xc1") == 1  # a damaged bundle counts as one record's frame


@pytest.mark.parametrize("damaged", [b"\xc1", b"\xc1\x90", b"\xc1\x92\xc4\x01a", b"\xc1\x91\x01", b"\xc1\xff"])
def test_a_damaged_bundle_is_a_schema_error(damaged: bytes) -> None:
    with pytest.raises(SchemaError):
        split_bundle(damaged)


def test_a_bundle_holds_one_to_the_most_frames() -> None:
    with pytest.raises(ValueError):
        encode_bundle([])
    with pytest.raises(ValueError):
        encode_bundle([b""] * (MAX_BUNDLE_FRAMES + 1))


@given(st.integers(0, 2**42 - 1), st.integers(0, MAX_BUNDLE_FRAMES - 1), st.integers(0, 2**62 - 1))
def test_bundled_origins_are_unique_and_never_a_plain_offset(offset: int, index: int, plain: int) -> None:
    origin = frame_origin(offset, index)
    assert origin != plain
    assert origin >= 2**62 and origin < 2**63  # a signed 64-bit integer, as stored
    assert origin - frame_origin(offset, 0) == index
    if offset:
        assert frame_origin(offset - 1, MAX_BUNDLE_FRAMES - 1) < frame_origin(offset, 0)


def test_origins_outside_the_encoding_are_refused() -> None:
    for offset, index in ((-1, 0), (2**42, 0), (0, MAX_BUNDLE_FRAMES), (0, -1)):
        with pytest.raises(ValueError):
            frame_origin(offset, index)
