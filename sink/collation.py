"""Does the database compare the event tables' text keys byte by byte? (read by `mdpipe sink migrate`, logged)

Every row the sink copies goes into one unique b-tree per event table, ``(market, ts, event_key, venue)``, and each
insert compares ``market`` (and, within a market and time, ``event_key`` and ``venue``) with the keys on its path.
The columns use the database's default collation. Under ``C``/``POSIX`` (libc) or PostgreSQL 17's builtin ``C`` and
``C.UTF-8`` those comparisons are ``memcmp``; under any other locale (ICU's ``en-US``, glibc's ``en_US.UTF-8``, even
libc's ``C.UTF-8`` before PostgreSQL 17) each goes through the locale's collation, which costs the database more CPU
per row (docs/data-layer.md, "The database's collation"). Venue tickers and event keys are ASCII, so byte order
loses nothing a user could see. The check is pure (:func:`bytewise`) over what :func:`read_collation` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

__all__ = ["Collation", "bytewise", "read_collation"]

_LIBC_BYTEWISE = frozenset({"C", "POSIX"})
_BUILTIN_BYTEWISE = frozenset({"C", "C.UTF-8"})


@dataclass(frozen=True, slots=True)
class Collation:
    """The database's default collation: ``provider`` as pg_database spells it (``c`` libc, ``i`` ICU, ``b``
    builtin; ``c`` where the server predates providers), ``collate`` the libc ``LC_COLLATE``, ``locale`` the ICU or
    builtin locale (empty for libc)."""

    provider: str
    collate: str
    locale: str

    @property
    def name(self) -> str:
        """How an operator would name it in ``CREATE DATABASE``."""
        return {"i": f"icu:{self.locale}", "b": f"builtin:{self.locale}"}.get(self.provider, self.collate)


def bytewise(collation: Collation) -> bool:
    """True when text comparisons under ``collation`` are byte comparisons (no locale rules)."""
    if collation.provider == "b":
        return collation.locale in _BUILTIN_BYTEWISE
    if collation.provider == "c":
        return collation.collate in _LIBC_BYTEWISE
    return False  # ICU: always a collator


def read_collation(conn: psycopg.Connection[Any]) -> Collation:
    """The current database's default collation (any server version: columns a version lacks read as empty)."""
    row = conn.execute(
        "SELECT d.datcollate, coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'),"
        " coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale', '')"
        " FROM pg_database d WHERE d.datname = current_database()"
    ).fetchone()
    assert row is not None
    collate, provider, locale = row
    return Collation(provider=str(provider), collate=str(collate), locale=str(locale))
