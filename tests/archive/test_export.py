"""`mdpipe export`: Parquet by table and date, exact decimals, readable without the database, checked row for row."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.compare import compare_export
from archive.export import EVENT_TABLES, ExportError, day_ranges, export, parse_time
from archive.storage import open_location
from mdpipe.cli import main
from tests.archive.conftest import MIDNIGHT_MS

pytestmark = pytest.mark.integration

FROM_MS = MIDNIGHT_MS - 60_000
TO_MS = MIDNIGHT_MS + 60_000


def _db_count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def test_day_ranges_clip_the_range_to_each_utc_date() -> None:
    assert list(day_ranges(MIDNIGHT_MS - 5, MIDNIGHT_MS + 7)) == [
        ("2025-12-31", MIDNIGHT_MS - 5, MIDNIGHT_MS),
        ("2026-01-01", MIDNIGHT_MS, MIDNIGHT_MS + 7),
    ]
    assert parse_time("2026-01-01T00:00:00Z", "--from") == MIDNIGHT_MS
    assert parse_time(str(MIDNIGHT_MS), "--from") == MIDNIGHT_MS
    with pytest.raises(ExportError, match="--from"):
        parse_time("yesterday", "--from")


def test_export_round_trips_and_partitions_by_date(loaded_db, tmp_path: Path) -> None:
    config, rows = loaded_db
    dsn = config.postgres.dsn
    location = open_location(str(tmp_path / "x"))
    result = export(dsn, location, FROM_MS, TO_MS)
    assert result.rows == rows > 1000
    dates = {f.date for f in result.files}
    assert dates == {"2025-12-31", "2026-01-01"}
    for table in ("orderbook_deltas", "trades", "tickers", "orderbook_snapshots"):
        assert result.rows_by_table()[table] == _db_count(dsn, table) > 0
    assert (tmp_path / "x" / "trades" / "date=2026-01-01").is_dir()
    manifest = json.loads((tmp_path / "x" / f"_manifest-{FROM_MS}-{TO_MS}.json").read_text())
    assert manifest["rows"] == rows

    check = compare_export(dsn, location, FROM_MS, TO_MS)
    assert (check.rows, check.db_rows, check.mismatched) == (rows, rows, 0)

    # exact types in every file
    schema = pq.read_schema(tmp_path / "x" / result.files[0].path)
    trades = pq.read_table(next(tmp_path.glob("x/trades/date=2026-01-01/*.parquet")))
    assert trades.schema.field("yes_price").type == pa.decimal128(38, 10)
    assert trades.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert schema.metadata[b"mdpipe.table"]


def test_duckdb_reads_the_export_without_the_database(loaded_db, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    config, _ = loaded_db
    dsn = config.postgres.dsn
    export(dsn, open_location(str(tmp_path)), FROM_MS, TO_MS)
    with psycopg.connect(dsn) as conn:
        db_sum, db_n, db_first = conn.execute("SELECT sum(count), count(*), min(ts) FROM trades").fetchone()  # type: ignore[misc]
        db_deltas = conn.execute(
            "SELECT market, sum(delta) FROM orderbook_deltas GROUP BY market ORDER BY market"
        ).fetchall()
    con = duckdb.connect()
    glob = str(tmp_path / "trades" / "**" / "*.parquet")
    duck_sum, duck_n, duck_first, dates = con.execute(
        "SELECT sum(count), count(*), min(ts), count(DISTINCT date)"
        f" FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchone()
    assert (duck_sum, duck_n, dates) == (db_sum, db_n, 2)
    assert isinstance(duck_sum, Decimal)
    assert duck_first == db_first
    types = dict(con.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob}')").fetchall()[i][:2] for i in range(3))
    assert types.get("ts") == "TIMESTAMP WITH TIME ZONE"
    deltas = str(tmp_path / "orderbook_deltas" / "**" / "*.parquet")
    duck_deltas = con.execute(
        f"SELECT market, sum(delta) FROM read_parquet('{deltas}') GROUP BY market ORDER BY market"
    ).fetchall()
    assert duck_deltas == db_deltas


def test_a_changed_missing_or_extra_row_is_caught(loaded_db, tmp_path: Path) -> None:
    config, _ = loaded_db
    dsn = config.postgres.dsn
    location = open_location(str(tmp_path))
    result = export(dsn, location, FROM_MS, TO_MS)
    trades_file = next(f for f in result.files if f.table == "trades")
    path = tmp_path / trades_file.path
    table = pq.read_table(path)
    prices = table.column("yes_price").to_pylist()
    prices[0] = prices[0] + Decimal("0.0001")  # one price off by one hundredth of a cent
    index = table.schema.get_field_index("yes_price")
    pq.write_table(table.set_column(index, "yes_price", pa.array(prices, type=pa.decimal128(38, 10))), path)
    assert compare_export(dsn, location, FROM_MS, TO_MS).mismatched == 2  # the row as exported and as in the db

    export(dsn, location, FROM_MS, TO_MS)  # repaired by exporting the same range again (same files)
    assert compare_export(dsn, location, FROM_MS, TO_MS).mismatched == 0
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM orderbook_deltas WHERE ctid = (SELECT min(ctid) FROM orderbook_deltas_default)")
    assert compare_export(dsn, location, FROM_MS, TO_MS).mismatched == 1  # a row only the export has
    delta_file = next(f for f in result.files if f.table == "orderbook_deltas")
    (tmp_path / delta_file.path).unlink()
    check = compare_export(dsn, location, FROM_MS, TO_MS)
    assert check.mismatched == delta_file.rows - 1  # rows only the database has (one was deleted above)


def test_a_value_with_no_exact_decimal_form_stops_the_export(loaded_db, tmp_path: Path) -> None:
    config, _ = loaded_db
    dsn = config.postgres.dsn
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE trades SET yes_price = 0.123456789012 WHERE ctid = (SELECT min(ctid) FROM trades_default)")
    with pytest.raises(ExportError, match="yes_price"):
        export(dsn, open_location(str(tmp_path)), FROM_MS, TO_MS, tables=["trades"])
    assert not list(tmp_path.rglob("*.parquet"))  # nothing half-written


def test_export_cli(loaded_db, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    config, _ = loaded_db
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", config.postgres.dsn)
    out_dir = tmp_path / "cli"
    status = main(
        ["export", "--from", "2025-12-31T23:59:00Z", "--to", str(TO_MS), "--tables", "trades,tickers",
         "--to-dir", str(out_dir)]
    )  # fmt: skip
    assert status == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["by_table"]) == {"trades", "tickers"}
    assert summary["rows"] == sum(_db_count(config.postgres.dsn, t) for t in ("trades", "tickers"))
    assert main(["export", "--from", "x", "--to", "1", "--to-dir", str(out_dir)]) == 2
    assert "neither ISO 8601" in capsys.readouterr().err
    assert main(["export", "--from", "0", "--to", "1", "--tables", "nope", "--to-dir", str(out_dir)]) == 2


def test_export_to_s3(loaded_db, s3_server) -> None:
    config, rows = loaded_db
    dsn = config.postgres.dsn
    location = open_location("s3://archive/exports/run1", **s3_server)
    result = export(dsn, location, FROM_MS, TO_MS)
    assert result.rows == rows
    listed = location.files("trades")
    assert listed and all(p.startswith("archive/exports/run1/trades/date=") for p in listed)
    assert not location.files("", suffix=".tmp")
    check = compare_export(dsn, location, FROM_MS, TO_MS, EVENT_TABLES)
    assert (check.rows, check.mismatched) == (rows, 0)


@pytest.mark.parametrize("argv", [["export", "--help"], ["archive", "--help"], ["replay", "--help"]])
def test_commands_have_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--to-dir" in out or "--from-archive" in out
