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


Item = tuple[bytes, str, int]  # an encoded frame (or bytes that are not one), its market, its receive time (ms)


def _records(items: list[Item], size: int, partitions: int) -> list[tuple[bytes, bytes, int, int]]:
    """(value, key, partition, timestamp ms) of the records that carry ``items`` on the market's partition: one per
    record with ``size`` 0, else as a gatherer bundles them (per partition, in order, up to ``size`` frames a bundle,
    keyed and stamped by its first frame)."""
    from mdpipe.partitioner import partition_for
    from schemas.raw_record import encode_bundle

    if not size:
        return [(value, market.encode(), partition_for(market, partitions), ts) for value, market, ts in items]
    out: list[tuple[bytes, bytes, int, int]] = []
    open_: dict[int, list[Item]] = {}
    for item in items:
        partition = partition_for(item[1], partitions)
        bundle = open_.setdefault(partition, [])
        bundle.append(item)
        if len(bundle) == size:
            out.append((encode_bundle([v for v, _, _ in bundle]), bundle[0][1].encode(), partition, bundle[0][2]))
            del open_[partition]
    for partition, bundle in open_.items():
        out.append((encode_bundle([v for v, _, _ in bundle]), bundle[0][1].encode(), partition, bundle[0][2]))
    return out


def _produce_records(config: Config, gatherer: str, records: list[tuple[bytes, bytes, int, int]]) -> int:
    from confluent_kafka import Producer

    producer = Producer({**kafka_client_config(config.kafka), "enable.idempotence": True})
    for value, key, partition, ts_ms in records:
        producer.produce(topic_names(config).raw[gatherer], value=value, key=key, partition=partition, timestamp=ts_ms)
    assert producer.flush(30) == 0
    return len(records)


