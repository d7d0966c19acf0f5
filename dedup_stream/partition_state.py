"""Local dedup state of the native worker: one RocksDB (rocksdict) per assigned raw partition.

Each DB maps ``store key -> Winner`` (see :mod:`dedup_stream.logic`) and is opened with a RocksDB TTL of
``window_s``: RocksDB drops entries older than the TTL at compaction, so the state stays bounded in time
without a Python-side index. Expiry is lazy and wall-clock based, which can only make a key live longer than
the window (a late copy is then still recognised as a duplicate, never the reverse). Keys restored from the
changelog get a fresh TTL at restore time, for the same reason harmless.

Every first-sight write also goes to the changelog (``on_put``); the DB remembers, under :data:`OFFSET_KEY`,
the last changelog offset it is known to contain (from delivery reports), so a restart replays only the tail.
That key is rewritten at every commit, so its TTL never runs out on a busy partition; if it does run out on an
idle one, the next restore simply reads the whole (retention-bounded) changelog.

Implements the :class:`dedup_stream.logic.Store` protocol.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

__all__ = ["OFFSET_KEY", "PartitionStates"]

OFFSET_KEY = b"\x00changelog-offset"  # store keys start with a market ticker, never with NUL
_OFFSET = struct.Struct(">q")


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(16 << 20)
    opts.set_max_write_buffer_number(3)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(64 << 20))
    opts.set_block_based_table_factory(table)
    return opts


class PartitionStates:
    """The DBs of the partitions this worker owns, under ``folder/p<partition>``."""

    def __init__(self, folder: Path, ttl_s: float, on_put: Callable[[int, bytes, bytes], None]) -> None:
        self.folder = folder
        self.ttl_s = max(1, int(ttl_s))
        self.on_put = on_put
        self.dbs: dict[int, Rdict] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, partition: int) -> Path:
        return self.folder / f"p{partition}"

    def open(self, partition: int) -> None:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(
                str(self._path(partition)), options=_options(), access_type=AccessType.with_ttl(self.ttl_s)
            )

    def close(self, partition: int) -> None:
        db = self.dbs.pop(partition, None)
        if db is not None:
            db.close()

    def close_all(self) -> None:
        for partition in list(self.dbs):
            self.close(partition)

    def wipe(self, partition: int) -> None:
        """Discard the partition's local state (closed, deleted, reopened empty)."""
        self.close(partition)
        shutil.rmtree(self._path(partition), ignore_errors=True)
        self.open(partition)

    # Store protocol (the hot path)
    def get(self, key: bytes, partition: int) -> bytes | None:
        value: bytes | None = self.dbs[partition].get(key)
        return value

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        self.dbs[partition][key] = value
        self.on_put(partition, key, value)

    # changelog bookkeeping
    def covered(self, partition: int) -> int | None:
        """The last changelog offset this partition's DB contains, or None when unknown."""
        raw: bytes | None = self.dbs[partition].get(OFFSET_KEY)
        return None if raw is None else int(_OFFSET.unpack(raw)[0])

    def set_covered(self, partition: int, offset: int) -> None:
        self.dbs[partition][OFFSET_KEY] = _OFFSET.pack(offset)

    def apply(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Write changelog records into the partition's DB in one batch (a None value deletes). Returns the count."""
        batch = WriteBatch(raw_mode=True)
        count = 0
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
            count += 1
        if count:
            self.dbs[partition].write(batch)
        return count
