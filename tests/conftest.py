"""Session fixtures giving tests the REAL broker and database, started lazily once per run.

Selection by ``MDPIPE_TEST_INFRA``:
  auto (default) testcontainers Redpanda + TimescaleDB when a Docker engine answers, else native;
  native         reuse the checkout's healthy `mdpipe infra up` (``.run/infra.json``), else start a private
                 broker + PostgreSQL in a temporary run dir for the session and stop them at the end;
  docker         testcontainers only;
  external       ``MDPIPE_TEST_BOOTSTRAP`` and ``MDPIPE_TEST_DSN``.
Unit tests that request none of these fixtures start nothing. Under pytest-xdist (``-n N``) the controller starts the
servers once, before the workers, and the workers use them as ``external`` (:func:`pytest_configure`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mdpipe.config import Config, load_config, run_dir

# Test runs share the host with each other and with running pipelines: the stages tests start take free metrics
# ports, never the documented fixed ones (a test's explicit --metrics-port or its own environment still wins).
for _section in ("GATHER", "DEDUP", "SINK", "SIM"):
    os.environ.setdefault(f"MDPIPE_{_section}__METRICS_PORT", "0")

REDPANDA_IMAGE = "docker.redpanda.com/redpandadata/redpanda:v26.1.9"  # same pins as infra/compose.yaml
TIMESCALE_IMAGE = "timescale/timescaledb:2.27.1-pg17"


class SessionInfra:
    """The broker and the database of this test session, each started on first use (a DB-only test starts no
    broker). Native mode reuses the checkout's healthy `mdpipe infra up` servers, else starts its own."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._bootstrap = ""
        self._dsns: tuple[str, str] | None = None  # (admin dsn: `postgres` db, shared `mdpipe` db)
        self._stops: list[Callable[[], None]] = []
        self._base: Path | None = None
        self.notes: list[str] = []  # what was used or started, for the end-of-run summary

    def bootstrap(self) -> str:
        if not self._bootstrap:
            self._bootstrap = self._start_kafka()
        return self._bootstrap

    def dsns(self) -> tuple[str, str]:
        if self._dsns is None:
            self._dsns = self._start_postgres()
        return self._dsns

    def close(self) -> None:
        for stop in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop()
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)

    # --- per mode --------------------------------------------------------------------------------------------------
    def _session_dir(self) -> Path:
        if self._base is None:
            _sweep_stale_dirs()
            self._base = Path(tempfile.mkdtemp(prefix=f"mdpipe-test-{os.getpid()}-"))
            self._base.chmod(0o755)  # the postgres user must traverse it
        return self._base

    def _start_kafka(self) -> str:
        if self.mode == "external":
            return os.environ["MDPIPE_TEST_BOOTSTRAP"]
        if self.mode == "docker":
            redpanda = _containers()[0](REDPANDA_IMAGE)
            redpanda.start()
            self._stops.append(redpanda.stop)
            done = redpanda.exec(["rpk", "cluster", "config", "set", "auto_create_topics_enabled", "false"])
            if done.exit_code != 0:
                raise RuntimeError(f"cannot turn off topic auto-create in Redpanda: {done.output!r}")
            return str(redpanda.get_bootstrap_server())
        from infra.kafka_native import KafkaBroker

        shared = KafkaBroker(run_dir())
        if (run_dir() / "infra.json").is_file() and shared.healthy():
            self.notes.append(f"kafka {shared.version}: reused `mdpipe infra up` broker {shared.bootstrap_servers}")
            return shared.bootstrap_servers
        broker = KafkaBroker(self._session_dir(), die_with_parent=True)
        self._stops.append(broker.stop)
        broker.start()
        self.notes.append(
            f"kafka {broker.version}: session broker {broker.bootstrap_servers} started in {broker.startup_s:.1f} s"
        )
        return broker.bootstrap_servers

    def _start_postgres(self) -> tuple[str, str]:
        if self.mode == "external":
            dsn = os.environ["MDPIPE_TEST_DSN"]
            return _with_db(dsn, "postgres"), dsn
        if self.mode == "docker":
            pg = _containers()[1](TIMESCALE_IMAGE, username="postgres", password="mdpipe", dbname="mdpipe", driver=None)
            pg.start()
            self._stops.append(pg.stop)
            dsn = str(pg.get_connection_url())
            return _with_db(dsn, "postgres"), dsn
        from infra.postgres_native import PostgresServer

        shared = PostgresServer(run_dir())
        if (run_dir() / "infra.json").is_file() and shared.healthy():
            self.notes.append(f"postgres {shared.version}: reused `mdpipe infra up` server {shared.dsn}")
            return shared.dsn_for("postgres"), shared.dsn
        server = PostgresServer(self._session_dir(), die_with_parent=True)
        self._stops.append(server.stop)
        server.start()
        self.notes.append(f"postgres {server.version}: session server {server.dsn} started in {server.startup_s:.1f} s")
        return server.dsn_for("postgres"), server.dsn


