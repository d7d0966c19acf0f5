"""The two measured cases, each run in its own process: ``python -m bench.gatherer.cases CASE ARGS_JSON``.

- ``baseline``: websockets connections that subscribe the same markets/channels and only count messages
  (no parsing, no produce): the ceiling of receiving from this emulator in Python with ``websockets``.
- ``baseline_picows``: the same bare receive loop over picows (counts complete messages).
- ``candidate``: the real :class:`ingest.gatherer.Gatherer` (discovery, parsing, event keys, RawFrame encoding,
  confluent-kafka produce) with ``ws_client`` (default: ``gather.ws_client``); counts frames ACKNOWLEDGED by the
  broker.

With ``ca_file`` in ARGS (``--tls``: the emulator serves ``wss://``/``https://``) every case speaks TLS trusting it.

Each prints one JSON line: ``{"case", "frames_per_s", "frames", "seconds", "cpu_s", "rss_mb", ...}``. With
``windows`` > 0 in ARGS (the paced runs: the emulator runs at a fixed rate), the case measures ``windows``
consecutive windows of ``window_s`` seconds after its warm-up instead, and adds ``"windows": [{"frames",
"seconds", "cpu_s", ...}, ...]`` (the bench takes medians of CPU per frame over them).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import resource
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["main"]

CHANNELS = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _thread_cpu() -> dict[str, float]:
    """CPU-seconds per thread name of this process (``/proc/self/task``): the event-loop thread is ``main``,
    librdkafka's threads are ``rdk:*``; threads sharing a name are summed. ``<name>/wakeups``: the thread's
    voluntary context switches (each one a sleep it was woken from)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = os.getpid()
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/self/task/{tid}/status") as f:
                status = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main" if int(tid) == main else stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        switches = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt"))
        out[f"{name}/wakeups"] = out.get(f"{name}/wakeups", 0) + switches
    return out


def _ssl(a: dict[str, Any]) -> ssl.SSLContext | None:
    """The client TLS context trusting the emulator's CA (``ca_file``), None when the bench runs without TLS."""
    return ssl.create_default_context(cafile=a["ca_file"]) if a.get("ca_file") else None


def _tickers(rest_url: str, context: ssl.SSLContext | None = None) -> list[str]:
    out: list[str] = []
    cursor = ""
    while True:
        url = f"{rest_url}/markets?status=open&limit=1000" + (f"&cursor={cursor}" if cursor else "")
        with urllib.request.urlopen(url, timeout=30, context=context) as r:
            page = json.loads(r.read())
        out += [m["ticker"] for m in page["markets"]]
        cursor = page.get("cursor") or ""
        if not cursor:
            return out


