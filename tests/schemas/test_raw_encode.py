"""A live frame's bytes (``schemas.raw_encode``): the definition equals ``encode_raw(RawFrame(...))``, and the C
accelerator (``schemas._rawframe``) equals the definition at every msgpack size boundary of its ints, strings and
payload; shapes the C path does not write go back to the definition."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decode_raw, encode_raw
from schemas.raw import RawFrame
from schemas.raw_encode import ACCELERATED, ENCODE_LIVE_C, LIVE_TAIL, encode_live, encode_live_py, live_head

_EDGES = [0, 1, 31, 32, 127, 128, 255, 256, 65_535, 65_536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1]
_ints = st.one_of(
    st.sampled_from(_EDGES + [-v for v in _EDGES] + [-32, -33, -128, -129, -32_768, -32_769, -(2**31) - 1, -(2**63)]),
    st.integers(-(2**63), 2**64 - 1),
)
_lengths = st.sampled_from([0, 1, 31, 32, 255, 256, 65_535, 65_536])
_texts = st.one_of(st.text(max_size=40), _lengths.map(lambda n: "k" * n), _lengths.map(lambda n: "é" * (n // 2)))
_payloads = st.one_of(st.binary(max_size=300), _lengths.map(lambda n: b"\x00" * n))


def _frame(sid: Any, seq: Any, recv_ns: int, kind: str, market: str, key: str, payload: bytes) -> RawFrame:
    return RawFrame(
        venue="venue-a", gatherer="g-1", conn=7, sid=sid, seq=seq, recv_ns=recv_ns, kind=kind,  # type: ignore[arg-type]
        market=market, event_key=key, payload=payload,
    )  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    sid=st.one_of(st.none(), _ints),
    seq=st.one_of(st.none(), _ints),
    recv_ns=_ints,
    kind=st.sampled_from(["delta", "ticker", "trade"]) | _texts,
    market=_texts,
    key=_texts,
    payload=_payloads,
)
def test_the_c_path_and_the_definition_write_encode_raws_bytes(
    sid: Any, seq: Any, recv_ns: int, kind: str, market: str, key: str, payload: bytes
) -> None:
    head = live_head("venue-a", "g-1", 7)
    want = encode_live_py(head, sid, seq, recv_ns, kind, market, key, payload, LIVE_TAIL)
    assert encode_live(head, sid, seq, recv_ns, kind, market, key, payload, LIVE_TAIL) == want
    if ACCELERATED:
        assert ENCODE_LIVE_C is not None
        assert ENCODE_LIVE_C(head, sid, seq, recv_ns, kind, market, key, payload, LIVE_TAIL) == want
    if -(2**63) <= recv_ns < 2**63 and all(v is None or -(2**63) <= v < 2**63 for v in (sid, seq)):
        assert want == encode_raw(_frame(sid, seq, recv_ns, kind, market, key, payload))


def test_a_live_frame_decodes_as_the_schemas_frame_with_its_defaults() -> None:
    head = live_head("venue-a", "g-1", 7)
    value = encode_live(head, 3, 12_345, 1_796_596_217_188_000_000, "delta", "KX-1", "d:ab:1", b'{"x":1}', LIVE_TAIL)
    frame = decode_raw(value)
    assert frame == _frame(3, 12_345, 1_796_596_217_188_000_000, "delta", "KX-1", "d:ab:1", b'{"x":1}')
    assert frame.venue_ms is None and frame.after_keys == [] and frame.ordinal == 0 and frame.weak_key == ""


@pytest.mark.skipif(not ACCELERATED, reason="built without a C compiler")
@pytest.mark.parametrize(
    "args",
    [
        (1.0, 1, 1, "delta", "m", "k", b"p"),  # a float sid
        (True, 1, 1, "delta", "m", "k", b"p"),  # a bool is not written as an int here
        (1, 1, None, "delta", "m", "k", b"p"),  # no receive time
        (1, 1, 2**64, "delta", "m", "k", b"p"),  # beyond 64 bits: msgspec's error, on the Python path
        (1, 1, -(2**63) - 1, "delta", "m", "k", b"p"),
        (1, 1, 1, "delta", "m\ud800", "k", b"p"),  # a lone surrogate
        (1, 1, 1, b"delta", "m", "k", b"p"),
        (1, 1, 1, "delta", "m", "k", memoryview(b"p")),
        (1, 1, 1, "delta", "m", "k", bytearray(b"p")),
    ],
)
def test_other_shapes_go_back_to_the_definition(args: tuple[Any, ...]) -> None:
    head = live_head("venue-a", "g-1", 7)
    assert ENCODE_LIVE_C is not None and ENCODE_LIVE_C(head, *args, LIVE_TAIL) is None
    try:
        want = encode_live_py(head, *args, LIVE_TAIL)
    except Exception as exc:  # the definition's error is the wrapper's
        with pytest.raises(type(exc)):
            encode_live(head, *args, LIVE_TAIL)
    else:
        assert encode_live(head, *args, LIVE_TAIL) == want
