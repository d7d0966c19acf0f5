"""RawFrame: what a gatherer records for one market-data message of one market (topic ``raw.<gatherer>``).

The venue's message bytes are kept verbatim in ``payload``; the envelope adds who received it, when,
on which connection/subscription/sequence, its kind, the market and the ``event_key`` that is equal
for redundant copies of one venue event (see ``ingest`` for how each venue derives it).
"""

from __future__ import annotations

from typing import Literal

from schemas.codec import Versioned, make_codec

__all__ = ["FrameKind", "RawFrame", "decode_raw", "encode_raw"]

# snapshot/delta/trade/ticker/lifecycle are venue events; "gap" is a gatherer's own report
# (payload = JSON {"sid", "expected", "received"}) that dedup counts and never forwards.
FrameKind = Literal["snapshot", "delta", "trade", "ticker", "lifecycle", "gap"]


class RawFrame(Versioned, kw_only=True):
    venue: str
    gatherer: str
    conn: int
    sid: int | None
    seq: int | None
    recv_ns: int
    kind: FrameKind
    market: str
    event_key: str
    payload: bytes


encode_raw, decode_raw = make_codec(RawFrame, "RawFrame")