async def baseline(a: dict[str, Any]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    tickers = _tickers(a["rest_url"], _ssl(a))
    per = a["markets_per_connection"]
    shards = [tickers[i : i + per] for i in range(0, len(tickers), per)]
    count = [0]

    async def reader(i: int, markets: list[str]) -> None:
        async with connect(a["ws_url"], max_size=None, max_queue=256, compression=None, ssl=_ssl(a)) as ws:
            channels = [c for c in CHANNELS if c != "market_lifecycle_v2"]
            await ws.send(
                json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": channels, "market_tickers": markets}})
            )
            if i == 0:
                await ws.send(
                    json.dumps({"id": 2, "cmd": "subscribe", "params": {"channels": ["market_lifecycle_v2"]}})
                )
            recv = ws.recv
            while True:
                await recv(decode=False)
                count[0] += 1

    tasks = [asyncio.create_task(reader(i, m)) for i, m in enumerate(shards)]
    result = await _measure_count(a, count, "baseline", len(shards))
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def _windows(a: dict[str, Any], counters: Callable[[], dict[str, int]]) -> list[dict[str, Any]]:
    """``windows`` consecutive windows of ``window_s`` seconds: each counter's increase, seconds and process CPU.

    Prints ``MEASURING <pid> <seconds>`` first (the bench may attach a sampling profiler for that long)."""
    print(f"MEASURING {os.getpid()} {a['windows'] * a['window_s']}", flush=True)
    out: list[dict[str, Any]] = []
    before, t0, cpu0, threads0 = counters(), time.monotonic(), _cpu(), _thread_cpu()
    for _ in range(a["windows"]):
        await asyncio.sleep(a["window_s"])
        after, t1, cpu1, threads1 = counters(), time.monotonic(), _cpu(), _thread_cpu()
        window: dict[str, Any] = {name: after[name] - before[name] for name in after}
        threads = {name: round(v - threads0.get(name, 0.0), 3) for name, v in threads1.items()}
        window.update(seconds=round(t1 - t0, 4), cpu_s=round(cpu1 - cpu0, 4), threads_cpu_s=threads)
        out.append(window)
        before, t0, cpu0, threads0 = after, t1, cpu1, threads1
    return out


async def _measure_count(a: dict[str, Any], count: list[int], case: str, connections: int) -> dict[str, Any]:
    """Let a bare receive loop warm up, then count its messages and CPU over ``duration_s`` (or windows)."""
    await asyncio.sleep(a["warmup_s"])
    if a.get("windows"):
        windows = await _windows(a, lambda: {"frames": count[0]})
        frames, seconds = sum(w["frames"] for w in windows), sum(w["seconds"] for w in windows)
        return {
            "case": case,
            "frames": frames,
            "seconds": seconds,
            "frames_per_s": frames / seconds,
            "cpu_s": sum(w["cpu_s"] for w in windows),
            "rss_mb": _rss_mb(),
            "connections": connections,
            "windows": windows,
        }
    c0, t0, cpu0 = count[0], time.monotonic(), _cpu()
    await asyncio.sleep(a["duration_s"])
    c1, t1, cpu1 = count[0], time.monotonic(), _cpu()
    return {
        "case": case,
        "frames": c1 - c0,
        "seconds": t1 - t0,
        "frames_per_s": (c1 - c0) / (t1 - t0),
        "cpu_s": cpu1 - cpu0,
        "rss_mb": _rss_mb(),
        "connections": connections,
    }


async def baseline_picows(a: dict[str, Any]) -> dict[str, Any]:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    tickers = _tickers(a["rest_url"], _ssl(a))
    per = a["markets_per_connection"]
    shards = [tickers[i : i + per] for i in range(0, len(tickers), per)]
    count = [0]

    class Counter(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.fin and frame.msg_type is not WSMsgType.PING:
                frame.get_payload_as_bytes()  # what a real client must do: copy the message out of the buffer
                count[0] += 1

    transports: list[WSTransport] = []
    for i, markets in enumerate(shards):
        transport, _ = await ws_connect(
            Counter, a["ws_url"], ssl_context=_ssl(a), max_frame_size=64 << 20, use_aiofastnet=False
        )
        transports.append(transport)
        channels = [c for c in CHANNELS if c != "market_lifecycle_v2"]
        cmd = {"id": 1, "cmd": "subscribe", "params": {"channels": channels, "market_tickers": markets}}
        transport.send(WSMsgType.TEXT, json.dumps(cmd).encode())
        if i == 0:
            cmd = {"id": 2, "cmd": "subscribe", "params": {"channels": ["market_lifecycle_v2"]}}
            transport.send(WSMsgType.TEXT, json.dumps(cmd).encode())
    result = await _measure_count(a, count, "baseline_picows", len(shards))
    for transport in transports:
        transport.disconnect(graceful=False)
    return result


def _gatherer(a: dict[str, Any], gatherer_id: str, producer: Any, **settings: Any) -> Any:
    """The gatherer every bench case shares (no periodic discovery during a measurement), built the way the tree at
    hand takes it: its ``gather`` and ``venue`` sections, or ``GathererOptions`` in a --reference tree from before
    the stages took their own config sections."""
    from ingest import gatherer as gatherer_module

    topics = a["topics"]
    settings = {
        "channels": CHANNELS,
        "markets_per_connection": a["markets_per_connection"],
        "discovery_interval_s": 3600,
        **settings,
    }
    if hasattr(gatherer_module, "GathererOptions"):
        opts = gatherer_module.GathererOptions(
            gatherer_id=gatherer_id,
            rest_url=a["rest_url"],
            ws_url=a["ws_url"],
            raw_topic=topics["raw"],
            dlq_topic=topics["dlq"],
            markets_topic=topics["markets"],
            **({"ca_file": a["ca_file"]} if a.get("ca_file") else {}),  # a --reference tree may predate venue.ca_file
            **settings,
        )
        return gatherer_module.Gatherer(opts, producer)
    from mdpipe.config import GatherConfig, VenueConfig

    venue = VenueConfig(rest_url=a["rest_url"], ws_url=a["ws_url"], ca_file=a.get("ca_file") or "")
    return gatherer_module.Gatherer(
        GatherConfig(**settings),
        venue,
        producer,
        gatherer_id=gatherer_id,
        raw_topic=topics["raw"],
        dlq_topic=topics["dlq"],
        markets_topic=topics["markets"],
    )


def _warm(a: dict[str, Any], producer_class: Any) -> dict[str, Any]:
    """The producer's warm-up and bundles as ``mdpipe gather`` sets them: the raw topic and its partition count,
    ``gather.bundle_max_bytes`` (none in a --reference tree whose producer predates them)."""
    params = inspect.signature(producer_class).parameters
    if "warm_topics" not in params:
        return {}
    extra: dict[str, Any] = {}
    if "bundle_max_bytes" in params:
        from mdpipe.config import GatherConfig

        extra["bundle_max_bytes"] = GatherConfig().bundle_max_bytes
    from confluent_kafka.admin import AdminClient

    raw = a["topics"]["raw"]
    admin = AdminClient({"bootstrap.servers": a["bootstrap"]})
    deadline = time.monotonic() + 30
    # the wait of tests.conftest.visible_partitions, kept here: a benchmark does not import the tests (and with
    # --reference, ``mdpipe`` is the other tree's)
    while True:  # a topic created a moment ago reaches the metadata a moment later
        meta = admin.list_topics(raw, timeout=10).topics.get(raw)
        if meta is not None and meta.error is None and meta.partitions:
            if "known_partitions" in params:  # bundles group frames by the partition count the broker reports
                extra["known_partitions"] = {raw: len(meta.partitions)}
            return {"warm_topics": {raw: len(meta.partitions)}, **extra}
        if time.monotonic() > deadline:
            raise RuntimeError(f"bench topic {raw} has no partitions in the broker's metadata")
        time.sleep(0.1)


def _takes_read_window() -> bool:
    """Whether the gatherer of the tree at hand has ``gather.read_window_ms`` (a --reference tree may not)."""
    from ingest import gatherer as gatherer_module
    from mdpipe.config import GatherConfig

    options = getattr(gatherer_module, "GathererOptions", GatherConfig)
    return "read_window_ms" in {f.name for f in msgspec.structs.fields(options)}


async def candidate(a: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from ingest import gatherer as gatherer_module
    from ingest import producer as producer_module
    from ingest.producer import RawProducer
    from ingest.spool import Spool
    from mdpipe.config import GatherConfig, KafkaConfig
    from mdpipe.kafka import producer_config

    # Older trees (the --reference case may run main's code) hand linger_ms to librdkafka and have no
    # gatherer-side window; newer ones pick librdkafka's own linger (KAFKA_LINGER_MS) and take linger_ms as theirs.
    linger_ms = a.get("linger_ms", GatherConfig().linger_ms)
    options_class = getattr(gatherer_module, "GathererOptions", None)  # trees before the gather section was taken
    own_window = options_class is None or "linger_ms" in {f.name for f in msgspec.structs.fields(options_class)}
    kafka_linger_ms = getattr(producer_module, "KAFKA_LINGER_MS", linger_ms) if own_window else linger_ms
    kafka = KafkaConfig(bootstrap_servers=a["bootstrap"], compression=a.get("compression", "lz4"))
    conf = producer_config(
        kafka,
        linger_ms=a.get("kafka_linger_ms", kafka_linger_ms),
        batch_num_messages=10000,
        queue_buffering_max_kbytes=GatherConfig().queue_max_kbytes,
    )
    producer = RawProducer(
        conf, Spool(Path(a["spool_dir"]), 1 << 30), queue_max=GatherConfig().queue_max_frames, **_warm(a, RawProducer)
    )
    extra: dict[str, Any] = {"linger_ms": linger_ms} if own_window else {}
    if _takes_read_window():  # older trees read every socket as data comes
        extra["read_window_ms"] = a.get("read_window_ms", GatherConfig().read_window_ms)
    g = _gatherer(a, "gbench", producer, ws_client=a.get("ws_client") or GatherConfig().ws_client, **extra)
    stop = asyncio.Event()
    task = asyncio.create_task(g.run(stop))
    await asyncio.sleep(a["warmup_s"])
    recorded = lambda: sum(g.stats.by_kind.values())  # noqa: E731
    out: dict[str, Any] = {"case": "candidate", "ws_client": g.opts.ws_client}
    if a.get("windows"):
        # frames = venue messages the sessions took in (what the bare loop counts); acked = frames the broker
        # acknowledged in the window (at a fixed rate the two agree over a window, up to the linger in flight)
        windows = await _windows(
            a,
            lambda: {
                "frames": sum(c.session.data_messages for c in g.connections),
                "acked": producer.acked,
                "recorded": recorded(),
            },
        )
        frames, seconds = sum(w["frames"] for w in windows), sum(w["seconds"] for w in windows)
        out.update(
            frames=frames,
            seconds=seconds,
            frames_per_s=frames / seconds,
            acked_per_s=sum(w["acked"] for w in windows) / seconds,
            cpu_s=sum(w["cpu_s"] for w in windows),
            windows=windows,
        )
    else:
        a0, r0, t0, cpu0 = producer.acked, recorded(), time.monotonic(), _cpu()
        await asyncio.sleep(a["duration_s"])
        a1, r1, t1, cpu1 = producer.acked, recorded(), time.monotonic(), _cpu()
        out.update(
            frames=a1 - a0,
            seconds=t1 - t0,
            frames_per_s=(a1 - a0) / (t1 - t0),
            received_per_s=(r1 - r0) / (t1 - t0),
            cpu_s=cpu1 - cpu0,
        )
    out.update(
        rss_mb=_rss_mb(),
        connections=len(g.connections),
        spooled=producer.spooled,
        dead=g.stats.dead,
        gaps=g.stats.gaps,
        queued=producer.queued,
    )
    stop.set()
    await task
    return out


async def scale(a: dict[str, Any]) -> dict[str, Any]:
    """Hold ``markets`` markets: time until each has its snapshot, and peak RSS while getting there."""
    from pathlib import Path

    from ingest.producer import RawProducer
    from ingest.spool import Spool
    from mdpipe.config import GatherConfig, KafkaConfig
    from mdpipe.kafka import producer_config

    conf = producer_config(KafkaConfig(bootstrap_servers=a["bootstrap"]), linger_ms=20, batch_num_messages=10000)
    producer = RawProducer(conf, Spool(Path(a["spool_dir"]), 1 << 32), queue_max=200_000, **_warm(a, RawProducer))
    ws_client = a.get("ws_client") or GatherConfig().ws_client
    g = _gatherer(a, "gscale", producer, silence_timeout_s=600, ws_client=ws_client)
    stop = asyncio.Event()
    t0 = time.monotonic()
    task = asyncio.create_task(g.run(stop))
    peak = 0.0
    deadline = t0 + a["timeout_s"]
    while g.stats.by_kind["snapshot"] < a["markets"] and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        peak = max(peak, _rss_mb())
    done = time.monotonic() - t0
    out = {
        "case": "scale",
        "ws_client": ws_client,
        "subscribe_all_s": round(done, 1),
        "snapshots": g.stats.by_kind["snapshot"],
        "markets_held": len(g.plan.conn_of),
        "connections": len(g.connections),
        "connections_up": sum(c.up for c in g.connections),
        "reconnects": sum(c.reconnects for c in g.connections),
        "venue_errors": g.stats.errors,
        "peak_rss_mb": round(peak, 1),
        "rss_mb": round(_rss_mb(), 1),
        "acked": producer.acked,
        "spooled": producer.spooled,
    }
    stop.set()
    await task
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    case, args = argv[0], json.loads(argv[1])
    if args.get("profile"):
        from pyinstrument import Profiler

        prof = Profiler(async_mode="enabled")
        prof.start()
    runner = {"baseline": baseline, "baseline_picows": baseline_picows, "candidate": candidate, "scale": scale}[case]
    result = asyncio.run(runner(args))
    if args.get("profile"):
        prof.stop()
        Path = __import__("pathlib").Path
        Path(args["profile"]).write_text(prof.output_text(unicode=False, color=False, show_all=False))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
