"""Export everything the database holds and read it back (``mdpipe demo --export``): the rows exported and the rows
that differ from the database, which a clean run keeps at 0.

The range is the database's own: from the earliest ``ts`` of any event table to just after the latest, so every row
is exported once; :func:`archive.compare.compare_export` then reads each file back and compares it with the database
row for row (a value changed, a row lost or added in either place counts).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from archive.compare import compare_export
from archive.export import EVENT_TABLES, export
from archive.storage import open_location

__all__ = ["data_range", "export_roundtrip"]


def data_range(dsn: str, tables: Sequence[str] = EVENT_TABLES) -> tuple[int, int] | None:
    """``[from_ms, to_ms)`` covering every row of ``tables`` (None: no rows)."""
    parts = " UNION ALL ".join(f'SELECT min(ts) AS lo, max(ts) AS hi FROM "{t}"' for t in tables)
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT floor(extract(epoch FROM min(lo)) * 1000)::bigint,"
            f" floor(extract(epoch FROM max(hi)) * 1000)::bigint FROM ({parts}) AS r"
        ).fetchone()
    if row is None or row[0] is None:
        return None
    return int(row[0]), int(row[1]) + 1


def export_roundtrip(dsn: str, url: str, tables: Sequence[str] = EVENT_TABLES, **storage: Any) -> dict[str, Any]:
    """Export every row of ``tables`` to ``url``, read it back, compare: the DEMO JSON's ``export_*`` fields."""
    span = data_range(dsn, tables)
    if span is None:
        return {"export_rows": 0, "export_mismatched": 0, "export_db_rows": 0, "export_s": 0.0, "export_rows_per_s": 0}
    location = open_location(url, **storage)
    started = time.monotonic()
    result = export(dsn, location, span[0], span[1], tables)
    check = compare_export(dsn, location, span[0], span[1], tables)
    return {
        "export_rows": check.rows,
        "export_mismatched": check.mismatched,
        "export_db_rows": check.db_rows,
        "export_s": round(result.seconds, 2),
        "export_check_s": round(time.monotonic() - started - result.seconds, 2),
        "export_rows_per_s": round(result.rows / result.seconds) if result.seconds else 0,
    }