def _containers() -> tuple[Any, Any]:
    try:
        from testcontainers.community.kafka import RedpandaContainer
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.kafka import RedpandaContainer
        from testcontainers.postgres import PostgresContainer
    return RedpandaContainer, PostgresContainer


def _with_db(dsn: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def _sweep_stale_dirs() -> None:
    """Remove temp run dirs of earlier test sessions whose pytest process is gone (their servers died with it)."""
    from infra.procs import pid_alive

    for path in Path(tempfile.gettempdir()).glob("mdpipe-*-*-*"):
        kind, _, rest = path.name.removeprefix("mdpipe-").partition("-")
        owner = rest.split("-", 1)[0]
        if kind in ("test", "private") and owner.isdigit() and not pid_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def _test_infra() -> Iterator[SessionInfra]:
    mode = os.environ.get("MDPIPE_TEST_INFRA", "auto")
    if mode == "external" and not (os.environ.get("MDPIPE_TEST_BOOTSTRAP") and os.environ.get("MDPIPE_TEST_DSN")):
        pytest.fail("MDPIPE_TEST_INFRA=external needs MDPIPE_TEST_BOOTSTRAP and MDPIPE_TEST_DSN")
    if mode == "auto":
        mode = "docker" if _docker_available() else "native"
    if mode not in ("native", "docker", "external"):
        pytest.fail(f"MDPIPE_TEST_INFRA={mode!r}: expected auto, native, docker or external")
    infra = SessionInfra(mode)
    _SESSIONS.append(infra)
    yield infra
    infra.close()


_SESSIONS: list[SessionInfra] = []
_CONTROLLER_INFRA: list[SessionInfra] = []


def _is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process hands tests to pytest-xdist workers (``-n N``, N > 0) rather than running them."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", 0))


def pytest_configure(config: pytest.Config) -> None:
    """Under ``-n N`` the controller starts (or reuses) the broker and the database ONCE, and every worker reaches
    them as ``external``: N workers must not start N brokers. The controller's servers die with it."""
    if not _is_xdist_controller(config) or os.environ.get("MDPIPE_TEST_INFRA") == "external":
        return
    mode = os.environ.get("MDPIPE_TEST_INFRA", "auto")
    if mode == "auto":
        mode = "docker" if _docker_available() else "native"
    infra = SessionInfra(mode)
    _CONTROLLER_INFRA.append(infra)
    _SESSIONS.append(infra)
    os.environ["MDPIPE_TEST_BOOTSTRAP"] = infra.bootstrap()
    os.environ["MDPIPE_TEST_DSN"] = infra.dsns()[1]
    os.environ["MDPIPE_TEST_INFRA"] = "external"


