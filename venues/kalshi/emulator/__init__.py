"""The emulator's Kalshi: what :meth:`venues.kalshi.Kalshi.emulator_wire` returns and its protocol profile.

This package (its ``__init__``) is the wire module of the emulator: channel numbers, envelope types, price and
count spellings (:mod:`venues.kalshi.emulator_wire`), the message bodies the generator writes
(:mod:`venues.kalshi.emulator.bodies`) and the book level lists (:mod:`venues.kalshi.emulator.levels`). Kalshi is
the default venue, so these bodies are also the emulator's ground truth, whatever venue it serves (another venue's
profile translates them). Importing it stays light (no ``venue_sim`` module but the lifecycle options), so
``venue_sim`` can look it up while it is being imported.

The protocol the emulator's server hosts for Kalshi is :func:`venues.kalshi.emulator.profile.emulator_profile`:
the WebSocket session (:mod:`venues.kalshi.emulator.protocol`), the REST API (:mod:`venues.kalshi.emulator.rest`)
and the signed upgrade's headers.
"""

from __future__ import annotations

from venues.kalshi.auth import WS_PATH
from venues.kalshi.emulator.bodies import (
    BAD_NUMBER_VARIANTS,
    UNKNOWN_EVENT_TYPES,
    activated_body,
    bad_delta_body,
    created_body,
    deactivated_body,
    delta_body,
    delta_head,
    determined_body,
    event_lifecycle_body,
    fee_body,
    metadata_body,
    settled_body,
    ticker_body,
    trade_body,
    unknown_body,
)
from venues.kalshi.emulator.levels import Level, snapshot_json, wire_levels
from venues.kalshi.emulator_wire import (
    CH_EVENT_FEE,
    CH_EVENT_LIFECYCLE,
    CH_LIFECYCLE,
    CH_ORDERBOOK,
    CH_TICKER,
    CH_TRADE,
    CHANNELS,
    PRICE,
    TYPES,
    count_fp,
    error_msg,
    rfc3339,
)

__all__ = [
    "BAD_NUMBER_VARIANTS",
    "CHANNELS",
    "CH_EVENT_FEE",
    "CH_EVENT_LIFECYCLE",
    "CH_LIFECYCLE",
    "CH_ORDERBOOK",
    "CH_TICKER",
    "CH_TRADE",
    "KINDS",
    "PRICE",
    "TYPES",
    "UNKNOWN_EVENT_TYPES",
    "WIRE_TYPES",
    "WS_PATH",
    "Level",
    "activated_body",
    "bad_delta_body",
    "count_fp",
    "created_body",
    "deactivated_body",
    "delta_body",
    "delta_head",
    "determined_body",
    "error_msg",
    "event_lifecycle_body",
    "fee_body",
    "metadata_body",
    "rfc3339",
    "settled_body",
    "snapshot_json",
    "ticker_body",
    "trade_body",
    "unknown_body",
    "wire_levels",
]

# Truth kind and the envelope type to record (when not the kind's usual one), by channel number.
KINDS: tuple[str, ...] = ("delta", "ticker", "trade", "lifecycle", "lifecycle", "lifecycle")
WIRE_TYPES: tuple[str, ...] = ("", "", "", "", TYPES[CH_EVENT_LIFECYCLE], TYPES[CH_EVENT_FEE])
