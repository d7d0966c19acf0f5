"""The sink itself (the loader: consumer group, batches, binary COPY, offsets stored with the rows) from the real
broker into the TimescaleDB tier's database, then a whole-topic replay under a new group absorbed."""

from __future__ import annotations

from pathlib import Path

import msgspec
import psycopg
import pytest

from bench.sink.data import BASE_MS, make_events
from mdpipe.config import Config
from tests.sink.conftest import SinkEnv, expected_tables
from tests.tsdb.conftest import read_range, utc_ms

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
EVENTS = 2_000


def test_the_sink_loads_from_kafka_and_absorbs_a_replay(tsdb_dsn: str, mdpipe_config: Config, tmp_path: Path) -> None:
    pg = msgspec.structs.replace(mdpipe_config.postgres, dsn=tsdb_dsn, timescaledb="on")
    sink = msgspec.structs.replace(mdpipe_config.sink, idle_exit_s=0.5)
    env = SinkEnv(msgspec.structs.replace(mdpipe_config, postgres=pg, sink=sink), tmp_path)
    start = BASE_MS + DAY_MS  # a day of its own in the shared database
    events = [
        msgspec.structs.replace(e, event_key=f"kafka:{e.event_key}")
        for e in make_events(EVENTS, markets=3, seed=41, start_ms=start)
    ]
    env.produce(events)
    first = env.run_loader("tsdb-kafka-1")
    assert first.rows == EVENTS and first.duplicates == 0 and first.dead == 0
    lo, hi = utc_ms(start), utc_ms(start + EVENTS)
    assert read_range(tsdb_dsn, lo, hi) == expected_tables(events)
    with psycopg.connect(tsdb_dsn) as conn:
        stored = conn.execute(
            "SELECT sum(next_offset) FROM sink_offsets WHERE group_id = 'tsdb-kafka-1' AND topic = %s",
            (env.names.events,),
        ).fetchone()
    assert stored == (EVENTS,)
    replay = env.run_loader("tsdb-kafka-2")  # a new group reads the whole topic again
    assert replay.rows == 0 and replay.duplicates == EVENTS and replay.dead == 0
    assert read_range(tsdb_dsn, lo, hi) == expected_tables(events)
