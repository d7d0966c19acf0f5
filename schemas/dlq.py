"""Dead letters (topic ``dlq``): bytes a stage could not use, with the reason. Nothing is dropped silently."""

from __future__ import annotations

from schemas.codec import Versioned, make_codec

__all__ = ["DeadLetter", "decode_dead_letter", "encode_dead_letter"]


class DeadLetter(Versioned, kw_only=True):
    stage: str  # "gather:g1", "dedup", "sink"
    reason: str
    payload: bytes
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    at_ns: int = 0


encode_dead_letter, decode_dead_letter = make_codec(DeadLetter, "DeadLetter")
