"""Helpers for the ingest tests (fixture ``ih``): build a gatherer against a running venue_sim, read topics."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ingest.gatherer import Gatherer
from ingest.producer import RawProducer
from ingest.spool import Spool
from mdpipe.config import GatherConfig, KafkaConfig, VenueConfig
from mdpipe.kafka import consumer_config, producer_config
from schemas.raw import RawFrame, decode_raw
from schemas.raw_record import frames_of

CHANNELS = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"]


class _Msg(msgspec.Struct):
    msg: msgspec.Raw = msgspec.Raw(b"null")


_msg = msgspec.json.Decoder(_Msg)


def body_of(frame: RawFrame) -> bytes:
    """The verbatim ``msg`` object inside a frame's payload."""
    return bytes(_msg.decode(frame.payload).msg)


def make_gatherer(
    bootstrap: str,
    sim: Any,
    spool_dir: Path,
    *,
    topics: dict[str, str],
    gid: str = "g1",
    per_connection: int = 7000,
    per_subscription: int = 7000,
    silence_timeout_s: float = 30.0,
    discovery_interval_s: float = 60.0,
    queue_max: int = 200_000,
    queue_max_kbytes: int = 65536,
    ws_client: str = "picows",
    rest_url: str = "",
    spool_max_bytes: int = 1 << 30,
    raw_partitions: int | None = None,
    **options: Any,
) -> Gatherer:
    """A gatherer for ``sim`` (REST at ``rest_url`` when given, e.g. a :class:`RestProxy`); ``options`` are settings
    of the ``gather`` section as they are, but ``ca_file`` (of the ``venue`` section) and the gatherer's run-time
    arguments ``discover`` and ``discovery_page``.

    Its producer warms up as ``mdpipe gather``'s does (:func:`ingest.cli.build_gatherer`): live frames go through
    the reporting producer until every partition of the raw topic stored one (``raw_partitions``, else the topic's
    count as the broker gives it: a test whose broker is not there at the start passes ``raw_partitions``)."""
    kafka = KafkaConfig(bootstrap_servers=bootstrap)
    conf = producer_config(
        kafka, linger_ms=5, queue_buffering_max_kbytes=queue_max_kbytes, reconnect_backoff_max_ms=1000
    )
    partitions = raw_partitions or topic_partitions(bootstrap, topics["raw"])
    run = {name: options.pop(name) for name in ("discover", "discovery_page") if name in options}
    venue = VenueConfig(rest_url=rest_url or sim.rest_url, ws_url=sim.ws_url, ca_file=options.pop("ca_file", ""))
    gather = GatherConfig(
        channels=CHANNELS,
        markets_per_connection=per_connection,
        markets_per_subscription=per_subscription,
        discovery_interval_s=discovery_interval_s,
        silence_timeout_s=silence_timeout_s,
        backoff_initial_s=0.1,
        backoff_max_s=1.0,
        ws_client=ws_client,  # type: ignore[arg-type]
        **options,
    )
    producer = RawProducer(
        conf,
        Spool(spool_dir, spool_max_bytes),
        queue_max=queue_max,
        warm_topics={topics["raw"]: partitions},
        bundle_max_bytes=gather.bundle_max_bytes,  # as mdpipe gather: bundles unless the test's options say 0
        known_partitions={topics["raw"]: partitions},
    )
    return Gatherer(
        gather,
        venue,
        producer,
        gatherer_id=gid,
        raw_topic=topics["raw"],
        dlq_topic=topics["dlq"],
        markets_topic=topics["markets"],
        **run,
    )


