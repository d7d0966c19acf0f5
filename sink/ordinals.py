"""The sink's path for alias delta records: a stored delta's ``ordinal`` raised to the greatest any copy carried.

A replacing delta's ordinal orders it among the deltas of its venue millisecond (:mod:`sink.book`). The dedup stage
emits the first copy it reads; a gatherer that lost an earlier delta of that millisecond counts its copy one low, so
when a later copy carries a higher ordinal the stage emits it as an alias record (:class:`schemas.events.BookDelta`
``alias``; :mod:`dedup_stream.logic`, ordinals). Here, inside the batch's transaction and after every table's rows
(a record's row comes before it on its partition, possibly in the same batch), the records are copied into a
temporary staging table (the binary COPY rows of ``orderbook_deltas``, :mod:`sink.staging`: a row the database
rejects becomes a dead letter), and the row of ``orderbook_deltas`` with each record's unique key
(``market, ts, event_key, venue``) takes the record's ordinal when it is greater than its own.

Never a row: a record whose row is absent (never stored, or a dead letter) changes nothing, and one read again (a
replay, a dedup worker's re-emit) changes nothing more, since the greatest is kept: with the offsets stored in the
same transaction the database applies each record once in effect, whatever Kafka redelivers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from schemas import DeadLetter
from sink.batch import Message
from sink.rows import DELTA_ALIASES, copy_sql
from sink.staging import copy_staged

__all__ = ["TABLE", "raise_ordinals"]

TABLE = "orderbook_deltas"
_STAGE = "stage_delta_aliases"
_COPY = copy_sql(DELTA_ALIASES, _STAGE)
# the greatest ordinal of the batch's records per key, onto the row that has a smaller one (a probe of the unique
# index per record: the records are few). The key is the table's unique key (0013): market first, so every column
# of it is named here, else the probe cannot use the index.
_RAISE = f"""UPDATE {TABLE} d SET ordinal = s.ordinal
FROM (SELECT market, ts, event_key, venue, max(ordinal) AS ordinal FROM {_STAGE}
      GROUP BY market, ts, event_key, venue) s
WHERE d.market = s.market AND d.ts = s.ts AND d.event_key = s.event_key AND d.venue = s.venue
  AND d.ordinal < s.ordinal"""


def raise_ordinals(
    conn: psycopg.Connection[Any], rows: list[bytes], sources: Callable[[], list[Message]]
) -> tuple[int, list[DeadLetter]]:
    """Apply alias delta ``rows`` (COPY rows of :data:`sink.rows.DELTA_ALIASES`) inside the caller's transaction;
    ``sources`` gives the message of each row (only called when the database rejects one). Returns (rows whose
    ordinal was raised, dead letters)."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    dead = copy_staged(conn, _COPY, DELTA_ALIASES, TABLE, rows, sources)
    raised = max(conn.execute(_RAISE).rowcount, 0)
    conn.execute(f"DELETE FROM {_STAGE}")  # a batch retried in the same transaction starts from an empty stage
    return raised, dead
