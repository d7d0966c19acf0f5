"""Migrations: file discovery and variants (unit), idempotent `mdpipe sink migrate` on a real database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mdpipe.cli import main
from mdpipe.config import ConfigError, PostgresConfig
from sink.migrate import Migration, discover
from sink.rows import COLUMNS


def test_discover_orders_versions_and_variants() -> None:
    found = discover()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert {m.variant for m in found if m.version == 2} == {"plain", "timescale"}
    assert all(m.variant is None for m in found if m.version == 1)


def test_bad_file_name_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(ValueError, match="NNNN_name"):
        discover(tmp_path)


def test_chunk_interval_is_substituted_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "0003_t.timescale.sql"
    path.write_text("SELECT {{chunk_interval}};")
    mig = Migration(3, "t", "timescale", path)
    assert mig.sql_text(PostgresConfig(chunk_interval="2 hours")) == "SELECT INTERVAL '2 hours';"
    with pytest.raises(ConfigError):
        mig.sql_text(PostgresConfig(chunk_interval="1 hour'; DROP TABLE trades; --"))


@pytest.mark.integration
def test_cli_migrate_is_idempotent(
    make_database: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    dsn = make_database()
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", dsn)
    monkeypatch.setenv("MDPIPE_POSTGRES__TIMESCALEDB", "off")
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    assert main(["sink", "migrate"]) == 0
    assert "mode=plain applied=[1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13]" in capsys.readouterr().out
    assert main(["sink", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    with psycopg.connect(dsn) as conn:
        applied = conn.execute("SELECT version, variant FROM schema_migrations ORDER BY version").fetchall()
        assert applied == [(1, ""), (2, "plain"), (3, ""), (4, ""), (5, "plain"), (6, ""), (7, "plain"), (8, ""),
                           (10, ""), (11, ""), (12, ""), (13, "")]  # fmt: skip
        for table, cols in COLUMNS.items():
            got = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
                )
            ]
            assert set(cols) <= set(got), table
        indexes: Any = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'trades'")}
        assert indexes == {"trades_market_ts_event_key_venue_key", "trades_ts_brin"}
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'tickers'"
            ).fetchall()
        )
        assert types["ts"] == types["received_at"] == types["loaded_at"] == "timestamp with time zone"
        assert types["price"] == types["volume"] == "numeric" and types["dollar_volume"] == "bigint"
