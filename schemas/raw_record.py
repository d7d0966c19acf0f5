"""How raw frames travel in the raw topics' Kafka records: one frame per record, or a bundle of several.

A raw record's value is either one encoded :class:`~schemas.raw.RawFrame` (its msgpack starts with an array header)
or a **bundle**: the tag byte ``0xC1`` (a byte msgpack never uses, so the first byte tells the two apart) followed by
a msgpack array of encoded RawFrames, each as a msgpack ``bin``. A gatherer bundles the frames of one release
(``gather.read_window_ms``) that go to the same partition, in their receive order, and keys the bundle with the
market of its first frame, so Kafka's default partitioner (murmur2) puts it on the partition of every frame in it
(``ingest.producer``). A frame larger than ``gather.bundle_max_bytes`` travels alone, and ``gather.bundle_max_bytes``
0 keeps one frame per record (for readers of the raw topics outside mdpipe).

Why: every Kafka record costs each stage something whatever its size (the gatherer's produce call, the broker's
validation, the dedup consumer's ``Message`` object), three records per venue event; a bundle pays it once for the
frames of a release and partition (docs/perf-gatherer.md, round 7).

Readers take :func:`frames_of` (a plain record's value as a one-element list), or :func:`is_bundle` and
:func:`split_bundle` on a hot path. The dedup stage names a frame's place with :func:`frame_origin`: a plain record's
frame by its offset, a bundled frame by an integer of its own, at least 2**62, that encodes the record's offset and
the frame's index in the bundle; the two never meet, so a stored winner's origin names exactly one frame either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from schemas.codec import DECODE_ERRORS, SchemaError

__all__ = [
    "BUNDLE_TAG",
    "MAX_BUNDLE_FRAMES",
    "encode_bundle",
    "frame_count",
    "frame_origin",
    "frames_of",
    "is_bundle",
    "split_bundle",
]

BUNDLE_TAG = 0xC1
_SLOT_BITS = 20
MAX_BUNDLE_FRAMES = 1 << _SLOT_BITS  # frames in one bundle, at most (an origin keeps the index in 20 bits)
_ORIGIN_BASE = 1 << 62  # bundled frames' origins start here; Kafka offsets stay below 2**42 (see frame_origin)
_MAX_OFFSET = (1 << (62 - _SLOT_BITS)) - 1

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[bytes])


def encode_bundle(frames: Sequence[bytes]) -> bytes:
    """The record value carrying ``frames`` (encoded RawFrames, in order) in one record."""
    if not 0 < len(frames) <= MAX_BUNDLE_FRAMES:
        raise ValueError(f"a bundle holds 1 to {MAX_BUNDLE_FRAMES} frames, not {len(frames)}")
    return b"\xc1" + _encoder.encode(frames)


def is_bundle(value: bytes | None) -> bool:
    return bool(value) and value[0] == BUNDLE_TAG  # type: ignore[index]


def split_bundle(value: bytes) -> list[bytes]:
    """The encoded frames of a bundle, in order (raises :class:`SchemaError` for bytes that are not one; the frames
    themselves are not decoded here)."""
    try:
        frames = _decoder.decode(memoryview(value)[1:])
    except DECODE_ERRORS as exc:
        raise SchemaError(f"raw bundle: {exc}") from None
    if not 0 < len(frames) <= MAX_BUNDLE_FRAMES:
        raise SchemaError(f"raw bundle: {len(frames)} frames (1 to {MAX_BUNDLE_FRAMES})")
    return frames


def frames_of(value: bytes | None) -> list[bytes | None]:
    """The frames a raw record carries: a bundle's, else the value itself (None included: a reader's decode names
    it)."""
    if is_bundle(value):
        return split_bundle(value)  # type: ignore[arg-type, return-value]
    return [value]


def frame_count(value: bytes | None) -> int:
    """Frames in a record, read from the bundle's array header alone (1 for a plain record or a damaged bundle):
    for counters on paths that do not decode the frames (spool, failure reports)."""
    if not is_bundle(value) or len(value) < 2:  # type: ignore[arg-type]
        return 1
    head = value[1]  # type: ignore[index]
    if 0x90 <= head <= 0x9F:
        return head & 0x0F or 1
    if head == 0xDC and len(value) >= 4:  # type: ignore[arg-type]
        return int.from_bytes(value[2:4], "big") or 1  # type: ignore[index]
    if head == 0xDD and len(value) >= 6:  # type: ignore[arg-type]
        return int.from_bytes(value[2:6], "big") or 1  # type: ignore[index]
    return 1


def frame_origin(offset: int, index: int) -> int:
    """The dedup origin of the ``index``-th frame of the bundle at ``offset``: ``2**62 + offset * 2**20 + index``.
    Never equal to a plain record's offset (below 2**62), nor to another bundled frame's (offsets up to 2**42 - 1:
    ~140 years of a partition at 1,000 records a second)."""
    if not 0 <= offset <= _MAX_OFFSET or not 0 <= index < MAX_BUNDLE_FRAMES:
        raise ValueError(f"no bundle origin for offset {offset}, index {index}")
    return _ORIGIN_BASE | (offset << _SLOT_BITS) | index
