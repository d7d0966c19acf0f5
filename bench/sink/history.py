"""A database already holding history, for ``python -m bench.sink --database DSN`` (ingest into a full table).

``python -m bench.sink.history --rows 50000000 --name NAME [--layout old|partitioned]`` creates database NAME,
migrates it (``old``: the migrations before partitioning, 0001-0004, as databases made before 0005 are; else all
of them), and fills ``orderbook_deltas`` with ``--rows`` synthetic deltas server-side (generate_series) over the 9.5
days before the benchmark's events (:data:`bench.sink.data.BASE_MS`), with random (md5) event keys on
``--markets`` markets. The old layout's unique and BRIN indexes are dropped during the fill and rebuilt after it
(the same indexes, built faster). Then VACUUM ANALYZE. ``--upgrade NAME2`` instead copies database NAME to NAME2
(CREATE DATABASE ... TEMPLATE) and migrates the copy in place (0005 onwards; the rows' venue is the configured
``venue.name``), timing the upgrade.
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mdpipe.config import load_config
from sink import migrate as migrate_module

# {0}, {1}: ", venue" and ", %(venue)s" when the table has the column (migration 0008), else nothing
FILL = """INSERT INTO orderbook_deltas (ts, market, event_key, gatherer, received_at, market_id, side, price, delta{0})
SELECT ts, m, 'h:' || md5(i::text), 'g1', ts, 'id-' || m, CASE WHEN i %% 2 = 0 THEN 'yes' ELSE 'no' END,
       ((i %% 99) + 1) / 100.0, ((i %% 1000) - 500) / 100.0{1}
FROM generate_series(1, %(rows)s::bigint) AS i,
     LATERAL (SELECT to_timestamp(%(start)s + i * %(step)s) AS ts,
                     'KXM-' || lpad(((i * 7919) %% %(markets)s)::text, 6, '0') AS m) AS x"""


def _dsn_for(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def main(argv: list[str] | None = None) -> int:
    from bench.sink.data import BASE_MS

    parser = argparse.ArgumentParser(prog="python -m bench.sink.history", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--markets", type=int, default=5000)
    parser.add_argument("--layout", choices=["old", "partitioned"], default="old")
    parser.add_argument("--upgrade", metavar="NAME2", help="copy NAME to NAME2 and migrate the copy in place")
    args = parser.parse_args(argv)
    config = load_config()
    pg = config.postgres
    admin = _dsn_for(pg.dsn, "postgres")
    plain = migrate_module.PostgresConfig(timescaledb="off")
    if args.upgrade:
        t = time.perf_counter()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(args.upgrade), sql.Identifier(args.name)
                )
            )
        copied = time.perf_counter() - t
        t = time.perf_counter()
        result = migrate_module.migrate(_dsn_for(pg.dsn, args.upgrade), plain, config.venue.name)
        print(f"copied in {copied:.0f}s; upgrade {result.applied} took {time.perf_counter() - t:.1f}s", flush=True)
        return 0
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.name)))
    dsn = _dsn_for(pg.dsn, args.name)
    if args.layout == "old":
        real = migrate_module.discover
        migrate_module.discover = lambda *a: [m for m in real(*a) if m.version <= 4]  # type: ignore[assignment]
        try:
            migrate_module.migrate(dsn, plain)
        finally:
            migrate_module.discover = real  # type: ignore[assignment]
    else:
        migrate_module.migrate(dsn, plain)
    span_s = 9.5 * 86_400
    start = BASE_MS / 1000 - 10 * 86_400
    t = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        if args.layout == "old":
            conn.execute("ALTER TABLE orderbook_deltas DROP CONSTRAINT orderbook_deltas_event_key_ts_key")
            conn.execute("DROP INDEX orderbook_deltas_ts_brin")
        else:  # the ranges the history needs, before the fill (else it would all go to the default partition)
            from datetime import UTC, datetime, timedelta

            from sink.partitions import maintain

            day = datetime.fromtimestamp(start, UTC)
            while day.timestamp() < start + span_s + 86_400:
                maintain(conn, plain, now=day)
                day += timedelta(days=1)
        fill = FILL.format(*(("", "") if args.layout == "old" else (", venue", ", %(venue)s")))
        params = {"rows": args.rows, "start": start, "step": span_s / args.rows, "markets": args.markets}
        conn.execute(fill, {**params, "venue": config.venue.name})  # type: ignore[arg-type]
        print(f"filled {args.rows} rows in {time.perf_counter() - t:.0f}s", flush=True)
        if args.layout == "old":
            t = time.perf_counter()
            conn.execute(
                "ALTER TABLE orderbook_deltas ADD CONSTRAINT orderbook_deltas_event_key_ts_key UNIQUE (event_key, ts)"
            )
            conn.execute("CREATE INDEX orderbook_deltas_ts_brin ON orderbook_deltas USING brin (ts)")
            print(f"indexes rebuilt in {time.perf_counter() - t:.0f}s", flush=True)
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE orderbook_deltas")
        print(f"vacuum analyze {time.perf_counter() - t:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
