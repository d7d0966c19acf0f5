"""The native worker's per-partition rocksdict state: Store protocol, changelog hook, covered offset, batches."""

from __future__ import annotations

from pathlib import Path

from dedup_stream.logic import Deduper, Origin, Verdict
from dedup_stream.partition_state import OFFSET_KEY, PartitionStates
from dedup_stream.synth import gatherer_copies, venue_events
from schemas import encode_raw


def test_puts_reach_rocksdb_then_the_changelog_at_flush(tmp_path: Path) -> None:
    logged: list[tuple[int, bytes, bytes]] = []
    states = PartitionStates(
        tmp_path / "s", 3600, lambda p, records: logged.extend((p, k, v) for k, v in records), cache_keys=2
    )
    states.open(0)
    states.open(1)
    states.put(b"M0\x1fk", b"v0", 0)
    assert logged == []  # handed over after RocksDB has them, in one burst per partition
    assert states.get(b"M0\x1fk", 0) == b"v0"  # from the cache
    assert states.dbs[0].get(b"M0\x1fk") is None  # not in RocksDB before flush
    for i in range(5):  # rotates the cache generations twice
        states.put(b"M1\x1fk%d" % i, b"w%d" % i, 1)
    states.flush()
    assert logged[0] == (0, b"M0\x1fk", b"v0") and len(logged) == 6
    assert states.dbs[0].get(b"M0\x1fk") == b"v0" and states.dbs[1].get(b"M0\x1fk") is None
    assert [states.get(b"M1\x1fk%d" % i, 1) for i in range(5)] == [b"w%d" % i for i in range(5)]
    assert states.covered(0) is None
    states.set_covered(0, 41)
    assert states.covered(0) == 41
    assert states.apply(1, [(b"a", b"1"), (b"b", b"2"), (b"a", None)]) == 3
    assert states.get(b"a", 1) is None and states.get(b"b", 1) == b"2"
    assert len(logged) == 6  # restored records are not written back to the changelog
    states.put(b"M0\x1fpending", b"p", 0)
    states.close_all()  # flushes what is pending
    states.open(0)  # survives a close (a restart on the same workdir)
    assert states.get(b"M0\x1fk", 0) == b"v0" and states.get(b"M0\x1fpending", 0) == b"p"
    assert states.covered(0) == 41
    states.wipe(0)
    assert states.get(b"M0\x1fk", 0) is None and states.covered(0) is None
    states.close_all()
    assert not OFFSET_KEY.decode("latin-1")[0].isalnum()


def test_deduper_on_partition_states_first_copy_wins(tmp_path: Path) -> None:
    logged: list[int] = []
    states = PartitionStates(tmp_path / "s", 3600, lambda p, records: logged.extend(p for _ in records))
    for p in range(2):
        states.open(p)
    deduper = Deduper(states)
    events = venue_events(300, markets=4, seed=7)
    verdicts = []
    for g in ("g1", "g2", "g3"):
        for offset, frame in enumerate(gatherer_copies(events, g)):
            partition = hash(frame.market) % 2
            verdicts.append(deduper.decide(encode_raw(frame), Origin(f"raw.{g}", partition, offset)).verdict)
    states.flush()
    assert verdicts.count(Verdict.WON) == len(events) == len(logged)  # first sight only reaches the changelog
    assert verdicts.count(Verdict.DUPLICATE) == 2 * len(events)
    states.close_all()


_WRITE_AND_DIE = """
import os, sys, time
from pathlib import Path
from dedup_stream.partition_state import PartitionStates

states = PartitionStates(Path(sys.argv[1]), 3600, lambda p, records: None)
states.open(0)
for i in range(int(sys.argv[2])):
    # a store key (market, event key) and a winner of the sizes the pipeline writes
    states.put(b"KXMARKET-%06d\\x1fd:%s:0" % (i % 20000, os.urandom(12).hex().encode()), os.urandom(30), 0)
    if i % 50 == 49:
        states.flush()  # one WriteBatch per consumed batch, as the worker writes
states.flush()
db = states.dbs[0]
folder = Path(sys.argv[1]) / "p0"
deadline = time.monotonic() + 30
while time.monotonic() < deadline and (
    db.property_int_value("rocksdb.num-immutable-mem-table") or len(list(folder.glob("*.log"))) > 1
):
    time.sleep(0.05)  # full memtables' background flushes finish, their logs deleted (a kill rarely lands inside)
os._exit(0)  # as a SIGKILL: nothing closed, nothing flushed on the way out
"""


def test_a_killed_worker_leaves_a_short_write_ahead_log_to_replay(tmp_path: Path) -> None:
    """Opening a partition's DB after a SIGKILL replays its write-ahead log (every write of its memtables not yet
    flushed to an SST) before the worker restores the changelog's tail and reads frames again: the memtable's size
    bounds that replay, and with it a failover. After ~8 MB of writes (100,000 puts), at most half of them are left
    in the log. With 16-MB memtables (before this test) all of them were: nothing had been flushed."""
    import subprocess
    import sys

    folder = tmp_path / "s"
    subprocess.run([sys.executable, "-c", _WRITE_AND_DIE, str(folder), "100000"], check=True, timeout=120)
    wal = sum(f.stat().st_size for f in (folder / "p0").glob("*.log"))
    sst = sum(f.stat().st_size for f in (folder / "p0").glob("*.sst"))
    assert sst > 0 and wal < 4 * 2**20, f"write-ahead log left to replay: {wal / 2**20:.1f} MB ({sst} bytes in SSTs)"
    states = PartitionStates(folder, 3600, lambda p, records: None)
    states.open(0)  # the replay itself: every put is there
    keys = states.dbs[0].keys()  # a raw-mode Rdict is not iterable itself
    assert sum(1 for key in keys if key.startswith(b"KXMARKET-")) == 100_000
    states.close_all()
