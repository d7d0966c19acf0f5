"""Baselines of the sink benchmark: the same rows, already encoded, COPYed from memory into the same tables.

``copy_from_memory``: binary COPY straight into the tables, one transaction per ``batch_rows`` rows (what
the database alone can ingest: the sink's ceiling). ``staging_from_memory``: the slow path the sink takes
only after a unique violation (COPY into a temp table + INSERT ... ON CONFLICT DO NOTHING), for comparison.
``load_in_parallel``: the first split over several connections at once (batch i on connection i mod n), as the
sink's writer lanes do. ``explicit_loaded_at``: like the first, but with ``loaded_at`` sent in the COPY data
(one value per batch) instead of left to its DEFAULT clock_timestamp() as the sink does.
"""

from __future__ import annotations

import threading
import time

import psycopg

from sink.batch import Batch
from sink.rows import COLUMNS, copy_buffer, copy_sql, loaded_at_field

__all__ = ["encode_batches", "load_from_memory", "load_in_parallel"]


def encode_batches(payloads: list[bytes], batch_rows: int) -> list[Batch]:
    """The events split into batches as the sink would build them (untimed)."""
    from sink.batch import Source

    out = []
    for start in range(0, len(payloads), batch_rows):
        batch = Batch()
        batch.add_many(Source("events", 0, start + i, p) for i, p in enumerate(payloads[start : start + batch_rows]))
        out.append(batch)
    return out


def load_from_memory(dsn: str, batches: list[Batch], mode: str = "direct") -> tuple[int, float]:
    """Load every batch (mode: direct | staging | explicit_loaded_at); returns (rows, seconds)."""
    rows_total = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        if mode == "staging":
            for table in COLUMNS:
                conn.execute(f"CREATE TEMP TABLE stage_{table} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        started = time.perf_counter()
        for batch in batches:
            loaded = loaded_at_field()
            with conn.transaction(), conn.cursor() as cur:
                for table, rows in batch.rows.items():
                    if table == "market_lifecycle":  # rows the sink applies one by one, by their keys (sink.lifecycle)
                        continue
                    rows_total += len(rows)
                    target = f"stage_{table}" if mode == "staging" else table
                    explicit = mode == "explicit_loaded_at"
                    with cur.copy(copy_sql(table, target, with_loaded_at=explicit)) as copy:
                        copy.write(copy_buffer(table, rows, loaded if explicit else None))
                    if mode == "staging":
                        cols = ", ".join(COLUMNS[table])
                        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {target} ON CONFLICT DO NOTHING")
                        cur.execute(f"TRUNCATE {target}")
        return rows_total, time.perf_counter() - started


def load_in_parallel(dsn: str, batches: list[Batch], connections: int) -> tuple[int, float]:
    """:func:`load_from_memory` (direct) over ``connections`` connections at once; returns (rows, seconds)."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def load(part: list[Batch]) -> None:
        out = load_from_memory(dsn, part)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=load, args=(batches[i::connections],)) for i in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if len(results) != connections:
        raise RuntimeError("a baseline connection failed")
    return sum(rows for rows, _ in results), elapsed
