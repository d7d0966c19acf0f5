"""`mdpipe archive raw` (resumable, by gatherer and date) and `mdpipe replay --from-archive` (rebuilds the database
that the live pipeline built, row for row), against the real broker and database."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pyarrow.parquet as pq
import pytest

from archive.archive_cli import sources
from archive.export import EVENT_TABLES
from archive.raw import RawArchiver, parse_file_name
from archive.reader import archive_partitions
from archive.replay import replay_archive
from archive.storage import open_location
from dedup_stream.synth import gatherer_copies, pipeline_events, produce_frames
from mdpipe.cli import build_parser, main
from mdpipe.config import Config
from mdpipe.kafka import consumer_config, kafka_client_config
from mdpipe.topics import ensure_topics, topic_names
from schemas import GapReport, MarketRef, RawFrame, decode_raw, encode_gap, encode_market, encode_raw
from sink.migrate import migrate
from venues import default_name

pytestmark = pytest.mark.integration


def _archiver(config: Config, directory: Path, **kw: Any) -> RawArchiver:
    conf = consumer_config(config.kafka, "archive-test")
    return RawArchiver(conf, open_location(str(directory)), sources(config, None, True), idle_s=5, **kw)


def _produce(config: Config, gatherer: str, frames: list[RawFrame]) -> int:
    return produce_frames(kafka_client_config(config.kafka), topic_names(config).raw[gatherer], frames)


def _produce_bytes(config: Config, gatherer: str, value: bytes, key: bytes = b"KX") -> int:
    """A record that is not a RawFrame (a gatherer bug, a corrupted write)."""
    from confluent_kafka import Producer

    producer = Producer(kafka_client_config(config.kafka))
    producer.produce(topic_names(config).raw[gatherer], value=value, key=key)
    assert producer.flush(30) == 0
    return 1


def _run(argv: list[str], config: Config) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args, config) or 0)


def _produce_markets(config: Config, tickers: list[str], t0_ns: int) -> int:
    """Reference data as gatherers write it: two versions of each market (the later one must win)."""
    from confluent_kafka import Producer

    producer = Producer(kafka_client_config(config.kafka))
    for version in (1, 2):
        for ticker in tickers:
            ref = MarketRef(venue=default_name(), ticker=ticker, event_ticker=ticker.rsplit("-", 1)[0],
                            title=f"v{version}", status="active" if version == 2 else "initialized",
                            open_time_ms=t0_ns // 1_000_000, updated_ns=t0_ns + version)  # fmt: skip
            producer.produce(topic_names(config).markets, key=ticker.encode(), value=encode_market(ref))
    assert producer.flush(30) == 0
    return 2 * len(tickers)


def _run_process(argv: list[str], config: Config, run_dir: Path, timeout_s: float = 120) -> int:
    """`mdpipe ARGV` in a child process (a stage registers its metrics once per process) with ``config``'s broker,
    topic prefix, database and gatherers."""
    env = {
        **os.environ,
        "MDPIPE_RUN_DIR": str(run_dir),
        "MDPIPE_KAFKA__BOOTSTRAP_SERVERS": config.kafka.bootstrap_servers,
        "MDPIPE_KAFKA__TOPIC_PREFIX": config.kafka.topic_prefix,
        "MDPIPE_KAFKA__PARTITIONS": str(config.kafka.partitions),
        "MDPIPE_POSTGRES__DSN": config.postgres.dsn,
        "MDPIPE_GATHER__IDS": json.dumps(list(config.gather.ids)),
    }
    log = run_dir / f"{argv[0]}-{time.monotonic_ns()}.log"
    run_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        status = subprocess.run(
            [sys.executable, "-m", "mdpipe", *argv], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s
        ).returncode
    assert status == 0, log.read_text()[-3000:]
    return status


def _rows(dsn: str, table: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND table_name = %s AND column_name <> 'loaded_at' ORDER BY ordinal_position",
                (table,),
            )
        ]
        select = ", ".join(f'"{c}"' for c in cols)
        order = "ticker" if table == "markets" else 'ts, event_key COLLATE "C"'
        return conn.execute(f"SELECT {select} FROM {table} ORDER BY {order}").fetchall()


def test_raw_archive_appends_only_what_is_new(mdpipe_config: Config, tmp_path: Path) -> None:
    config = mdpipe_config
    ensure_topics(config)
    events = pipeline_events(900, markets=30, seed=11, t0_ns=time.time_ns() - 60_000_000_000)
    _produce(config, "g1", gatherer_copies(events[:600], "g1"))
    _produce_bytes(config, "g2", b"\x93not a frame")  # archived all the same (dedup would dead-letter it)
    first = _archiver(config, tmp_path).run()
    assert first.records == 601
    again = _archiver(config, tmp_path).run()
    assert again.records == 0 and again.files == 0
    _produce(config, "g1", gatherer_copies(events[600:], "g1"))
    third = _archiver(config, tmp_path, max_rows=100).run()
    assert third.records == 300

    raw_g1 = topic_names(config).raw["g1"]
    files = sorted((tmp_path / "raw" / "gatherer=g1").rglob("*.parquet"))
    spans: dict[int, list[tuple[int, int]]] = {}
    for f in files:
        partition, first_offset, last_offset = parse_file_name(str(f))  # type: ignore[misc]
        spans.setdefault(partition, []).append((first_offset, last_offset))
        table = pq.read_table(f)
        offsets = table.column("offset").to_pylist()
        assert offsets == list(range(first_offset, last_offset + 1))  # the name says what the file holds
        assert set(table.column("topic").to_pylist()) == {raw_g1}
        assert f.parent.name.startswith("date=")
    for ranges in spans.values():  # contiguous, no overlap, from offset 0
        ranges.sort()
        assert ranges[0][0] == 0
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert sum(last - first + 1 for ranges in spans.values() for first, last in ranges) == 900
    one = pq.read_table(files[0]).to_pylist()[0]
    frame = decode_raw(one["value"])
    assert (one["gatherer"], one["market"], one["event_key"], one["recv_ns"]) == (
        "g1", frame.market, frame.event_key, frame.recv_ns,
    )  # fmt: skip
    assert json.loads(one["venue_payload"])["type"]
    bad = pq.read_table(next((tmp_path / "raw" / "gatherer=g2").rglob("*.parquet"))).to_pylist()
    assert bad[0]["value"] == b"\x93not a frame" and bad[0]["market"] is None
    runs = sorted((tmp_path / "_runs").glob("*.json"))
    assert len(runs) == 3 and json.loads(runs[-1].read_text())["records"] == 300


def test_database_rebuilt_from_the_archive_equals_the_live_one(
    mdpipe_config: Config, make_database: Any, tmp_path: Path
) -> None:
    """Live: gatherers -> raw topics -> dedup -> events -> sink. Each event has copies from two gatherers; the
    first copy of half of them is g1's, of the other half g2's (produced, and deduplicated, before the later copies),
    plus a gap report and a malformed frame. Then the raw topics are archived, the database is rebuilt from the
    archive alone into a fresh database, and every event table must hold the same rows (all columns but loaded_at)."""
    config = msgspec.structs.replace(
        mdpipe_config, gather=msgspec.structs.replace(mdpipe_config.gather, ids=["g1", "g2", "g3"])
    )
    ensure_topics(config)
    live_dsn = config.postgres.dsn
    t0 = time.time_ns() - 120_000_000_000
    events = pipeline_events(1600, markets=40, seed=21, t0_ns=t0, spacing_ns=5_000_000)
    first_half, second_half = events[:800], events[800:]
    app = ["dedup", "--app-id", f"{config.kafka.topic_prefix}dd", "--workdir", str(tmp_path / "dd")]
    app += ["--exit-when-idle", "--idle-s", "2", "--metrics-port", "0"]

    produced = _produce(config, "g1", gatherer_copies(first_half, "g1", seed=1))
    produced += _produce(config, "g2", gatherer_copies(second_half, "g2", seed=2))
    _run_process(app, config, tmp_path / "run")
    produced += _produce(config, "g2", gatherer_copies(first_half, "g2", seed=3, delay_ns=50_000_000))
    produced += _produce(config, "g1", gatherer_copies(second_half, "g1", seed=4, delay_ns=50_000_000, keep=0.9))
    report = GapReport(kind="seq", conn=2, from_ns=t0 + 10**9, to_ns=t0 + 2 * 10**9, channel="orderbook_delta",
                       markets=[events[0].market], sid=4, expected=10, received=14)  # fmt: skip
    gap = RawFrame(venue=default_name(), gatherer="g3", conn=2, sid=4, seq=14, recv_ns=t0 + 2 * 10**9, kind="gap",
                   market=events[0].market, event_key="g:x", payload=encode_gap(report))  # fmt: skip
    produced += _produce(config, "g3", [gap])
    produced += _produce_markets(config, sorted({e.market for e in events})[:5], t0)
    produced += _produce_bytes(config, "g3", encode_raw(gap)[:-5], key=gap.market.encode())  # truncated: dead letter
    _run_process(app, config, tmp_path / "run")
    _run_process(["sink", "--exit-when-idle", "--metrics-port", "0"], config, tmp_path / "run")

    archive_dir = tmp_path / "archive"
    assert _archiver(config, archive_dir).run().records == produced
    location = open_location(str(archive_dir))
    assert archive_partitions(location) == list(range(config.kafka.partitions))

    rebuilt_dsn = make_database()
    migrate(rebuilt_dsn, config.postgres)
    stats = replay_archive(location, rebuilt_dsn)
    assert stats.gaps == 1 and stats.dead >= 1 and stats.duplicates > 0

    winners: set[str] = set()
    total = 0
    for table in EVENT_TABLES:
        live, rebuilt = _rows(live_dsn, table), _rows(rebuilt_dsn, table)
        assert len(live) == len(rebuilt), table
        assert live == rebuilt, table
        total += len(live)
        if table == "trades":
            winners = {row[3] for row in live}  # gatherer
    assert total == 1600 + 1  # every event once, and the gap report
    live_markets, rebuilt_markets = _rows(live_dsn, "markets"), _rows(rebuilt_dsn, "markets")
    assert len(live_markets) == 5 and live_markets == rebuilt_markets
    assert winners == {"g1", "g2"}  # both gatherers won events: the rebuild made the live choice, not a fixed one

    # replaying again into the rebuilt database adds nothing (the unique key absorbs it)
    again = replay_archive(location, rebuilt_dsn)
    assert again.absorbed == stats.events and sum(again.rows.values()) == 0


def test_replay_from_archive_cli(mdpipe_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = mdpipe_config
    ensure_topics(config)
    events = pipeline_events(300, markets=10, seed=5, t0_ns=time.time_ns() - 60_000_000_000)
    _produce(config, "g1", gatherer_copies(events, "g1"))
    _produce(config, "g2", gatherer_copies(events, "g2", delay_ns=10_000_000))
    assert _run(["archive", "raw", "--to-dir", str(tmp_path), "--idle-s", "5"], config) == 0
    archived = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert archived["records"] == 600 and archived["expired"] == {}
    assert set(archived["covered"]) == {topic_names(config).raw["g1"], topic_names(config).raw["g2"]}
    assert _run(["replay", "--from-archive", str(tmp_path)], config) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["events"] == 300 and summary["duplicates"] == 300
    assert sum(summary["rows"].values()) == 300
    assert main(["replay", "--from-archive", str(tmp_path / "empty")]) == 2
    assert "no raw archive files" in capsys.readouterr().err


def test_raw_archive_and_replay_through_s3(
    mdpipe_config: Config, make_database: Any, s3_server: dict[str, Any]
) -> None:
    config = mdpipe_config
    ensure_topics(config)
    events = pipeline_events(400, markets=10, seed=9, t0_ns=time.time_ns() - 60_000_000_000)
    _produce(config, "g1", gatherer_copies(events[:300], "g1"))
    _produce(config, "g2", gatherer_copies(events, "g2", delay_ns=10_000_000))
    location = open_location("s3://archive/mdpipe", **s3_server)
    conf = consumer_config(config.kafka, "archive-test")
    first = RawArchiver(conf, location, sources(config, None, True), idle_s=5).run()
    assert first.records == 700
    assert RawArchiver(conf, location, sources(config, None, True), idle_s=5).run().records == 0
    assert location.files("raw/gatherer=g2") and not location.files("", suffix=".tmp")
    dsn = make_database()
    migrate(dsn, config.postgres)
    stats = replay_archive(location, dsn)
    assert (stats.events, stats.duplicates, sum(stats.rows.values())) == (400, 300, 400)
