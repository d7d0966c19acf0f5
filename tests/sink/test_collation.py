"""The database's collation: which ones compare the event tables' keys byte by byte (unit), and the warning
`mdpipe sink migrate` logs on a database whose keys go through a locale (real database)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mdpipe.cli import main
from sink.collation import Collation, bytewise, read_collation


@pytest.mark.parametrize(
    ("collation", "expected"),
    [
        (Collation("c", "C", ""), True),
        (Collation("c", "POSIX", ""), True),
        (Collation("c", "C.UTF-8", ""), False),  # libc's C.UTF-8 goes through strcoll
        (Collation("c", "en_US.UTF-8", ""), False),
        (Collation("i", "C", "en-US"), False),  # ICU: a collator whatever LC_COLLATE says
        (Collation("i", "C", "und"), False),
        (Collation("b", "C", "C"), True),  # PostgreSQL 17's builtin provider
        (Collation("b", "C.UTF-8", "C.UTF-8"), True),
    ],
)
def test_bytewise(collation: Collation, expected: bool) -> None:
    assert bytewise(collation) is expected


def test_a_collation_is_named_as_create_database_takes_it() -> None:
    assert Collation("c", "C.UTF-8", "").name == "C.UTF-8"
    assert Collation("i", "C", "en-US").name == "icu:en-US"
    assert Collation("b", "C.UTF-8", "C.UTF-8").name == "builtin:C.UTF-8"


@pytest.fixture
def locale_database(pg_dsn: str) -> Iterator[Callable[[str], str]]:
    """Factory: ``locale_database(locale) -> dsn`` of a fresh database created with ``LOCALE locale`` (libc)."""
    params = conninfo_to_dict(pg_dsn)
    admin = make_conninfo(**{**params, "dbname": "postgres"})  # type: ignore[arg-type]
    created: list[str] = []

    def factory(locale: str) -> str:
        name = f"t_coll_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            try:
                conn.execute(f"CREATE DATABASE {name} LOCALE '{locale}' TEMPLATE template0")
            except psycopg.Error as exc:
                pytest.skip(f"this server has no {locale} locale: {exc}")
        created.append(name)
        return make_conninfo(**{**params, "dbname": name})  # type: ignore[arg-type]

    yield factory
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as conn:
        for name in created:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.integration
def test_migrate_warns_when_the_keys_compare_through_a_locale(
    locale_database: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MDPIPE_POSTGRES__TIMESCALEDB", "off")
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    through_locale = locale_database("C.UTF-8")
    with psycopg.connect(through_locale) as conn:
        assert read_collation(conn) == Collation("c", "C.UTF-8", "")
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", through_locale)
    assert main(["sink", "migrate"]) == 0
    out = "".join(capsys.readouterr())  # the CLI's answer on stdout, its log lines on stderr
    assert "event=database_collation_not_bytewise collation=C.UTF-8" in out
    bytes_only = locale_database("C")
    with psycopg.connect(bytes_only) as conn:
        assert read_collation(conn) == Collation("c", "C", "")
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", bytes_only)
    assert main(["sink", "migrate"]) == 0
    out = "".join(capsys.readouterr())
    assert "event=migrated mode=plain" in out
    assert "database_collation_not_bytewise" not in out
