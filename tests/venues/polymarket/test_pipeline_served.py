"""Polymarket through the whole pipeline against the real emulator, broker and database: gatherer (in process) ->
raw topic -> ``mdpipe dedup`` (a worker process) -> events -> the sink's loader -> tables. Every raw frame becomes one
row (one gatherer: each copy is the first), and the books rebuilt from the ROWS with the venue's replace semantics
(:mod:`venues.polymarket.book`) equal the emulator's, for both tokens of every condition."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from ingest.gatherer import Gatherer
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import Config, GatherConfig, SimConfig, VenueConfig
from mdpipe.kafka import producer_config
from mdpipe.topics import ensure_topics, topic_names
from sink.book import DeltaRow, SnapshotRow
from sink.loader import Loader
from sink.migrate import migrate
from tests.ingest.conftest import read_frames, run_with, wait_for
from venue_sim.app import SimOptions, VenueSim
from venues.polymarket.book import book_at
from venues.polymarket.emulator import Profile

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MARKETS = 4
EPOCH_MS = "(extract(epoch from ts) * 1000)::bigint"


def truth(sim: VenueSim, m: int) -> tuple[Any, Any]:
    view = sim.books.peek(m)
    c = Decimal("0.01")
    yes = tuple(sorted(((p * c).normalize(), (s * c).normalize()) for p, s in view.yes.items()))
    no = tuple(sorted(((p * c).normalize(), (s * c).normalize()) for p, s in view.no.items()))
    return yes, no


def rebuilt_from_rows(conn: psycopg.Connection[Any], token: str) -> tuple[Any, Any]:
    snaps = [
        SnapshotRow(ts, key, tuple(zip(yp, yc, strict=True)), tuple(zip(np_, nc, strict=True)), frozenset(after))
        for ts, key, yp, yc, np_, nc, after in conn.execute(
            f"SELECT {EPOCH_MS}, event_key, yes_prices, yes_counts, no_prices, no_counts, after_keys "
            "FROM orderbook_snapshots WHERE market = %s",
            (token,),
        )
    ]
    deltas = [
        DeltaRow(ts, key, side, price, delta)
        for ts, key, side, price, delta in conn.execute(
            f"SELECT {EPOCH_MS}, event_key, side, price, delta FROM orderbook_deltas WHERE market = %s", (token,)
        )
    ]
    book = book_at(snaps, deltas, 1 << 62)
    assert book is not None, token
    return book.normalised()


def _row_count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        tables = ("orderbook_snapshots", "orderbook_deltas", "trades", "coverage_gaps")
        return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)  # type: ignore[index]


def test_gatherer_dedup_sink_books_equal_the_emulators(mdpipe_config: Config, tmp_path: Path) -> None:
    config = msgspec.structs.replace(mdpipe_config, gather=msgspec.structs.replace(mdpipe_config.gather, ids=["g1"]))
    ensure_topics(config)
    migrate(config.postgres.dsn, config.postgres)
    names = topic_names(config)
    section = SimConfig(port=0, auth=False, markets=MARKETS, rate=300.0, seed=3, churn_per_s=0.0)
    sim = VenueSim(section, SimOptions(), venue="polymarket")

    async def scenario() -> None:
        await sim.start()
        venue = VenueConfig(name="polymarket", rest_url=sim.rest_url, ws_url=sim.ws_url, auth=False)
        gather = GatherConfig(discovery_interval_s=5.0, backoff_initial_s=0.1, backoff_max_s=1.0, ws_client="picows")
        conf, spool = producer_config(config.kafka, linger_ms=5), Spool(tmp_path / "spool", 1 << 30)
        producer = RawProducer(conf, spool, warm_topics={names.raw["g1"]: config.kafka.partitions})
        g = Gatherer(
            gather, venue, producer, gatherer_id="g1", raw_topic=names.raw["g1"], dlq_topic=names.dlq,
            markets_topic=names.markets,
        )  # fmt: skip

        async def body() -> None:
            await wait_for(lambda: len(g.plan.conn_of) == 2 * MARKETS and all(c.up for c in g.connections), 20, "held")
            await asyncio.sleep(2.0)
            await sim.stop_generating()
            await asyncio.sleep(1.5)

        try:
            await run_with(g, body)
        finally:
            await sim.stop()
        assert g.failure is None

    asyncio.run(scenario())
    frames = read_frames(config.kafka.bootstrap_servers, names.raw["g1"])
    assert {f.kind for f in frames} >= {"snapshot", "delta", "trade"}

    (tmp_path / "none.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
    env.update(
        MDPIPE_CONFIG=str(tmp_path / "none.toml"),
        MDPIPE_RUN_DIR=str(tmp_path / "run"),
        MDPIPE_KAFKA__BOOTSTRAP_SERVERS=config.kafka.bootstrap_servers,
        MDPIPE_KAFKA__TOPIC_PREFIX=config.kafka.topic_prefix,
        MDPIPE_KAFKA__PARTITIONS=str(config.kafka.partitions),
        MDPIPE_GATHER__IDS='["g1"]',
    )
    cmd = [sys.executable, "-m", "mdpipe", "dedup", "--app-id", f"{config.kafka.topic_prefix}pm", "--workdir"]
    with open(tmp_path / "dedup.log", "wb") as log:
        dedup = subprocess.Popen([*cmd, str(tmp_path / "dedup")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sink = msgspec.structs.replace(config.sink, group_id=f"{config.kafka.topic_prefix}sink", idle_exit_s=0.5)
        deadline = time.monotonic() + 120
        while _row_count(config.postgres.dsn) < len(frames):
            assert dedup.poll() is None, (tmp_path / "dedup.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{_row_count(config.postgres.dsn)} rows of {len(frames)} frames"
            Loader(msgspec.structs.replace(config, sink=sink), exit_when_idle=True).run()
            time.sleep(0.5)
    finally:
        dedup.terminate()
        dedup.wait(30)
    assert _row_count(config.postgres.dsn) == len(frames), "every frame once"
    ids = Profile(section.seed, sim.markets.ticker)
    with psycopg.connect(config.postgres.dsn) as conn:
        venues_seen = {v for (v,) in conn.execute("SELECT DISTINCT venue FROM orderbook_deltas")}
        assert venues_seen == {"polymarket"}
        for m in range(MARKETS):
            _, yes_token, no_token = ids.ids(m)
            yes, no = truth(sim, m)
            assert rebuilt_from_rows(conn, yes_token) == (yes, no)
            assert rebuilt_from_rows(conn, no_token) == (no, yes)
