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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

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


class TruthWriter:
    """Buffered append-only writer; flushes every ``batch`` events, every ``flush_s`` seconds and on close."""

    def __init__(self, path: str | os.PathLike[str], flush_s: float = 1.0, batch: int = 4096) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._pending: list[TruthEvent] = []
        self._enc = msgspec.msgpack.Encoder()
        self._flush_s = flush_s
        self._batch = batch
        self._last_flush = time.monotonic()
        self.count = 0

    def write(self, event: TruthEvent) -> None:
        self._pending.append(event)
        self.count += 1
        if len(self._pending) >= self._batch:
            self.flush()

    def maybe_flush(self) -> None:
        """Flush if ``flush_s`` passed since the last flush (call from a periodic loop)."""
        if time.monotonic() - self._last_flush >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            payload = self._enc.encode(self._pending)
            self._file.write(b"\xc6" + len(payload).to_bytes(4, "big") + payload)
            self._pending.clear()
        self._file.flush()
        self._last_flush = time.monotonic()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_truth(path: str | os.PathLike[str]) -> Iterator[TruthEvent]:
    """Every event of a truth file in generation order (a truncated last chunk is ignored)."""
    dec = msgspec.msgpack.Decoder(list[TruthEvent])
    with open(path, "rb") as f:
        while True:
            head = f.read(5)
            if len(head) < 5 or head[0] != 0xC6:
                return
            size = int.from_bytes(head[1:], "big")
            payload = f.read(size)
            if len(payload) < size:
                return
            yield from dec.decode(payload)
