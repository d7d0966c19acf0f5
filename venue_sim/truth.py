"""Ground truth: every venue event the emulator generated, with a hidden id the wire never carries.

Contract used by ``mdpipe verify``: a msgpack stream of :class:`TruthEvent` (one after another, no
framing beyond msgpack itself), written by :class:`TruthWriter` and read back by :func:`read_truth`.
On disk the file is a msgpack stream of ``bin32`` values, each holding one msgpack array of events (a
flushed batch), so any msgpack reader can walk it and a crash loses at most the unflushed tail.
``msg`` holds the bytes of the wire message's ``"msg"`` JSON object exactly as sent (default NO-leg
prices, i.e. as a subscriber without ``use_yes_price`` receives it). Snapshots are responses, not events,
and are never recorded here: what the venue did per connection (subscriptions, suppressed messages, snapshots
sent, its books at checkpoints) is in the record next to this file (:mod:`venue_sim.record`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Literal

import msgspec

from venue_sim.chunks import ChunkWriter, read_chunks

__all__ = ["TruthEvent", "TruthWriter", "read_truth"]

Kind = Literal["delta", "trade", "ticker", "lifecycle"]


class TruthEvent(msgspec.Struct, array_like=True):
    """One generated venue event."""

    id: int  # hidden, increasing from 1 in generation order
    kind: Kind
    market: str  # market ticker
    ts_ms: int  # venue timestamp carried by (or implied for) the message
    gen_ns: int  # wall clock (ns) when generated
    msg: bytes  # the wire message's "msg" object, exactly as sent
    wire_type: str = ""  # the envelope "type" when it is not the kind's usual one (event_lifecycle, event_fee_update)


class TruthWriter(ChunkWriter[TruthEvent]):
    """Buffered append-only writer of :class:`TruthEvent` (see :class:`venue_sim.chunks.ChunkWriter`)."""


def read_truth(path: str | os.PathLike[str]) -> Iterator[TruthEvent]:
    """Every event of a truth file in generation order (a truncated last chunk is ignored)."""
    return read_chunks(path, TruthEvent)
