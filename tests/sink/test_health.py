"""The sink's /healthz rule and the TCP settings that break a connection to a vanished database host."""

from __future__ import annotations

import time

import msgspec
import pytest

from mdpipe.config import Config, SinkConfig
from sink.health import sink_healthy
from sink.store import Store, connect_options


def test_unhealthy_during_an_outage_or_a_write_stuck_past_the_threshold() -> None:
    assert sink_healthy(True, 0.0, 1000.0, 120.0)  # idle
    assert sink_healthy(True, 900.0, 1000.0, 120.0)  # a write in flight for 100 s
    assert sink_healthy(True, 880.0, 1000.0, 120.0)  # exactly at the threshold
    assert not sink_healthy(True, 879.0, 1000.0, 120.0)  # stuck longer than allowed
    assert not sink_healthy(False, 0.0, 1000.0, 120.0)  # the database is being retried
    assert not sink_healthy(False, 999.0, 1000.0, 120.0)


def test_tcp_settings_are_validated_and_reach_libpq() -> None:
    sink = SinkConfig(db_keepalives_idle_s=7, db_keepalives_interval_s=2, db_keepalives_count=4)
    assert connect_options(sink) == {
        "keepalives": 1,
        "keepalives_idle": 7,
        "keepalives_interval": 2,
        "keepalives_count": 4,
        "tcp_user_timeout": 30_000,
    }
    for bad in ("db_keepalives_idle_s", "db_keepalives_interval_s", "db_keepalives_count", "db_tcp_user_timeout_ms"):
        with pytest.raises(ValueError, match=bad):
            SinkConfig(**{bad: 0})
    with pytest.raises(ValueError, match="max_write_s"):
        SinkConfig(max_write_s=-1.0)


@pytest.mark.integration
def test_store_connections_carry_the_tcp_settings(mdpipe_config: Config) -> None:
    sink = msgspec.structs.replace(mdpipe_config.sink, db_keepalives_idle_s=9, db_tcp_user_timeout_ms=12_000)
    store = Store(mdpipe_config.postgres.dsn, "g-tcp", options=connect_options(sink))
    try:
        params = store.conn.info.get_parameters()
        assert store.busy_since == 0.0
    finally:
        store.close()
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "9" and params["tcp_user_timeout"] == "12000"


def test_loader_health_looks_at_every_connection() -> None:
    from types import SimpleNamespace

    from sink.loader import Loader

    sink = SinkConfig(max_write_s=5.0)
    writer_a, writer_b, meta = (SimpleNamespace(busy_since=0.0) for _ in range(3))
    lanes = [SimpleNamespace(store=writer_a), SimpleNamespace(store=writer_b)]
    loader = SimpleNamespace(lanes=lanes, meta_store=meta, _db_failing=set(), config=SimpleNamespace(sink=sink))
    assert Loader.healthy(loader)  # type: ignore[arg-type]
    meta.busy_since = time.monotonic() - 60  # an offsets lookup stuck for a minute
    assert not Loader.healthy(loader)  # type: ignore[arg-type]
    meta.busy_since, writer_a.busy_since = 0.0, time.monotonic() - 1
    assert Loader.healthy(loader)  # type: ignore[arg-type]
    writer_b.busy_since = time.monotonic() - 6  # the second lane's write is stuck
    assert not Loader.healthy(loader)  # type: ignore[arg-type]
    writer_b.busy_since = 0.0
    loader._db_failing.add(id(writer_a))  # one lane retrying through an outage
    assert not Loader.healthy(loader)  # type: ignore[arg-type]
