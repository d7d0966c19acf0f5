"""The sink's fast decoder mirrors schemas.events exactly (field names, order, tags) and agrees with it."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from bench.sink.data import make_events
from schemas import EVENT_TYPES, SchemaError, encode_event
from sink.records import MIRRORS, decode_record
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__name__)
def test_mirror_has_same_layout(event_type: type) -> None:
    mirror = MIRRORS[event_type.__name__]
    assert msgspec.structs.fields(mirror)  # non-empty
    assert [f.name for f in msgspec.structs.fields(mirror)] == [f.name for f in msgspec.structs.fields(event_type)]
    assert mirror.__struct_config__.tag == event_type.__struct_config__.tag
    assert mirror.__struct_config__.tag_field == event_type.__struct_config__.tag_field
    assert mirror.__struct_config__.array_like == event_type.__struct_config__.array_like


def _as_text(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return [tuple(_as_text(x) for x in item) if isinstance(item, tuple) else item for item in value]
    return value


def test_decode_agrees_with_schema() -> None:
    events = make_events(2000, markets=50, seed=3)
    assert {type(e) for e in events} == set(EVENT_TYPES)
    for ev in events:
        rec = decode_record(encode_event(ev))
        assert type(rec) is MIRRORS[type(ev).__name__]
        for f in msgspec.structs.fields(ev):
            assert getattr(rec, f.name) == _as_text(getattr(ev, f.name)), f.name


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x93\x01", msgspec.msgpack.encode(["delta", 2, VENUE]), msgspec.msgpack.encode({"type": "x"})],
)
def test_bad_bytes_raise_schema_error(payload: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_record(payload)


def test_other_version_is_rejected() -> None:
    ev = make_events(1, seed=5)[0]
    raw = msgspec.msgpack.decode(encode_event(ev))
    raw[1] = 99
    with pytest.raises(SchemaError, match="version"):
        decode_record(msgspec.msgpack.encode(raw))
