"""Gap reports of the gatherers (RawFrames of kind ``gap``) turned into coverage records (``schemas.events.Gap``).

A gap report says that one gatherer may have missed venue messages in a window (see ``schemas.raw.GapReport``).
Dedup forwards every report to the events topic, where the sink stores it in ``coverage_gaps`` and ``mdpipe
verify`` uses it to tell a *reported* loss (every gatherer had a window open) from a bug. Gap reports are never
deduplicated against each other: each gatherer's window is its own, so the event key names the gatherer, and no
state is kept for them. The key is a function of the frame alone (:func:`gap_key`), so a replay of the same raw
frame (a crash before the commit, a gatherer's spool re-sending it, ``mdpipe replay``) yields the same key and the
same ``ts`` and the sink's unique ``(event_key, ts)`` absorbs it.

Two payload forms exist: :class:`schemas.raw.GapReport` (JSON with ``kind``, ``conn``, ``from_ns``, ``to_ns``...),
and the older ``{"sid", "expected", "received", "conn"}`` of a seq skip, read as kind ``seq`` on every channel of
the frame's market, the window being the instant the skip was seen (the frame's receive time). Anything else is
malformed (:class:`schemas.SchemaError`): dedup dead-letters the frame.

Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib

import msgspec

from schemas import GapReport, RawFrame, SchemaError, encode_gap
from schemas.codec import DECODE_ERRORS
from schemas.events import Gap

__all__ = ["LEGACY_KIND", "gap_event", "gap_key", "missed", "parse_gap"]

LEGACY_KIND = "seq"  # the kind an older payload (a seq skip, without "kind") is read as


class _LegacyGap(msgspec.Struct, forbid_unknown_fields=True):
    """The payload gatherers wrote before :class:`GapReport`: one skip of a sid's seq."""

    expected: int
    received: int
    sid: int | None = None
    conn: int | None = None


_report_decoder = msgspec.json.Decoder(GapReport)
_legacy_decoder = msgspec.json.Decoder(_LegacyGap)


def parse_gap(frame: RawFrame) -> GapReport:
    """The report carried by gap frame ``frame`` (either payload form); raises SchemaError when malformed."""
    try:
        report = _report_decoder.decode(frame.payload)
    except DECODE_ERRORS as exc:  # (schemas.codec)
        try:
            old = _legacy_decoder.decode(frame.payload)
        except DECODE_ERRORS:
            raise SchemaError(f"gap report: {exc}") from None
        return GapReport(
            kind=LEGACY_KIND,
            conn=frame.conn if old.conn is None else old.conn,
            from_ns=frame.recv_ns,
            to_ns=frame.recv_ns,
            channel="",
            markets=[frame.market],
            sid=frame.sid if old.sid is None else old.sid,
            expected=old.expected,
            received=old.received,
        )
    if not report.kind:
        raise SchemaError("gap report: empty kind")
    if report.to_ns < report.from_ns:
        raise SchemaError(f"gap report: window ends before it starts ({report.from_ns} > {report.to_ns})")
    if report.from_ns < 0:
        raise SchemaError(f"gap report: negative from_ns {report.from_ns}")
    return report


def missed(report: GapReport) -> int | None:
    """Messages the seqs around a skip say were missed (``received - expected``), None when not a seq skip."""
    if report.expected is None or report.received is None:
        return None
    return max(0, report.received - report.expected)


def gap_key(gatherer: str, report: GapReport) -> str:
    """Event key of a report: equal for replays of one report, distinct for any two reports that differ.

    ``g:<gatherer>:<conn>:<kind>:<sid>:<from_ns>:<digest>``, the digest being over the whole report (its channel,
    markets, end and seqs): two reports of one instant that differ only in their markets (two subscribe commands
    refused together) or in their end (a window reported again, longer) stay two records.
    """
    sid = "" if report.sid is None else str(report.sid)
    digest = hashlib.blake2b(encode_gap(report), digest_size=8).hexdigest()
    return f"g:{gatherer}:{report.conn}:{report.kind}:{sid}:{report.from_ns}:{digest}"


def gap_event(frame: RawFrame, report: GapReport) -> Gap:
    """The coverage record of gap frame ``frame`` (``report`` = :func:`parse_gap` of it)."""
    return Gap(
        venue=frame.venue,
        market=report.markets[0] if report.markets else "*",
        event_key=gap_key(frame.gatherer, report),
        ts_ms=report.from_ns // 1_000_000,
        recv_ns=frame.recv_ns,
        gatherer=frame.gatherer,
        conn=report.conn,
        kind=report.kind,
        channel=report.channel,
        markets=list(report.markets),
        from_ns=report.from_ns,
        to_ns=report.to_ns,
        sid=report.sid,
        missed=missed(report),
    )
