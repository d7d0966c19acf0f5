"""End to end: emulator -> 3 gatherers -> dedup -> sink -> database, with faults, proven by `mdpipe verify`.

Then backfill: delete a time range of rows, check verify sees them missing, replay (events -> database,
then raw -> dedup -> events -> database) and check verify is clean again, without duplicates.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from mdpipe.config import Config
from ops.pipeline_run import FaultPlan, PipelineRun
from tests.e2e.finished_run import finished_run

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

TABLES = ("orderbook_deltas", "trades", "tickers", "market_lifecycle", "orderbook_snapshots")


def assert_clean(report: dict) -> None:
    assert report["missing"] == 0, report["missing_examples"]
    assert report["duplicated"] == 0, report["duplicated_examples"]
    assert report["unexpected"] == 0, report["unexpected_examples"]
    assert report["markets_uncovered"] == 0, report["uncovered_examples"]
    assert report["books_mismatched"] == 0, report["book_examples"]
    assert report["snapshots_unmatched"] == 0, report["snapshot_examples"]
    assert report["clean"]


def delete_range(dsn: str, lo_ms: int, hi_ms: int) -> int:
    deleted = 0
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            cur = conn.execute(
                f"DELETE FROM {table} WHERE ts >= to_timestamp(%s / 1000.0) AND ts < to_timestamp(%s / 1000.0)",
                (lo_ms, hi_ms),
            )
            deleted += cur.rowcount
    return deleted


def replay(run: PipelineRun, what: str, lo_ms: int, hi_ms: int, name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mdpipe", "replay", what, "--from-ts", str(lo_ms), "--to-ts", str(hi_ms), "--id", name],
        env={**os.environ, **run._env()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_short_run_with_faults_is_clean_and_replay_restores_a_deleted_range(
    mdpipe_config: Config, tmp_path: Path
) -> None:
    run = finished_run(
        mdpipe_config,
        tmp_path,
        "mdpipe_e2e",
        markets=300,
        rate=500.0,
        duration_s=18.0,
        gatherers=3,
        seed=11,
        faults=FaultPlan(disconnect_at=0.2, seq_gap_at=0.35, kill_gatherer_at=0.5, restart_after_s=3.0),
        drain_timeout_s=120.0,
    )
    report = run.verify()
    assert report["venue_events"] > 5_000
    assert report["expected"] > 3_000  # (expected = delivered to some gatherer, from the venue's own record)
    assert_clean(report)
    assert report["snapshots"] > 0
    assert any("SIGKILL" in line for line in run.events_log)

    with psycopg.connect(run.dsn) as conn:
        lo, hi = conn.execute(
            "SELECT (extract(epoch from min(ts)) * 1000)::bigint, (extract(epoch from max(ts)) * 1000)::bigint "
            "FROM orderbook_deltas"
        ).fetchone()
    third = (hi - lo) // 3
    for what in ("events", "dedup"):
        assert delete_range(run.dsn, lo + third, lo + 2 * third) > 100
        damaged = run.verify()
        assert damaged["missing"] > 100 and damaged["duplicated"] == 0
        replay(run, what, lo + third, lo + 2 * third, name=f"t{what}")
        assert_clean(run.verify())
