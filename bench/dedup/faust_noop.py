"""Ceiling of Faust itself on this machine: a worker whose agent reads the raw topics and does nothing
(no table, no output), one event at a time (TAKE=0) or through ``stream.take_events(TAKE)`` as the dedup worker.
Run as ``python -m bench.dedup.faust_noop BOOTSTRAP APP_ID WORKDIR TAKE TOPIC...``; prints
``frames=N busy_s=S busy_cpu_s=C`` when every partition is drained."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import faust

from dedup_stream.app import LINGER_S, MAX_POLL_RECORDS, STREAM_BUFFER  # the dedup worker's own


def main(bootstrap: str, app_id: str, workdir: str, take: int, topics: list[str]) -> None:
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        datadir=workdir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=STREAM_BUFFER,
        broker_max_poll_records=MAX_POLL_RECORDS,
        consumer_max_fetch_size=4 * 1024 * 1024,
    )
    source = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    state = {"frames": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu1": 0.0, "seen": 0}
    done: dict[object, int] = {}

    def seen(msg: faust.types.Message) -> None:
        done[msg.tp] = msg.offset + 1
        state["frames"] += 1
        state["last"] = time.monotonic()
        if not state["first"]:
            state["first"], state["cpu0"] = state["last"], time.process_time()

    @app.agent(source)
    async def noop(stream):  # type: ignore[no-untyped-def]
        if take > 1:
            async for events in stream.take_events(take, within=LINGER_S):
                for event in events:
                    seen(event.message)
        else:
            async for event in stream.events():
                seen(event.message)

    @app.timer(1.0)
    async def check() -> None:
        if state["frames"] != state["seen"]:
            state["seen"], state["cpu1"] = state["frames"], time.process_time()
            return
        tps = [tp for tp in app.consumer.assignment() if tp.topic in topics]
        if not tps or not state["frames"]:
            return
        highwaters = await app.consumer.highwaters(*tps)
        if all(done.get(tp, 0) >= (hw or 0) for tp, hw in highwaters.items()):
            busy, cpu = state["last"] - state["first"], state["cpu1"] - state["cpu0"]
            print(f"frames={state['frames']} busy_s={busy:.3f} busy_cpu_s={cpu:.3f}", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

    worker = faust.Worker(app, loglevel="warning", quiet=True, override_logging=False)
    with contextlib.suppress(SystemExit):
        worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