def test_bundles_archive_one_row_per_frame_and_replay_as_plain_records(
    mdpipe_config: Config, make_database: Any, tmp_path: Path
) -> None:
    """The same frames reach two sets of raw topics: in bundles (g1 by 5, g2 by 3) and one per record. The bundles'
    archive has one row per frame (the record's coordinates, ``slot`` its index, ``value`` the frame), in files that
    never split a bundle (``max_rows`` 4 < 5) and resume after the last record; a bad frame inside a bundle is its
    own row, a bundle that does not split one row. Replays of the two archives rebuild the same database."""
    bundled = mdpipe_config
    plain = msgspec.structs.replace(
        bundled, kafka=msgspec.structs.replace(bundled.kafka, topic_prefix=bundled.kafka.topic_prefix + "plain.")
    )  # under the fixture's prefix: its topics are deleted with the test's
    partitions = bundled.kafka.partitions
    ensure_topics(bundled)
    ensure_topics(plain)
    events = pipeline_events(600, markets=20, seed=41, t0_ns=time.time_ns() - 60_000_000_000)
    copies = {  # g1 first for every event it has, g2 (10 s later) wins the rest: one winner however the merge goes
        "g1": gatherer_copies(events, "g1", keep=0.85),
        "g2": gatherer_copies(events, "g2", delay_ns=10_000_000_000),
    }
    items = {g: [(encode_raw(f), f.market, f.recv_ns // 1_000_000) for f in frames] for g, frames in copies.items()}
    # every 40th g1 frame twice in a row, mostly in one bundle: a duplicate there only by the origin of its slot
    items["g1"] = [x for i, x in enumerate(items["g1"]) for x in ((x, x) if i % 40 == 0 else (x,))]
    repeats = len(items["g1"]) - len(copies["g1"])
    bad = b"\x93not a raw frame"
    items["g2"].insert(7, (bad, items["g2"][7][1], items["g2"][7][2]))  # in a bundle with frames of its partition
    sizes = {"g1": 5, "g2": 3}
    bundled_dir, plain_dir = tmp_path / "bundled", tmp_path / "plain"
    damaged = _records(items["g1"][:2], 2, partitions)[0]
    damaged = (damaged[0][:-3], *damaged[1:])  # a bundle that does not split
    for part in (0, 1):  # half the frames, then the rest and the damaged bundle: the second run appends them
        records = frames = 0
        for g, all_frames in items.items():
            half = all_frames[: len(all_frames) // 2] if part == 0 else all_frames[len(all_frames) // 2 :]
            records += _produce_records(bundled, g, _records(half, sizes[g], partitions))
            frames += _produce_records(plain, g, _records(half, 0, partitions))
        if part:
            records += _produce_records(bundled, "g1", [damaged])
        run = _archiver(bundled, bundled_dir, max_rows=4).run()  # fewer than a bundle of g1
        assert (run.records, run.rows) == (records, frames + part)
        assert _archiver(plain, plain_dir).run().rows == frames

    # one row per frame: the record's offset, its slot, the frame's bytes; a file's name covers its records whole
    frames_of: dict[tuple[str, int], list[bytes]] = {}
    slotted = twice = 0
    for g in items:
        spans: dict[int, list[tuple[int, int]]] = {}
        for f in sorted((bundled_dir / "raw" / f"gatherer={g}").rglob("*.parquet")):
            partition, first_offset, last_offset = parse_file_name(str(f))  # type: ignore[misc]
            spans.setdefault(partition, []).append((first_offset, last_offset))
            rows = pq.read_table(f).to_pylist()
            assert sorted({r["offset"] for r in rows}) == list(range(first_offset, last_offset + 1))
            for offset, group in itertools.groupby(rows, key=lambda r: r["offset"]):
                group_rows = list(group)
                slots = [r["slot"] for r in group_rows]
                if group_rows[0]["value"] == damaged[0]:
                    assert slots == [None] and group_rows[0]["market"] is None  # archived whole, undecoded
                    continue
                assert slots == list(range(len(group_rows))), (f, offset, slots)  # a bundle, whole, in order
                slotted += len(slots) > 1
                twice += len({r["value"] for r in group_rows}) < len(group_rows)
                for r in group_rows:
                    if r["value"] == bad:
                        assert r["market"] is None and r["slot"] is not None
                        continue
                    assert r["market"] == decode_raw(r["value"]).market  # the frame's own, not the bundle's key
                frames_of.setdefault((g, partition), []).extend(r["value"] for r in group_rows)
        for ranges in spans.values():
            ranges.sort()
            assert ranges[0][0] == 0 and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    assert slotted > 10 and twice > 0
    plain_frames: dict[tuple[str, int], list[bytes]] = {}
    for g in items:
        for f in sorted((plain_dir / "raw" / f"gatherer={g}").rglob("*.parquet")):
            table = pq.read_table(f)
            assert set(table.column("slot").to_pylist()) == {None}
            plain_frames.setdefault((g, parse_file_name(str(f))[0]), []).extend(table.column("value").to_pylist())  # type: ignore[index]
    assert frames_of == plain_frames  # every frame once, in its partition's order

    dsns = {}
    stats = {}
    for name, directory in (("bundled", bundled_dir), ("plain", plain_dir)):
        dsns[name] = make_database()
        migrate(dsns[name], bundled.postgres)
        stats[name] = replay_archive(open_location(str(directory)), dsns[name])
    b, p = stats["bundled"], stats["plain"]
    assert (b.events, b.duplicates, b.gaps) == (p.events, p.duplicates, p.gaps) == (600, len(copies["g1"]) + repeats, 0)
    assert (b.frames, b.dead) == (p.frames + 1, p.dead + 1) and p.dead == 1  # the damaged bundle, the bad frame
    total = 0
    for table in EVENT_TABLES:
        rebuilt = _rows(dsns["bundled"], table)
        assert rebuilt == _rows(dsns["plain"], table), table
        total += len(rebuilt)
    assert total == 600
