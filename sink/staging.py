"""Rows copied into a staging table one batch at a time, the rows the database rejects set apart as dead letters.

For the tables whose records are applied from a staging table rather than copied into the table itself
(:mod:`sink.lifecycle`, :mod:`sink.ordinals`): one binary COPY of every row in a savepoint; when the database rejects
it, each row alone (such records are few), and each rejected row becomes a dead letter naming ``table``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from schemas import DeadLetter
from sink.batch import Message, dead_letter
from sink.rows import copy_buffer

__all__ = ["REJECTED", "copy_staged"]

REJECTED = (psycopg.DataError, psycopg.IntegrityError)


def copy_staged(
    conn: psycopg.Connection[Any],
    copy_sql: str,
    layout: str,
    table: str,
    rows: list[bytes],
    sources: Callable[[], list[Message]],
) -> list[DeadLetter]:
    """COPY ``rows`` (COPY rows of ``layout``, :data:`sink.rows.COPY_COLUMNS`) with ``copy_sql`` inside the caller's
    transaction; ``sources`` gives the message of each row (only called when the database rejects one). Returns the
    dead letters of the rows it rejected (the others are staged)."""
    try:
        with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.write(copy_buffer(layout, rows))
        return []
    except REJECTED:
        pass
    dead: list[DeadLetter] = []
    for row, msg in zip(rows, sources(), strict=True):
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                copy.write(copy_buffer(layout, [row]))
        except REJECTED as exc:
            reason = f"{table}: rejected by the database ({exc.sqlstate}): {str(exc).strip().splitlines()[0]}"
            dead.append(dead_letter(reason, msg))
    return dead
