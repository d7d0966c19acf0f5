"""Local dedup state of the native worker: one RocksDB (rocksdict) per assigned raw partition.

Each DB maps ``store key -> Winner`` (see :mod:`dedup_stream.logic`) and is opened with a RocksDB TTL of
``window_s``: RocksDB drops entries older than the TTL at compaction, so the state stays bounded in time
without a Python-side index. Expiry is lazy and wall-clock based, which can only make a key live longer than
the window (a late copy is then still recognised as a duplicate, never the reverse). Keys restored from the
changelog get a fresh TTL at restore time, for the same reason harmless.

Every write (first sights, and re-emits writing their winner back) also goes to the changelog: :meth:`flush` hands
each partition's collected puts to ``on_flush`` right after writing them (the worker produces them there in one
burst, so one consumed batch makes one changelog request, not one per record); the DB remembers, under
:data:`OFFSET_KEY`, the last changelog offset it is known to contain (from delivery reports), so a restart replays only
the tail.
That key is rewritten at every commit, so its TTL never runs out on a busy partition; if it does run out on an
idle one, the next restore simply reads the whole (retention-bounded) changelog.

Hot path (profiled: single RocksDB gets and WAL-backed puts were ~45% of the worker's CPU): the most recent
``cache_keys`` to ``2 * cache_keys`` keys are also held in two dict generations, so the later copies of an
event (two of every three frames with three gatherers, arriving within milliseconds to seconds) are answered
without RocksDB; puts are collected per partition and written as one ``WriteBatch`` by :meth:`flush`, which
the worker calls after every consumed batch and before every commit. Store keys start with the market ticker
and a market maps to exactly one partition, so one cache serves every partition; it is cleared whenever a
partition DB is closed or wiped. The cache never drops a key RocksDB still has, and holds a key at most as long
as it takes ``cache_keys`` newer keys to arrive (longer than the TTL only on a very quiet worker, which again only
keeps a key longer).

Implements the :class:`dedup_stream.logic.Store` protocol.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

from rocksdict import AccessType, BlockBasedOptions, Cache, Options, Rdict, WriteBatch

__all__ = ["OFFSET_KEY", "WRITE_BUFFER_BYTES", "PartitionStates"]

OFFSET_KEY = b"\x00changelog-offset"  # store keys start with a market ticker, never with NUL
_OFFSET = struct.Struct(">q")

# A memtable's size bounds a restart: a DB opened after a SIGKILL replays its write-ahead log, which holds every write
# of its memtables not yet flushed to an SST, before the worker can restore the changelog's tail and read frames
# again (opening 6 partitions is on a failover's path). A smaller memtable keeps that replay short whatever the
# worker's uptime, but flushes smaller level-0 files; level 0 is compacted into level 1 once it holds
# L0_COMPACTION_TRIGGER files, and store keys are spread over the whole key range, so each such compaction rewrites
# most of level 1: the trigger is raised with the smaller memtable so that a compaction takes as many bytes as four
# 16-MB memtables did (the same compaction work per write; docs/perf-dedup.md, sixth pass).
WRITE_BUFFER_BYTES = 8 << 20
WRITE_BUFFERS = 3
L0_COMPACTION_TRIGGER = 8


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    opts.set_max_write_buffer_number(WRITE_BUFFERS)
    opts.set_level_zero_file_num_compaction_trigger(L0_COMPACTION_TRIGGER)  # writes slow at 20 files, stop at 36
    # a first copy's lookup misses every memtable (up to WRITE_BUFFERS of them, where the recent keys live): a
    # whole-key bloom filter per memtable answers most of those misses without a skiplist search
    opts.set_memtable_prefix_bloom_ratio(0.1)
    opts.set_memtable_whole_key_filtering(True)
    table = BlockBasedOptions()
    table.set_block_cache(Cache(64 << 20))
    table.set_bloom_filter(10, False)  # a first copy's lookup misses: skip SST files that cannot hold the key
    opts.set_block_based_table_factory(table)
    return opts


class PartitionStates:
    """The DBs of the partitions this worker owns, under ``folder/p<partition>``."""

    def __init__(
        self,
        folder: Path,
        ttl_s: float,
        on_flush: Callable[[int, list[tuple[bytes, bytes]]], None],
        cache_keys: int = 100_000,
    ) -> None:
        self.folder = folder
        self.ttl_s = max(1, int(ttl_s))
        self.on_flush = on_flush
        self.cache_keys = cache_keys
        self.dbs: dict[int, Rdict] = {}
        # the two generations, newest first: one list object for the worker's life (the dedup stage's C path for
        # later copies, dedup_stream._plaindup, reads them through it: Store.caches in dedup_stream.logic)
        self.caches: list[dict[bytes, bytes]] = [{}, {}]
        self._pending: dict[int, list[tuple[bytes, bytes]]] = {}  # partition -> puts not yet in RocksDB
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, partition: int) -> Path:
        return self.folder / f"p{partition}"

    def open(self, partition: int) -> None:
        if partition not in self.dbs:
            self.dbs[partition] = Rdict(
                str(self._path(partition)), options=_options(), access_type=AccessType.with_ttl(self.ttl_s)
            )

    def close(self, partition: int) -> None:
        self.flush()
        self.caches[:] = [{}, {}]
        db = self.dbs.pop(partition, None)
        if db is not None:
            db.close()

    def close_all(self) -> None:
        for partition in list(self.dbs):
            self.close(partition)

    def wipe(self, partition: int) -> None:
        """Discard the partition's local state (closed, deleted, reopened empty)."""
        self._pending.pop(partition, None)
        self.close(partition)
        shutil.rmtree(self._path(partition), ignore_errors=True)
        self.open(partition)

    # Store protocol (the hot path)
    def get(self, key: bytes, partition: int) -> bytes | None:
        recent, older = self.caches
        value = recent.get(key)
        if value is None:
            value = older.get(key)
            if value is None:
                value = self.dbs[partition].get(key)
        return value

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        caches = self.caches
        recent = caches[0]
        recent[key] = value
        if len(recent) >= self.cache_keys:
            caches[:] = [{}, recent]
        pending = self._pending.get(partition)
        if pending is None:
            pending = self._pending[partition] = []
        pending.append((key, value))

    def flush(self) -> None:
        """Write the collected puts into RocksDB (one WriteBatch per partition), then hand them to ``on_flush``."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        for partition, records in pending.items():
            self.apply(partition, records)
            self.on_flush(partition, records)

    # changelog bookkeeping
    def covered(self, partition: int) -> int | None:
        """The last changelog offset this partition's DB contains, or None when unknown."""
        raw: bytes | None = self.dbs[partition].get(OFFSET_KEY)
        return None if raw is None else int(_OFFSET.unpack(raw)[0])

    def set_covered(self, partition: int, offset: int) -> None:
        self.flush()
        self.dbs[partition][OFFSET_KEY] = _OFFSET.pack(offset)

    def apply(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Write records (restored changelog records, or collected puts) into the partition's DB in one batch
        (a None value deletes; the cache is not updated: restores run while no frame is processed). Returns the
        count."""
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
