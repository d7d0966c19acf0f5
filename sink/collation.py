"""Do the event tables' unique keys compare their text byte by byte? (read by `mdpipe sink migrate`, logged)

Every row the sink copies goes into one unique b-tree per event table, ``(market, ts, event_key, venue)``, and each
insert compares ``market`` (and, within a market and time, ``event_key`` and ``venue``) with the keys on its path,
under each column's collation: the database's default unless a column was given its own. Under libc's ``C`` or
``POSIX``, or PostgreSQL 17's builtin provider, a comparison is a ``memcmp``; under any other collation (ICU's
``en-US``, glibc's ``en_US.UTF-8``, libc's ``C.UTF-8`` too) it goes through the locale's collator, which costs the
database more CPU per row (docs/data-layer.md, "The database's collation"). Every one of these collations is
deterministic, so equality, and with it what the unique key absorbs, is the same under all of them; the order of
text (``ORDER BY market``) is not. :func:`bytewise` and :func:`resolve` are pure; :func:`key_collations` reads the
catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

__all__ = ["KEY_COLUMNS", "Collation", "bytewise", "key_collations", "resolve"]

KEY_COLUMNS = ("market", "event_key", "venue")  # the text columns of the event tables' unique key (0013)
_LIBC_BYTEWISE = frozenset({"C", "POSIX"})
DEFAULT = "d"  # pg_collation's provider of the "default" collation: the database's own


@dataclass(frozen=True, slots=True)
class Collation:
    """A collation as the catalog describes it: ``provider`` (``c`` libc, ``i`` ICU, ``b`` builtin, ``d`` the
    database's default), ``collate`` the libc ``LC_COLLATE``, ``locale`` the ICU or builtin locale (empty for libc)."""

    provider: str
    collate: str
    locale: str

    @property
    def name(self) -> str:
        """How an operator would name it in ``CREATE DATABASE``."""
        return {"i": f"icu:{self.locale}", "b": f"builtin:{self.locale}"}.get(self.provider, self.collate)


def bytewise(collation: Collation) -> bool:
    """True when text comparisons under ``collation`` are byte comparisons (no locale rules): libc ``C``/``POSIX``
    and every builtin locale (``C``, ``C.UTF-8``, PostgreSQL 18's ``PG_UNICODE_FAST``: all in code point order)."""
    if collation.provider == "b":
        return True
    if collation.provider == "c":
        return collation.collate in _LIBC_BYTEWISE
    return False  # ICU: always a collator


def resolve(columns: Iterable[Collation], database: Collation) -> list[Collation]:
    """The distinct collations the key columns compare under (a column on the default one takes ``database``'s),
    in first-seen order."""
    out: list[Collation] = []
    for collation in columns:
        actual = database if collation.provider == DEFAULT else collation
        if actual not in out:
            out.append(actual)
    return out


def key_collations(conn: psycopg.Connection[Any], tables: Iterable[str]) -> list[Collation]:
    """The collations the unique keys of ``tables`` compare their text columns under (:func:`resolve`); empty when
    none of the tables exists. Columns a server version's catalog lacks read as empty (any version from 14)."""
    names = list(tables)
    database = conn.execute(
        "SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'), d.datcollate,"
        " coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale', '')"
        " FROM pg_database d WHERE d.datname = current_database()"
    ).fetchone()
    assert database is not None
    rows = conn.execute(
        "SELECT c.collprovider::text, coalesce(c.collcollate, ''),"
        " coalesce(to_jsonb(c) ->> 'colllocale', to_jsonb(c) ->> 'colliculocale', '')"
        " FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = r.relnamespace AND n.nspname = current_schema()"
        " JOIN pg_collation c ON c.oid = a.attcollation"
        " WHERE r.relname = ANY(%s) AND a.attname = ANY(%s) AND NOT a.attisdropped",
        (names, list(KEY_COLUMNS)),
    ).fetchall()
    return resolve((Collation(*map(str, row)) for row in rows), Collation(*map(str, database)))
