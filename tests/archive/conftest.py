"""Fixtures for the archive tests: a migrated database loaded with synthetic events, a local S3 server (moto)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dedup_stream.synth import gatherer_copies, pipeline_events
from mdpipe.config import Config, load_config
from schemas import RawFrame, encode_event
from venues import get_venue

# five seconds before a UTC midnight: the synthetic events span two dates
MIDNIGHT_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
T0_NS = (MIDNIGHT_MS - 5_000) * 1_000_000


def synthetic_frames(n: int = 1500, gatherer: str = "g1", seed: int = 3, t0_ns: int = T0_NS) -> list[RawFrame]:
    """One gatherer's frames for ``n`` events of the pipeline mix, every 10 ms from ``t0_ns``."""
    events = pipeline_events(n, markets=40, seed=seed, t0_ns=t0_ns, spacing_ns=10_000_000)
    return gatherer_copies(events, gatherer, seed=seed)


def load_frames(dsn: str, frames: list[RawFrame]) -> int:
    """Load the events of ``frames`` (each a winning copy) through the sink's batch and store; returns rows."""
    from sink.batch import Batch, Source
    from sink.store import Store

    batch = Batch(events_topic="test.events")
    for offset, frame in enumerate(frames):
        batch.add(Source("test.events", 0, offset, encode_event(get_venue(frame.venue).normaliser()(frame))))
    store = Store(dsn, "archive-test")
    try:
        result = store.write(batch, lambda dead: None)
    finally:
        store.close()
    assert not result.dead, result.dead[:3]
    return sum(result.rows.values())


@pytest.fixture
def archive_config(make_database: Callable[..., str]) -> Config:
    """A config whose postgres.dsn is a fresh, migrated database."""
    import msgspec

    from sink.migrate import migrate

    base = load_config(environ={}, use_infra_state=False)
    config = msgspec.structs.replace(base, postgres=msgspec.structs.replace(base.postgres, dsn=make_database()))
    migrate(config.postgres.dsn, config.postgres)
    return config


@pytest.fixture
def loaded_db(archive_config: Config) -> tuple[Config, int]:
    """(config, rows): the database holds the events of 1500 synthetic frames across a UTC midnight."""
    rows = load_frames(archive_config.postgres.dsn, synthetic_frames())
    return archive_config, rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_server(tmp_path: Any) -> Iterator[dict[str, Any]]:
    """moto's S3 server in a subprocess; yields fsspec storage options pointing at it (bucket ``archive`` exists)."""
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    port = _free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env
    )
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto server did not start: {(tmp_path / 'moto.log').read_text()}") from None
                time.sleep(0.2)
        import boto3

        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
        ).create_bucket(Bucket="archive")
        yield options
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
