"""Wire formatting for the emulated venue: fixed-point dollar and ``_fp`` count strings, JSON envelopes.

Prices are held as integer cents (tick $0.01) and sizes as integer hundredths of a contract; this module
turns them into the strings the current Kalshi API sends (``"0.4300"``, ``"-5.00"``). Pure functions only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from venues.kalshi.channels import EVENT_FEE_UPDATE, EVENT_LIFECYCLE, MARKET_LIFECYCLE, ORDERBOOK_DELTA, TICKER, TRADE

__all__ = [
    "CHANNELS",
    "CH_EVENT_FEE",
    "CH_EVENT_LIFECYCLE",
    "CH_LIFECYCLE",
    "CH_ORDERBOOK",
    "CH_TICKER",
    "CH_TRADE",
    "PRICE",
    "TYPES",
    "count_fp",
    "error_msg",
    "rfc3339",
]

# Channel numbers used internally (index into per-connection tables).
CH_ORDERBOOK, CH_TICKER, CH_TRADE, CH_LIFECYCLE = 0, 1, 2, 3
# Event-level messages ride the lifecycle channel (same sids, same seq) under their own envelope type; they get
# pseudo channel numbers so an event tuple says which envelope to use without an extra field.
CH_EVENT_LIFECYCLE, CH_EVENT_FEE = 4, 5
CHANNELS: tuple[str, ...] = (ORDERBOOK_DELTA, TICKER, TRADE, MARKET_LIFECYCLE)
# Envelope "type" per channel number (pseudo channels included).
TYPES: tuple[str, ...] = (*CHANNELS, EVENT_LIFECYCLE, EVENT_FEE_UPDATE)

# PRICE[c] = dollar string of c cents, 4 decimals as in the API examples ("0.4300"); c in 0..100.
PRICE: tuple[str, ...] = tuple(f"{c // 100}.{c % 100:02d}00" for c in range(101))


def count_fp(hundredths: int) -> str:
    """Signed count with 2 decimals from integer hundredths: 500 -> "5.00", -1250 -> "-12.50"."""
    if hundredths < 0:
        h = -hundredths
        return f"-{h // 100}.{h % 100:02d}"
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def rfc3339(ts_ms: int) -> str:
    """UTC RFC3339 time with a Z suffix (seconds precision), as in the REST Market object."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_msg(cmd_id: int | None, code: int, text: str, sid: int | None = None, seq: int | None = None) -> str:
    """The error reply ``{"id":..,"type":"error","msg":{"code":N,"msg":".."}}`` (+ ``sid`` when known).

    ``cmd_id`` None (an error not caused by a command, e.g. 25 buffer overflow) omits ``id``.
    """
    out: dict[str, object] = {} if cmd_id is None else {"id": cmd_id}
    out["type"] = "error"
    if sid is not None:
        out["sid"] = sid
    if seq is not None:
        out["seq"] = seq
    out["msg"] = {"code": code, "msg": text}
    return json.dumps(out, separators=(",", ":"))
