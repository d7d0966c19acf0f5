"""The file format of the emulator's ground truth and record: a msgpack stream of ``bin32`` chunks, each holding one
msgpack array of records (a flushed batch), so any msgpack reader can walk it and a crash loses at most the unflushed
tail. :class:`ChunkWriter` appends, :func:`read_chunks` reads back; :mod:`venue_sim.truth` and
:mod:`venue_sim.record` give them their record types."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import msgspec

__all__ = ["ChunkWriter", "read_chunks"]

T = TypeVar("T")


class ChunkWriter(Generic[T]):
    """Buffered append-only writer; flushes every ``batch`` records, every ``flush_s`` seconds (see
    :meth:`maybe_flush`) and on close. Writing after close is ignored."""

    def __init__(self, path: str | os.PathLike[str], flush_s: float = 1.0, batch: int = 4096) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._pending: list[T] = []
        self._enc = msgspec.msgpack.Encoder()
        self._flush_s = flush_s
        self._batch = batch
        self._last_flush = time.monotonic()
        self.count = 0

    def write(self, record: T) -> None:
        if self._file.closed:
            return
        self._pending.append(record)
        self.count += 1
        if len(self._pending) >= self._batch:
            self.flush()

    def maybe_flush(self) -> None:
        """Flush if ``flush_s`` passed since the last flush (call from a periodic loop)."""
        if time.monotonic() - self._last_flush >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        if self._file.closed:
            return
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

    def __enter__(self) -> ChunkWriter[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_chunks(path: str | os.PathLike[str], record_type: Any) -> Iterator[Any]:
    """Every record of a chunk file, in the order written (a truncated last chunk is ignored)."""
    dec = msgspec.msgpack.Decoder(list[record_type])  # type: ignore[valid-type]
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
