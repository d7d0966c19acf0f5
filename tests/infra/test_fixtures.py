"""The session fixtures hand out a REAL broker and database: keyed records land where murmur2 says,
SQL round-trips, and private instances survive stop/start on the same address."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from mdpipe.partitioner import partition_for

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[tuple[int, str, bytes]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[tuple[int, str, bytes]] = []
    try:
        for _ in range(300):
            for msg in consumer.consume(num_messages=500, timeout=0.2):
                assert msg.error() is None, msg.error()
                got.append((msg.partition(), msg.key().decode(), msg.value()))
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


def test_keyed_records_land_on_the_murmur2_partition(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    partitions = 6
    (topic,) = make_topics(partitions=partitions)
    keys = [f"KX-MARKET-{i}" for i in range(60)]
    records = [(k, f"{k}#{n}".encode()) for k in keys for n in range(3)]
    _produce(kafka_bootstrap, topic, records)
    got = _consume_all(kafka_bootstrap, topic, partitions, len(records))
    assert sorted((k, v) for _, k, v in got) == sorted(records)
    for partition, key, _ in got:
        assert partition == partition_for(key, partitions), key
    assert len({p for p, _, _ in got}) > 1  # the keys really spread over partitions


def test_make_topics_given_names_and_broker_refuses_auto_create(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    from confluent_kafka.admin import AdminClient

    name = f"named-{uuid.uuid4().hex[:8]}"
    assert make_topics([name], partitions=3) == [name]
    assert make_topics([name], partitions=3) == [name]  # existing with the same count is accepted
    meta = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert len(meta.topics[name].partitions) == 3
    missing = f"never-created-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 1500})
    errors: list[object] = []
    producer.produce(missing, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None  # auto.create.topics.enable=false
    assert missing not in AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics


def test_database_round_trip_in_fresh_database(pg_dsn: str, make_database: Callable[..., str]) -> None:
    dsn = make_database()
    assert dsn != pg_dsn
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE t (k text PRIMARY KEY, v bigint NOT NULL)")
        with conn.cursor().copy("COPY t (k, v) FROM STDIN") as copy:
            for i in range(100):
                copy.write_row((f"k{i}", i))
        conn.commit()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*), sum(v) FROM t").fetchone() == (100, sum(range(100)))
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("mdpipe",)


def test_mdpipe_config_points_at_the_fixtures(mdpipe_config: object, kafka_bootstrap: str) -> None:
    from mdpipe.config import Config

    assert isinstance(mdpipe_config, Config)
    assert mdpipe_config.kafka.bootstrap_servers == kafka_bootstrap
    assert mdpipe_config.kafka.topic_prefix.endswith(".")
    with psycopg.connect(mdpipe_config.postgres.dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_private_postgres_survives_stop_and_start(private_postgres: Callable[..., object]) -> None:
    server = private_postgres()
    dsn = server.dsn  # type: ignore[attr-defined]
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()  # type: ignore[attr-defined]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)
    server.start()  # type: ignore[attr-defined]
    assert server.dsn == dsn  # type: ignore[attr-defined]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)


def test_private_kafka_keeps_data_and_address_across_restart(private_kafka: Callable[..., object]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    broker = private_kafka()
    bootstrap = broker.bootstrap_servers  # type: ignore[attr-defined]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("outage", num_partitions=2, replication_factor=1)])["outage"].result(30)
    _produce(bootstrap, "outage", [("a", b"before"), ("b", b"before")])
    broker.kill()  # type: ignore[attr-defined]
    assert not broker.is_running()  # type: ignore[attr-defined]
    broker.start()  # type: ignore[attr-defined]
    assert broker.bootstrap_servers == bootstrap  # type: ignore[attr-defined]
    _produce(bootstrap, "outage", [("a", b"after")])
    values = sorted(v for _, _, v in _consume_all(bootstrap, "outage", 2, 3))
    assert values == [b"after", b"before", b"before"]


def test_test_topics_keep_records_stamped_long_ago(private_kafka: Callable[..., object]) -> None:
    """Tests write records with fixed past times (frames of 2026-01-01): the broker's time retention, checked every
    5 minutes, would delete them under a running test (a dedup worker then finds its raw partition empty and exits
    idle with nothing emitted). A broker checking retention at once and often: a topic of default config loses such
    a record, a test topic keeps it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from tests.conftest import create_test_topics

    overrides = {"log.initial.task.delay.ms": "0", "log.retention.check.interval.ms": "100"}
    broker = private_kafka(overrides=overrides)
    bootstrap = broker.bootstrap_servers  # type: ignore[attr-defined]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("default", num_partitions=1, replication_factor=1)])["default"].result(30)
    assert create_test_topics(admin, ["kept"], 1) == ["kept"]
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for topic in ("default", "kept"):
        producer.produce(topic, key=b"m", value=b"old", timestamp=1_767_225_600_000)  # 2026-01-01
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex[:8]}"})
    try:
        deadline = time.monotonic() + 60
        while consumer.get_watermark_offsets(TopicPartition("default", 0), timeout=10) != (1, 1):
            assert time.monotonic() < deadline, "the broker never applied its retention to the default topic"
            time.sleep(0.1)
        time.sleep(0.5)  # a few more retention checks
        assert consumer.get_watermark_offsets(TopicPartition("kept", 0), timeout=10) == (0, 1)
    finally:
        consumer.close()
    assert [v for _, _, v in _consume_all(bootstrap, "kept", 1, 1)] == [b"old"]


def test_aiokafka_group_consumer_works_against_the_broker(
    kafka_bootstrap: str, make_topics: Callable[..., list[str]]
) -> None:
    """aiokafka (Faust's driver) against this broker: default partitioner = murmur2, group join, commit."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    (topic,) = make_topics(partitions=4)
    keys = [f"AIO-{i}" for i in range(20)]

    async def scenario() -> list[tuple[int, str]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for key in keys:
                await producer.send_and_wait(topic, b"v", key=key.encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"aio-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[tuple[int, str]] = []
        try:
            while len(got) < len(keys):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), timeout=60)
                got += [(m.partition, m.key.decode()) for msgs in batch.values() for m in msgs]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    assert sorted(k for _, k in got) == sorted(keys)
    assert all(p == partition_for(k, 4) for p, k in got)