def pytest_unconfigure(config: pytest.Config) -> None:
    for infra in _CONTROLLER_INFRA:
        infra.close()
    _CONTROLLER_INFRA.clear()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per server the run used (mode, version, address, start-up time) at the end of the run."""
    for infra in _SESSIONS:
        for note in infra.notes:
            terminalreporter.write_line(f"mdpipe test infra ({infra.mode}): {note}")


@pytest.fixture(scope="session")
def kafka_bootstrap(_test_infra: SessionInfra) -> str:
    """``host:port`` of the real broker (auto-create topics is off: create topics with ``make_topics``)."""
    return _test_infra.bootstrap()


@pytest.fixture(scope="session")
def pg_dsn(_test_infra: SessionInfra) -> str:
    """DSN of the shared ``mdpipe`` database (prefer ``make_database`` for isolation)."""
    return _test_infra.dsns()[1]


# What every test topic is created with (before its own configs): no deletion by record time.
TEST_TOPIC_CONFIG = {"retention.ms": "-1"}


def create_test_topics(
    admin: Any, names: Sequence[str], partitions: int, compacted: bool = False, configs: dict[str, str] | None = None
) -> list[str]:
    """Create ``names`` through ``admin`` (an ``AdminClient``) as ``make_topics`` does; returns those it created
    (an existing topic with the same partition count is accepted, not returned).

    Time retention is off (:data:`TEST_TOPIC_CONFIG`; ``configs`` may set it): tests write records with the times they
    choose, often fixed dates long past, which the broker's default 7-day retention would delete at its next periodic
    check (every 5 minutes), under a test that has not read them yet.
    """
    from confluent_kafka.admin import NewTopic

    topic_config = {**TEST_TOPIC_CONFIG, **({"cleanup.policy": "compact"} if compacted else {}), **(configs or {})}
    new = [NewTopic(n, num_partitions=partitions, replication_factor=1, config=topic_config) for n in names]
    created: list[str] = []
    for name, fut in admin.create_topics(new, operation_timeout=30, request_timeout=30).items():
        try:
            fut.result()
            created.append(name)
        except Exception as exc:
            found = visible_partitions(admin, name)
            if found != partitions:
                raise RuntimeError(
                    f"cannot create topic {name} with {partitions} partitions ({found} found): {exc}"
                ) from exc
    return created


def visible_partitions(admin: Any, name: str, wait_s: float = 15.0) -> int | None:
    """The partition count the broker's metadata gives ``name``, waiting up to ``wait_s`` while it gives none.

    A topic another call has just created reaches the metadata a moment after its CreateTopics returned (KRaft: the
    broker applies the controller's record after the reply), so a second creator that is told it exists may not
    see it yet, or see it without partition leaders (an error on the topic). The first count it shows is returned
    (the caller refuses one other than it asked for).
    """
    deadline = time.monotonic() + wait_s
    while True:
        meta = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if meta is not None and meta.error is None and len(meta.partitions) > 0:
            return len(meta.partitions)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


@pytest.fixture(scope="session")
def make_topics(kafka_bootstrap: str) -> Iterator[Callable[..., list[str]]]:
    """Factory: ``make_topics(names=None | int | [names], partitions=6, compacted=False, configs=None)``.

    None creates one uuid-named topic, an int that many; given names are created as-is (an existing topic with
    the same partition count is accepted). Returns the names. Topics are deleted at the end of the session. They
    keep every record whatever its time (:func:`create_test_topics`).
    """
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def factory(
        names: Sequence[str] | int | None = None,
        partitions: int = 6,
        compacted: bool = False,
        configs: dict[str, str] | None = None,
    ) -> list[str]:
        if names is None or isinstance(names, int):
            wanted = [f"t-{uuid.uuid4().hex[:12]}" for _ in range(1 if names is None else names)]
        else:
            wanted = list(names)
        created.extend(create_test_topics(admin, wanted, partitions, compacted, configs))
        return wanted

    yield factory
    if created:
        with contextlib.suppress(Exception):
            for fut in admin.delete_topics(created, operation_timeout=30).values():
                fut.result()


@pytest.fixture(scope="session")
def make_database(_test_infra: SessionInfra) -> Iterator[Callable[..., str]]:
    """Factory: ``make_database(name=None) -> dsn`` of a fresh empty database (dropped at session end)."""
    import psycopg
    from psycopg import sql

    created: list[str] = []
    admin_dsn = _test_infra.dsns()[0]

    def factory(name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return _with_db(admin_dsn, name)

    yield factory
    with contextlib.suppress(Exception), psycopg.connect(admin_dsn, autocommit=True) as conn:
        for name in created:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def mdpipe_config(kafka_bootstrap: str, make_database: Callable[..., str]) -> Iterator[Config]:
    """A Config pointing at the test broker and a FRESH database, with a unique ``kafka.topic_prefix`` so
    the test's topics (create them with ``mdpipe.topics.ensure_topics(config)``) never collide with others'.
    Its topics are deleted when the test ends."""
    base = load_config(environ={}, use_infra_state=False)
    prefix = f"t{uuid.uuid4().hex[:10]}."
    config = msgspec.structs.replace(
        base,
        kafka=msgspec.structs.replace(base.kafka, bootstrap_servers=kafka_bootstrap, topic_prefix=prefix),
        postgres=msgspec.structs.replace(base.postgres, dsn=make_database()),
    )
    yield config
    with contextlib.suppress(Exception):
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                fut.result()


def _private_base() -> Path:
    base = Path(tempfile.mkdtemp(prefix=f"mdpipe-private-{os.getpid()}-"))
    base.chmod(0o755)
    return base


@pytest.fixture
def private_kafka() -> Iterator[Callable[..., Any]]:
    """Factory: ``private_kafka(**KafkaBroker kwargs) -> infra.kafka_native.KafkaBroker``, started, own run dir
    (fast-start JVM flags unless ``fast_start=False``). The test may ``stop()``/``kill()``/``start()``/``restart()``
    it; the port stays the same across restarts. Stopped and removed at test end."""
    from infra.kafka_native import KafkaBroker, kafka_version

    if not kafka_version():
        pytest.skip("private brokers need the native Kafka jars (mdpipe infra install)")
    made: list[tuple[Any, Path]] = []

    def factory(**kwargs: Any) -> KafkaBroker:
        base = _private_base()
        broker = KafkaBroker(base, **{"die_with_parent": True, "fast_start": True, **kwargs})
        made.append((broker, base))
        return broker.start()

    yield factory
    for broker, base in made:
        with contextlib.suppress(Exception):
            broker.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[Callable[..., Any]]:
    """Factory: ``private_postgres() -> infra.postgres_native.PostgresServer`` (started, own run dir, database
    ``mdpipe``; ``.dsn``). The test may ``stop()``/``kill()``/``start()`` it. Stopped and removed at test end."""
    from infra.postgres_native import PostgresServer, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("private databases need the PostgreSQL server binaries (mdpipe infra install)")
    made: list[tuple[Any, Path]] = []

    def factory(**kwargs: Any) -> PostgresServer:
        base = _private_base()
        server = PostgresServer(base, die_with_parent=True, **kwargs)
        made.append((server, base))
        return server.start()

    yield factory
    for server, base in made:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