def topic_partitions(bootstrap: str, topic: str) -> int:
    """``topic``'s partition count as the broker at ``bootstrap`` gives it (:func:`tests.conftest.visible_partitions`
    waits while a topic created a moment ago is not in the metadata yet); raises when it never shows, rather than
    guess a count the warm-up would then wait for (or stop short of)."""
    from confluent_kafka.admin import AdminClient

    from tests.conftest import visible_partitions

    partitions = visible_partitions(AdminClient({"bootstrap.servers": bootstrap}), topic)
    if partitions is None:
        raise AssertionError(f"topic {topic} has no partitions in {bootstrap}'s metadata: pass raw_partitions")
    return partitions


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def confirmed(gatherer: Gatherer) -> bool:
    """Every connection of ``gatherer`` is up and the venue confirmed each of its subscriptions, the lifecycle
    channel's included: from then on the venue sends it every message of its markets and every lifecycle message. (A
    socket that is open may still have its subscribe commands in flight: a message the venue sends meanwhile never
    reaches the gatherer.)"""
    return all(
        c.up
        and not any(group.pending for group in c.session.groups)
        and (not c.session.lifecycle or c.session.lifecycle_sid is not None)
        for c in gatherer.connections
    )


async def run_with(gatherer: Gatherer, body: Callable[[], Awaitable[None]]) -> None:
    """Run the gatherer while ``body`` runs, then stop it (flushing the producer)."""
    stop = asyncio.Event()
    task = asyncio.create_task(gatherer.run(stop))
    try:
        await body()
    finally:
        stop.set()
        await task


class RestProxy:
    """A real HTTP server in front of the emulator's REST API that misbehaves on demand.

    ``fault(path_and_query)`` decides per request: None forwards the emulator's answer; ``"truncate"`` sends the
    status line and headers with the full Content-Length, then half the body, and closes the connection (the
    client's read raises ``http.client.IncompleteRead``); ``"error"`` answers 500; ``"close"`` closes without
    answering. ``requests`` lists every request path it saw, ``faults`` the ones it broke.
    """

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream.rstrip("/")
        self.fault: Callable[[str], str | None] = lambda path: None
        self.requests: list[str] = []
        self.faults: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                import urllib.error
                import urllib.request

                path = self.path.split("/trade-api/v2", 1)[-1]
                proxy.requests.append(path)
                fault = proxy.fault(path)
                if fault is not None:
                    proxy.faults.append((fault, path))
                if fault == "close":
                    self.close_connection = True
                    return
                if fault == "error":
                    self._answer(500, b'{"error":"internal"}')
                    return
                try:
                    with urllib.request.urlopen(proxy.upstream + path, timeout=10) as r:
                        status, body = r.status, r.read()
                except urllib.error.HTTPError as exc:
                    status, body = exc.code, exc.read()
                if fault == "truncate":
                    self._answer(status, body, cut=len(body) // 2)
                    return
                self._answer(status, body)

            def _answer(self, status: int, body: bytes, cut: int | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/trade-api/v2"
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest-proxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every message of ``topic`` (all partitions, from the start up to the current end)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(consumer_config(KafkaConfig(bootstrap_servers=bootstrap), f"test-{uuid.uuid4().hex}"))
    try:
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while True:  # a just-restarted broker may not know its partitions yet
            try:
                meta = consumer.list_topics(topic, timeout=10).topics[topic]
                for p in meta.partitions:
                    ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: list[tuple[bytes | None, bytes]] = []
        done = {p for p, high in ends.items() if high == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(ends) and time.monotonic() < deadline:
            for msg in consumer.consume(10000, 0.5):
                if msg.error():
                    continue
                out.append((msg.key(), msg.value()))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
        return out
    finally:
        consumer.close()


def read_frames(bootstrap: str, topic: str) -> list[RawFrame]:
    """Every frame of a raw ``topic``, a bundle's in its order (per partition, the gatherer's order)."""
    return [decode_raw(f) for _, v in read_topic(bootstrap, topic) for f in frames_of(v)]  # type: ignore[arg-type]


def gatherer_topics(make_topics: Any) -> dict[str, str]:
    """One gatherer's topics (``raw``, ``dlq``, ``markets``), fresh for the test (``make_topics`` fixture)."""
    raw, dlq, markets = make_topics(3)
    return {"raw": raw, "dlq": dlq, "markets": markets}


@pytest.fixture
def ih() -> Any:
    """This module: ``ih.make_gatherer``, ``ih.topic_partitions``, ``ih.run_with``, ``ih.read_frames``,
    ``ih.wait_for``, ``ih.confirmed``, ``ih.body_of``, ``ih.gatherer_topics``."""
    return sys.modules[__name__]
