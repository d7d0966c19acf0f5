"""A live frame's bytes for the gatherers' per-message hot path: ``encode_raw(RawFrame(...))`` byte for byte, without
building the struct.

A RawFrame is a msgpack array (``array_like``) of its fields in order. A live frame (a delta, ticker or trade as it
arrived) varies in seven of them (sid, seq, recv_ns, kind, market, event_key, payload); the fields before them are
fixed for a session (the schema version, venue, gatherer, connection: :func:`live_head`) and those after hold their
defaults (:data:`LIVE_TAIL`). :func:`encode_live_py` is the definition; :func:`encode_live` runs the C accelerator
``schemas._rawframe`` when it was built (:data:`ACCELERATED`) and hands any other shape back to the definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from schemas.codec import SCHEMA_VERSION
from schemas.raw import RawFrame

__all__ = ["ACCELERATED", "ENCODE_LIVE_C", "LIVE_TAIL", "encode_live", "encode_live_py", "live_head"]

_enc = msgspec.msgpack.Encoder(decimal_format="string")
_FIELDS = msgspec.structs.fields(RawFrame)
_HEAD = ("v", "venue", "gatherer", "conn")
_LIVE = ("sid", "seq", "recv_ns", "kind", "market", "event_key", "payload")
_REST = _FIELDS[len(_HEAD) + len(_LIVE) :]  # after the live fields: each holds its default in a live frame
_NAMES = tuple(f.name for f in _FIELDS[: len(_HEAD) + len(_LIVE)])
if _NAMES != _HEAD + _LIVE or not RawFrame.__struct_config__.array_like or len(_REST) >= 16:
    raise ImportError("schemas.raw.RawFrame changed: update schemas.raw_encode")


def _items(values: tuple[Any, ...]) -> bytes:
    """The msgpack of ``values`` as consecutive items (an array's encoding without its header; fewer than 16)."""
    return _enc.encode(values)[1:]


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


# The defaults of the fields after the live ones, encoded (None, [], [], "", [], "", 0 today).
LIVE_TAIL = _items(tuple(f.default_factory() if f.default is msgspec.NODEFAULT else f.default for f in _REST))


def live_head(venue: str, gatherer: str, conn: int) -> bytes:
    """The bytes before a session's live fields: the array header, the schema version, venue, gatherer, connection."""
    return _array_header(len(_FIELDS)) + _items((SCHEMA_VERSION, venue, gatherer, conn))


def encode_live_py(
    head: bytes,
    sid: int | None,
    seq: int | None,
    recv_ns: int,
    kind: str,
    market: str,
    event_key: str,
    payload: bytes,
    tail: bytes,
) -> bytes:
    """``head`` (:func:`live_head`), the seven live fields, ``tail`` (:data:`LIVE_TAIL`)."""
    return head + _items((sid, seq, recv_ns, kind, market, event_key, payload)) + tail


# The C function itself, for a hot path that saves the wrapper's call (None when not built): it returns None for a
# shape it does not write, and the caller then calls encode_live_py.
ENCODE_LIVE_C: Callable[..., bytes | None] | None
try:
    from schemas._rawframe import encode_live as ENCODE_LIVE_C  # type: ignore[import-not-found,no-redef]

    ACCELERATED = True
except ImportError:  # built without a C compiler
    ENCODE_LIVE_C = None
    ACCELERATED = False


def encode_live(
    head: bytes,
    sid: int | None,
    seq: int | None,
    recv_ns: int,
    kind: str,
    market: str,
    event_key: str,
    payload: bytes,
    tail: bytes,
) -> bytes:
    """:func:`encode_live_py`, in C when built (the same bytes)."""
    if ENCODE_LIVE_C is not None:
        out = ENCODE_LIVE_C(head, sid, seq, recv_ns, kind, market, event_key, payload, tail)
        if out is not None:
            return out
    return encode_live_py(head, sid, seq, recv_ns, kind, market, event_key, payload, tail)
