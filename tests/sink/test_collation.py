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
from sink.collation import Collation, bytewise, key_collations, resolve
from sink.migrate import HYPERTABLES


@pytest.mark.parametrize(
    ("collation", "expected"),
    [
        (Collation("c", "C", ""), True),
        (Collation("c", "POSIX", ""), True),
        (Collation("c", "C.UTF-8", ""), False),  # libc's C.UTF-8 goes through strcoll, on every version
        (Collation("c", "en_US.UTF-8", ""), False),
        (Collation("i", "C", "en-US"), False),  # ICU: a collator whatever LC_COLLATE says
        (Collation("i", "C", "und"), False),
        (Collation("b", "C", "C"), True),  # PostgreSQL 17's builtin provider: code point order
        (Collation("b", "C.UTF-8", "C.UTF-8"), True),
        (Collation("b", "C", "PG_UNICODE_FAST"), True),  # PostgreSQL 18
    ],
)
def test_bytewise(collation: Collation, expected: bool) -> None:
    assert bytewise(collation) is expected


def test_a_collation_is_named_as_create_database_takes_it() -> None:
    assert Collation("c", "C.UTF-8", "").name == "C.UTF-8"
    assert Collation("i", "C", "en-US").name == "icu:en-US"
    assert Collation("b", "C.UTF-8", "C.UTF-8").name == "builtin:C.UTF-8"


def test_a_column_on_the_default_collation_compares_under_the_databases() -> None:
    database = Collation("i", "C", "en-US")
    default, c = Collation("d", "", ""), Collation("c", "C", "")
    assert resolve([default, default, c, default], database) == [database, c]
    assert resolve([c, c], database) == [c]
    assert resolve([], database) == []


@pytest.fixture
def locale_database(pg_dsn: str) -> Iterator[Callable[[str], str]]:
    """Factory: ``locale_database(clause) -> dsn`` of a fresh database created with ``clause`` (its locale)."""
    params = conninfo_to_dict(pg_dsn)
    admin = make_conninfo(**{**params, "dbname": "postgres"})  # type: ignore[arg-type]
    created: list[str] = []

    def factory(clause: str) -> str:
        name = f"t_coll_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            try:
                conn.execute(f"CREATE DATABASE {name} {clause} TEMPLATE template0")
            except psycopg.Error as exc:
                pytest.skip(f"this server cannot create a database with {clause}: {exc}")
        created.append(name)
        return make_conninfo(**{**params, "dbname": name})  # type: ignore[arg-type]

    yield factory
    with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as conn:
        for name in created:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("clause", "expected", "warns"),
    [
        ("LOCALE_PROVIDER libc LOCALE 'C.UTF-8'", Collation("c", "C.UTF-8", ""), True),
        ("LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'", Collation("i", "C", "en-US"), True),
        ("LOCALE_PROVIDER libc LOCALE 'C'", Collation("c", "C", ""), False),
    ],
)
def test_migrate_warns_when_the_keys_compare_through_a_locale(
    clause: str,
    expected: Collation,
    warns: bool,
    locale_database: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MDPIPE_POSTGRES__TIMESCALEDB", "off")
    monkeypatch.setenv("MDPIPE_RUN_DIR", str(tmp_path))
    dsn = locale_database(clause)
    monkeypatch.setenv("MDPIPE_POSTGRES__DSN", dsn)
    assert main(["sink", "migrate"]) == 0
    out = "".join(capsys.readouterr())  # the CLI's answer on stdout, its log lines on stderr
    with psycopg.connect(dsn) as conn:
        assert key_collations(conn, HYPERTABLES) == [expected]
    assert "event=migrated mode=plain" in out
    warning = f"event=database_collation_not_bytewise collation={expected.name} "
    assert (warning in out) is warns, out
