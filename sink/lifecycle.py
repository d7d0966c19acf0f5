"""The sink's path for ``market_lifecycle`` rows: one row per venue event, whichever copy's key the row carries.

A lifecycle event without a venue time can reach the dedup stage as copies with different keys (a venue may key such
a message by its position against the messages around it, and copies see different ones; see the venue's own
lifecycle keys, ``Venue`` in :mod:`venues.interface`); which copy wins, and
so the row's ``event_key``, depends on the order the dedup stage reads them in, and a dedup replay (fresh state) can
read them in another order than the live run did. So every lifecycle record carries all the keys the event is known
by (``keys``: the winner's; an *alias* record: the keys a later copy brought, with one the event had already,
:class:`schemas.events.Lifecycle`), the row keeps every one of them (column ``keys``, GIN index), and here:

- an event record whose keys share one with a row of its market is not stored again (counted as a duplicate); its
  keys are added to that row;
- an alias record adds its keys to the row that shares one of them (no row: nothing; it is never a row itself);
- otherwise the event is stored, with its keys.

Records are applied one at a time in the batch's order when that order matters (an alias record in the batch, or two
records sharing a key: a replay's copy may meet the row only through the keys an earlier alias record of the same
batch adds); otherwise the events already stored get their keys one by one and the rest are inserted in one
statement. Rows are few (a handful per market over its life), so a statement per record is affordable. The rows are
first copied into a temporary staging table (validated by the same binary COPY as every other table; a row the
database rejects becomes a dead letter); a transaction-level advisory lock keeps two sinks (the live one and a
replay's load) from both storing one event under two keys at the same time. The lock is taken after every other
table's COPY, last before the offsets, so that it is never held while waiting on another sink's rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from schemas import DeadLetter
from sink.batch import Message
from sink.rows import COLUMNS, COPY_COLUMNS
from sink.staging import copy_staged

__all__ = ["TABLE", "apply_lifecycle"]

TABLE = "market_lifecycle"
_STAGE = "stage_lifecycle_keys"
_LOCK_KEY = 0x6D646C63  # "mdlc"
_COLS = ", ".join(COLUMNS[TABLE])
_S_COLS = ", ".join(f"s.{c}" for c in COLUMNS[TABLE])
_COPY = f"COPY {_STAGE} ({', '.join(COPY_COLUMNS[TABLE])}) FROM STDIN (FORMAT BINARY)"
_OVERLAP = "m.market = s.market AND m.venue IS NOT DISTINCT FROM s.venue AND m.keys && s.keys"
# Whether a row of the staged record's market shares one of its keys: a subquery run once per staged record (a batch
# holds a few) that reads the record's market through the (market, ts DESC) index, a handful of rows whatever the
# table holds. OFFSET 0 keeps the planner from turning it into a join: the staging table, a temporary table, has no
# statistics, and as a join the planner hashed the whole of market_lifecycle for every batch holding a lifecycle record.
# ORDER BY the index's order keeps a plan made for the first row (EXISTS) on the index even when the statistics make a
# market look large (a table analysed while it held few markets): without it that plan read the table per record.
_KNOWN = f"EXISTS (SELECT 1 FROM {TABLE} m WHERE {_OVERLAP} ORDER BY m.ts DESC OFFSET 0)"
# One record: add its keys to the rows of its market that share one (the CTE runs whatever the INSERT reads), then
# store it unless it is an alias or such a row exists (both read the snapshot from before the UPDATE).
_APPLY = f"""WITH s AS (SELECT * FROM {_STAGE} WHERE ord = %(ord)s),
merged AS (
    UPDATE {TABLE} m SET keys = ARRAY(SELECT DISTINCT k FROM unnest(m.keys || s.keys) AS k ORDER BY k)
    FROM s WHERE {_OVERLAP} AND NOT m.keys @> s.keys
    RETURNING 1
)
INSERT INTO {TABLE} ({_COLS})
SELECT {_S_COLS} FROM s
WHERE NOT s.alias AND NOT {_KNOWN}
ON CONFLICT DO NOTHING"""
# Whether the staged records depend on their order: an alias, or two records of one event (sharing a key).
_ORDERED = f"""SELECT EXISTS (SELECT 1 FROM {_STAGE} WHERE alias) OR EXISTS (
    SELECT 1 FROM {_STAGE} a JOIN {_STAGE} b ON a.market = b.market AND a.ord < b.ord AND a.keys && b.keys
)"""
# Records of events already stored (their keys go to the row one by one, _APPLY), then every other one at once.
_HITS = f"SELECT s.ord FROM {_STAGE} s WHERE {_KNOWN} ORDER BY s.ord"
_INSERT_REST = f"""INSERT INTO {TABLE} ({_COLS})
SELECT {_S_COLS} FROM {_STAGE} s WHERE NOT {_KNOWN}
ON CONFLICT DO NOTHING"""


def apply_lifecycle(
    conn: psycopg.Connection[Any], rows: list[bytes], sources: Callable[[], list[Message]]
) -> tuple[int, int, int, list[DeadLetter]]:
    """Apply lifecycle ``rows`` (COPY rows of :data:`sink.rows.COPY_COLUMNS`, in message order) inside the caller's
    transaction; ``sources`` gives the message of each row (only called when the database rejects one). Returns
    (rows stored, events already stored, alias records, dead letters)."""
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE {TABLE} INCLUDING DEFAULTS,"
        " alias boolean NOT NULL DEFAULT false, ord bigserial) ON COMMIT DELETE ROWS"
    )
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    dead = copy_staged(conn, _COPY, TABLE, TABLE, rows, sources)
    stored = duplicates = aliases = 0
    if not conn.execute(_ORDERED).fetchone()[0]:  # type: ignore[index]
        # independent records (the common case: a batch's events are distinct, no alias): set-based
        hits = conn.execute(_HITS).fetchall()
        for (ord_,) in hits:
            conn.execute(_APPLY, {"ord": ord_})  # type: ignore[arg-type]
        staged = conn.execute(f"SELECT count(*) FROM {_STAGE}").fetchone()[0]  # type: ignore[index]
        stored = max(conn.execute(_INSERT_REST).rowcount, 0)
        conn.execute(f"DELETE FROM {_STAGE}")
        return stored, staged - stored, 0, dead
    for ord_, alias in conn.execute(f"SELECT ord, alias FROM {_STAGE} ORDER BY ord").fetchall():
        cur = conn.execute(_APPLY, {"ord": ord_})  # type: ignore[arg-type]
        if alias:
            aliases += 1
        elif cur.rowcount > 0:
            stored += cur.rowcount
        else:
            duplicates += 1
    conn.execute(f"DELETE FROM {_STAGE}")  # a batch retried in the same transaction starts from an empty stage
    return stored, duplicates, aliases, dead
