"""RawFrame: what a gatherer records for one market-data message of one market (topic ``raw.<gatherer>``).

The venue's message bytes are kept verbatim in ``payload``; the envelope adds who received it, when,
on which connection/subscription/sequence, its kind, the market and the ``event_key`` that is equal
for redundant copies of one venue event (see ``ingest`` for how each venue derives it).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.codec import Versioned, make_codec

__all__ = ["FrameKind", "GapReport", "RawFrame", "decode_gap", "decode_raw", "encode_gap", "encode_raw"]

# snapshot/delta/trade/ticker/lifecycle are venue events; "gap" is a gatherer's own report of a window in which it
# may have missed messages (payload: :class:`GapReport` as JSON), counted by dedup and forwarded as a ``Gap`` event.
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
    # Snapshots only (the venue gives them no time): the snapshot's position in the market's delta stream, decided
    # by the gatherer (see the venue's snapshot placement). The book it shows contains every delta of the market with
    # venue time < venue_ms, and those at venue_ms whose event key is NOT in after_keys.
    venue_ms: int | None = None
    after_keys: list[str] = []
    # Identity beyond ``event_key`` (venue-neutral; the dedup stage applies it, :mod:`dedup_stream.logic`).
    # ``alt_keys``: more keys of this same copy; the copy is a duplicate if ANY of its keys was seen, and a copy that
    # wins or matches registers all of them. ``weak_key``: a key that does not separate distinct events with equal
    # bodies (e.g. a body digest): a copy none of whose keys was seen may join an emitted copy with the same weak key
    # received within the dedup's weak window, from a subscription (gatherer, conn, sid) that has not contributed to
    # it, unless the two share one of ``weak_refs``: the references (e.g. anchors) this copy's keys are sure
    # positions against; two copies positioned against a common reference that share no key are two events.
    # ``weak_sub``: the subscription the copy came on, unique per subscription instance (a reconnect or a restarted
    # gatherer numbers its connections and sids alike again); "" = gatherer:conn:sid.
    alt_keys: list[str] = []
    weak_key: str = ""
    weak_refs: list[str] = []
    weak_sub: str = ""
    # Deltas that REPLACE a level (where the venue's book rule says so): their order among the market's deltas of one
    # venue millisecond as this gatherer counted it (the event key does not carry it: see the venue's keys module);
    # 0 where order does not matter. The dedup stage keeps the highest any copy carried (dedup_stream.logic).
    ordinal: int = 0


# A report is JSON, whose ints have no bound: one beyond 64 bits is refused (an int of 400 digits added to the dedup
# stage's missed-message counter made every later scrape of its metrics fail converting it to a float).
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class GapReport(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Payload of a ``kind="gap"`` frame: a window in which the gatherer may have missed venue messages.

    ``kind``: ``seq`` (a sid skipped seqs), ``first_seq`` (a new sid's first message was not seq 1), ``down``
    (the connection was not receiving: from the last message before it dropped to the first after it came back),
    ``resubscribe`` (a sid ended by a terminal venue error until its markets were subscribed again), ``rejected``
    (a subscribe the venue refused). ``channel`` is the venue channel the window concerns ("" = every channel of
    the connection); ``markets`` the markets it covers (``["*"]``: every market, as on the unfiltered lifecycle
    channel). Times are the gatherer's receive clock (ns). ``expected``/``received`` are the seqs around a skip.
    """

    kind: str
    conn: Int64
    from_ns: Int64
    to_ns: Int64
    channel: str = ""
    markets: list[str] = []
    sid: Int64 | None = None
    expected: Int64 | None = None
    received: Int64 | None = None


encode_raw, decode_raw = make_codec(RawFrame, "RawFrame")
# The decoder behind decode_raw, for a hot path that handles msgspec's errors itself (the dedup decision: one call
# less per frame); its failures are schemas.codec.DECODE_ERRORS, decode_raw names them as SchemaError.
raw_decoder: msgspec.msgpack.Decoder[RawFrame] = msgspec.msgpack.Decoder(RawFrame)
_gap_encoder = msgspec.json.Encoder()
_gap_decoder = msgspec.json.Decoder(GapReport)


def encode_gap(report: GapReport) -> bytes:
    return _gap_encoder.encode(report)


def decode_gap(payload: bytes) -> GapReport:
    """The GapReport of a gap frame's payload (raises msgspec.DecodeError on anything else)."""
    return _gap_decoder.decode(payload)
