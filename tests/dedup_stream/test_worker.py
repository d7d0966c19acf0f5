"""Dedup workers (`mdpipe dedup` subprocesses) on the real broker: exact output, outages, SIGKILL, failover."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from dedup_stream.synth import gatherer_copies, produce_frames, venue_events
from schemas import RawFrame, decode_dead_letter, decode_event, encode_raw
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

pytestmark = pytest.mark.integration


def produce(topics, gatherer: str, frames) -> int:  # type: ignore[no-untyped-def]
    return produce_frames({"bootstrap.servers": topics.bootstrap}, topics.raw(gatherer), frames)


def venue_keys(topics) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Event key -> copies on the events topic, venue events only (gap reports' coverage records left out)."""
    from schemas.events import Gap

    return Counter(e.event_key for e in topics.events_read() if not isinstance(e, Gap))


def wait_for_events(topics, expected: set[str], timeout_s: float) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Poll the events topic until every expected key is there; return key -> copies (venue events only)."""
    deadline = time.monotonic() + timeout_s
    while True:
        # Reading the whole topic is costly (and competes with the worker for the CPU): only once it can be enough.
        if topics.count(topics.events) >= len(expected) or time.monotonic() > deadline:
            seen = venue_keys(topics)
            if expected <= set(seen) or time.monotonic() > deadline:
                return seen
        time.sleep(0.5)


def test_copies_outage_and_lost_gatherer_give_each_event_once(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    topics = dedup_topics
    started_ns = time.time_ns()
    events = venue_events(6000, markets=40, seed=11)
    expected = {e.event_key for e in events}
    assert len(expected) == len(events)  # identical-body deltas differ by occurrence number only
    assert any(k.endswith("#2") for k in expected)
    g1 = gatherer_copies(events, "g1", reorder=4, keep=0.8)  # misses a fifth of the events
    g2 = gatherer_copies(events, "g2", delay_ns=3_000_000, reorder=7)  # complete, but down for a while
    g3 = gatherer_copies(events, "g3", delay_ns=1_000_000)[: len(events) * 7 // 10]  # dies, never comes back
    cut = len(g2) * 3 // 10
    produce(topics, "g1", g1)
    produce(topics, "g3", g3)
    produce(topics, "g2", g2[:cut])
    gap = RawFrame(
        venue=VENUE, gatherer="g3", conn=1, sid=1, seq=None, recv_ns=g3[-1].recv_ns, kind="gap",
        market=g3[-1].market, event_key="", payload=b'{"sid": 1, "expected": 5, "received": 9}',
    )  # fmt: skip
    produce(topics, "g3", [gap])
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": topics.bootstrap})
    p.produce(topics.raw("g1"), value=b"\x93not a raw frame", key=b"KXSYN-00000")
    p.flush(10)

    worker = dedup_workers.start(topics, "it-copies", "w1", "--exit-when-idle", "--idle-s", "4")
    # what g1, g3 and the first part of g2 cover
    covered = {f.event_key for f in g1} | {f.event_key for f in g3} | {f.event_key for f in g2[:cut]}
    seen = wait_for_events(topics, covered, 120)
    assert set(seen) == covered
    produce(topics, "g2", g2[cut:])  # g2 catches up: only the events nobody else had are new
    assert worker.wait(120) == 0, worker.log()[-3000:]

    seen = venue_keys(topics)
    assert set(seen) == expected
    assert max(seen.values()) == 1  # no crash, so not even a re-emit
    out = topics.events_read()
    (record,) = [e for e in out if type(e).__name__ == "Gap"]  # g3's gap report, forwarded
    assert (record.gatherer, record.kind, record.missed, record.from_ns) == ("g3", "seq", 4, gap.recv_ns)  # type: ignore[union-attr]
    out.remove(record)
    # hop stamps: the winning copy's raw record timestamp (synth sets it to the frame's receive ms) and the read time
    assert [e.raw_ts_ms for e in out] == [e.recv_ns // 1_000_000 for e in out]
    assert all(started_ns < e.dedup_ns < time.time_ns() for e in out)
    by_key = {e.event_key: e for e in out}
    first = {}
    for f in sorted(g1 + g2 + g3, key=lambda f: f.recv_ns):
        first.setdefault(f.event_key, f)
    sample = next(iter(by_key.values()))
    assert sample.market == first[sample.event_key].market
    assert {type(e).__name__ for e in out} == {"BookDelta", "Trade"}

    summary = worker.summary()
    gatherers = summary["gatherers"]
    assert isinstance(gatherers, dict)
    assert gatherers["g1"]["frames_in"] == len(g1)
    assert gatherers["g2"]["frames_in"] == len(g2)
    assert gatherers["g3"]["frames_in"] == len(g3) + 1
    assert sum(g["won"] for g in gatherers.values()) == len(expected)
    assert sum(g["duplicates"] for g in gatherers.values()) == len(g1) + len(g2) + len(g3) - len(expected)
    assert gatherers["g3"]["gap_reports"] == 1 and gatherers["g3"]["gap_messages"] == 4
    assert summary["invalid"] == 1
    letters = [decode_dead_letter(v) for _, _, _, v in topics.read(topics.dlq)]
    assert len(letters) == 1 and letters[0].stage == "dedup" and letters[0].source_topic == topics.raw("g1")

    # Replay of a time range under a new app id into another topic (what `mdpipe replay` runs).
    t_min = min(f.recv_ns for f in g1 + g2 + g3)
    from_ms, to_ms = (t_min + 200_000_000) // 1_000_000, (t_min + 400_000_000) // 1_000_000
    replayed_topic = topics.prefix + "replayed"
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": topics.bootstrap})
    admin.create_topics([NewTopic(replayed_topic, topics.partitions, 1)])[replayed_topic].result()
    replay = dedup_workers.start(
        topics, "it-replay", "r1", "--events-topic", replayed_topic, "--from-ts", str(from_ms), "--to-ts",
        str(to_ms), "--exit-when-idle", "--idle-s", "3",
    )  # fmt: skip
    assert replay.wait(120) == 0, replay.log()[-3000:]
    got = Counter(e.event_key for e in (decode_event(v) for _, _, _, v in topics.read(replayed_topic)))
    copies: dict[str, list[int]] = {}
    for f in g1 + g2 + g3:
        copies.setdefault(f.event_key, []).append(f.recv_ns // 1_000_000)
    inside = {k for k, ts in copies.items() if from_ms <= min(ts) and max(ts) < to_ms}
    outside = {k for k, ts in copies.items() if max(ts) < from_ms or min(ts) >= to_ms}
    assert inside and inside <= set(got)  # every event entirely inside the range is replayed
    assert not (outside & set(got))  # nothing entirely outside
    assert max(got.values()) == 1


def test_sigkill_mid_stream_then_restart_loses_nothing(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    topics = dedup_topics
    events = venue_events(40000, markets=60, seed=5)
    kill_twice_mid_stream(topics, dedup_workers, "it-crash", events, lambda g, frames: produce(topics, g, frames))


def kill_twice_mid_stream(topics, dedup_workers, app: str, events, send) -> None:  # type: ignore[no-untyped-def]
    """Feed three gatherers' copies of ``events`` (``send(gatherer, encoded frames)``, 12 paced chunks), SIGKILL
    the worker at a fifth and at half of the events and restart it on the same disk; then every event must be out,
    and every repeat an exact re-emit of the same winner (same gatherer and receive time)."""
    expected = {e.event_key for e in events}
    frames = {
        g: [encode_raw(f) for f in gatherer_copies(events, g, delay_ns=delay, reorder=3)]
        for g, delay in (("g1", 0), ("g2", 2_000_000), ("g3", 5_000_000))
    }
    chunks = 12

    def feed() -> None:  # a paced stream, so that even a fast worker is killed mid-stream
        for i in range(chunks):
            for g, encoded in frames.items():
                send(g, encoded[i * len(encoded) // chunks : (i + 1) * len(encoded) // chunks])
            time.sleep(0.7)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    worker = dedup_workers.start(topics, app, "w1")
    kills = 0
    for threshold in (len(expected) // 5, len(expected) // 2):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            n = topics.count(topics.events)
            if n >= threshold:
                break
            time.sleep(0.3)
        assert n < len(expected), "the worker finished before it could be killed: raise the event count"
        worker.kill()
        kills += 1
        worker = dedup_workers.start(topics, app, "w1")  # same workdir: local RocksDB state is kept
    feeder.join(120)
    seen = wait_for_events(topics, expected, 180)
    worker.stop()
    assert set(seen) == expected
    duplicates = sum(seen.values()) - len(seen)
    print(f"kills={kills} events={len(expected)} re-emitted duplicates={duplicates}")
    # every duplicate is an exact re-emit of the same winner: same gatherer and receive time
    firsts: dict[str, tuple[str, int]] = {}
    for e in topics.events_read():
        assert firsts.setdefault(e.event_key, (e.gatherer, e.recv_ns)) == (e.gatherer, e.recv_ns)


def group_progress(topics, app_id: str, consumer=None) -> list[tuple[str, int, int, int]]:  # type: ignore[no-untyped-def]
    """(topic, partition, committed offset of the dedup group (< 0: none), end offset) of every raw partition."""
    from confluent_kafka import Consumer, TopicPartition

    own = consumer is None
    if own:
        consumer = Consumer({"bootstrap.servers": topics.bootstrap, "group.id": app_id, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topics.raw(g), p) for g in ("g1", "g2", "g3") for p in range(topics.partitions)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        done = [tp.offset for tp in consumer.committed(tps, timeout=10)]
        return [(tp.topic, tp.partition, d, e) for tp, d, e in zip(tps, done, ends, strict=True)]
    finally:
        if own:
            consumer.close()


def committed_everything(topics, app_id: str, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    """Wait until the dedup group has committed every raw partition up to its end."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": topics.bootstrap, "group.id": app_id, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            progress = group_progress(topics, app_id, consumer)
            if all(d >= e or e == 0 for _, _, d, e in progress):  # empty: nothing to commit
                return True
            time.sleep(0.5)
        return False
    finally:
        consumer.close()


def stall_report(topics, app_id: str, worker) -> None:  # type: ignore[no-untyped-def]
    """Where a worker that did not get there stands, printed before the assertion fails (pytest shows a failed
    test's output whole, where it cuts an assertion message): the group's committed offset against the end of
    every raw partition, the frames the worker read and emitted per gatherer, and, for the Faust engine, every
    thread's stack and every asyncio task (a CI run of the Faust reemit test once stopped after the new worker's
    first rebalance without saying why)."""
    lines = [f"committed/end {t}[{p}]: {d}/{e}" for t, p, d, e in group_progress(topics, app_id)]
    try:
        lines += worker.metric_lines(
            "mdpipe_dedup_frames_in_total", "mdpipe_dedup_frames_won_total", "mdpipe_dedup_frames_duplicate_total"
        )
    except OSError as exc:
        lines.append(f"metrics: {exc!r}")
    print("\n".join(lines) + "\n" + worker.stacks())


def expect_progress(ok: bool, topics, app_id: str, worker) -> None:  # type: ignore[no-untyped-def]
    """Fail with the worker's log tail, having printed its :func:`stall_report`, unless ``ok``."""
    if not ok:
        stall_report(topics, app_id, worker)
        raise AssertionError(worker.log()[-3000:])


def wait_members(topics, app_id: str, members: int, timeout_s: float) -> bool:  # type: ignore[no-untyped-def]
    """Wait until the dedup group is stable with ``members`` members that all own partitions."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": topics.bootstrap})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            group = admin.describe_consumer_groups([app_id])[app_id].result()
        except KafkaException as exc:  # e.g. COORDINATOR_LOAD_IN_PROGRESS on a broker started a moment ago
            if not exc.args[0].retriable():
                raise
            time.sleep(0.5)
            continue
        owners = [m for m in group.members if m.assignment.topic_partitions]
        if str(group.state).endswith("STABLE") and len(group.members) == len(owners) == members:
            return True
        time.sleep(0.5)
    return False


# Native engine only: with the Faust engine the surviving worker sometimes never committed the late copies within
# 150 s after the kill (1 run in ~5 on this machine). Likely the raw records Faust lost at the end of a rebalance
# (dedup_stream.faust_recovery): before that fix 1 Faust run in 6 stalled so, after it 16 in 16 passed (load 3-10).
@pytest.mark.parametrize("dedup_workers", ["native"], indirect=True)
def test_two_workers_failover_moves_partitions(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    topics = dedup_topics
    app_id = topics.app_id("it-pair")
    events = venue_events(30000, markets=60, seed=9)
    expected = {e.event_key for e in events}
    copies = {g: gatherer_copies(events, g, delay_ns=d) for g, d in (("g1", 0), ("g2", 1_000_000), ("g3", 4_000_000))}
    half = len(events) // 2
    w1 = dedup_workers.start(topics, "it-pair", "w1")
    w2 = dedup_workers.start(topics, "it-pair", "w2")
    assert wait_members(topics, app_id, 2, 90), w1.log()[-2000:] + w2.log()[-2000:]
    for g in ("g1", "g2"):
        produce(topics, g, copies[g])
    produce(topics, "g3", copies["g3"][:half])  # g3's copies of the second half come late, after the failover
    seen = wait_for_events(topics, expected, 150)
    assert set(seen) == expected
    assert w1.frames_in() > 0 and w2.frames_in() > 0  # both owned partitions
    assert w1.healthy() and w2.healthy()
    assert committed_everything(topics, app_id, 60)  # state and changelog flushed before the kill
    w1.kill()  # its partitions, and their state through the changelog, move to w2
    produce(topics, "g3", copies["g3"][half:])  # late copies: w2 must know them all from the restored state
    assert committed_everything(topics, app_id, 150), w2.log()[-3000:]
    assert w2.stop() == 0
    seen = Counter(e.event_key for e in topics.events_read())
    assert set(seen) == expected
    assert max(seen.values()) == 1, "a late copy won again: the moved state was not restored"


@pytest.mark.parametrize("dedup_workers", ["native"], indirect=True)
def test_rebalance_under_backlog_loses_no_single_copy_event(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """A second worker joins while the first is deep in a backlog: the revocation is served in the middle of a
    consume() batch; the commit it triggers must name processed frames only (events with one copy show a gap)."""
    topics = dedup_topics
    app_id = topics.app_id("it-join")
    events = venue_events(120000, markets=60, seed=21)
    expected = {e.event_key for e in events}
    frames = [encode_raw(f) for f in gatherer_copies(events, "g1", reorder=3)]  # one copy of each event only
    w1 = dedup_workers.start(topics, "it-join", "w1")
    assert wait_members(topics, app_id, 1, 90), w1.log()[-2000:]
    chunks = 8
    last = frames[(chunks - 1) * len(frames) // chunks :]  # fed once both workers own partitions

    def feed() -> None:  # bursts faster than one worker drains them: a backlog while w2 joins (two rebalances)
        for i in range(chunks - 1):
            produce(topics, "g1", frames[i * len(frames) // chunks : (i + 1) * len(frames) // chunks])
            time.sleep(0.4)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    w2 = dedup_workers.start(topics, "it-join", "w2")
    feeder.join(120)
    assert wait_members(topics, app_id, 2, 90), w1.log()[-2000:] + w2.log()[-2000:]
    produce(topics, "g1", last)
    seen = wait_for_events(topics, expected, 120)
    assert w2.frames_in() > 0, w2.log()[-2000:]
    assert w1.stop() == 0 and w2.stop() == 0
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} single-copy events lost across the rebalance"


def set_topic_config(topics, topic: str, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": topics.bootstrap})
    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


def test_reemit_from_local_state_keeps_its_winner_for_the_next_owner(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """Issue 12, item 8. A worker writes winners to its local RocksDB, but the broker never acknowledges their
    changelog records and the worker dies (forced here deterministically: the changelog topic refuses every
    record, ``max.message.bytes=1``, until the test lifts it). Restarted on the same disk it re-emits those winners
    from local state; then it dies (SIGKILL) after committing, and a worker with a fresh disk takes the partitions
    over from the changelog while the third gatherer's late copies arrive. Every event must keep one winner."""
    from confluent_kafka.admin import AdminClient, NewTopic

    topics = dedup_topics
    app_id = topics.app_id("it-wb")
    changelog = f"{app_id}-seen-changelog"
    admin = AdminClient({"bootstrap.servers": topics.bootstrap})
    refusing = {"cleanup.policy": "compact,delete", "retention.ms": "3600000", "max.message.bytes": "1"}
    admin.create_topics([NewTopic(changelog, topics.partitions, 1, config=refusing)])[changelog].result()
    events = venue_events(3000, markets=30, seed=13)
    expected = {e.event_key for e in events}
    copies = {g: gatherer_copies(events, g, delay_ns=d) for g, d in (("g1", 0), ("g2", 1_000_000), ("g3", 9_000_000))}
    produce(topics, "g1", copies["g1"])
    produce(topics, "g2", copies["g2"])

    w1 = dedup_workers.start(topics, "it-wb", "w1")
    assert w1.wait(120) == 75, w1.log()[-3000:]  # EXIT_OUTPUT_FAILED: its changelog records were refused
    assert "output_failed_exiting" in w1.log() or "output_batch_failed_exiting" in w1.log()
    assert topics.read(topics.events) == [], "an event left before its changelog record was acknowledged"

    set_topic_config(topics, changelog, "max.message.bytes", "1048588")  # the broker takes changelog records again
    w1 = dedup_workers.start(topics, "it-wb", "w1")  # same workdir: winners in local state, none in the changelog
    seen = wait_for_events(topics, expected, 150)
    expect_progress(set(seen) == expected, topics, app_id, w1)
    expect_progress(committed_everything(topics, app_id, 90), topics, app_id, w1)
    assert w1.metric("mdpipe_dedup_frames_reemitted_total") > 0  # the window was hit: winners came from local state
    w1.kill()

    w2 = dedup_workers.start(topics, "it-wb", "w2")  # fresh workdir: restores its partitions from the changelog only
    produce(topics, "g3", copies["g3"])  # late copies of every event
    expect_progress(committed_everything(topics, app_id, 150), topics, app_id, w2)
    assert w2.stop() == 0, w2.log()[-3000:]

    winners: dict[str, set[str]] = {}
    for e in topics.events_read():
        winners.setdefault(e.event_key, set()).add(e.gatherer)
    assert set(winners) == expected
    two = {k: g for k, g in winners.items() if len(g) > 1}
    assert not two, f"{len(two)} events emitted with a second winner after the failover, e.g. {next(iter(two.items()))}"
    assert all(g <= {"g1", "g2"} for g in winners.values())


@pytest.mark.parametrize("dedup_workers", ["faust"], indirect=True)
def test_faust_end_of_rebalance_decides_every_raw_record(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """The Faust engine's end of a rebalance (dedup_stream.faust_recovery): raw records that arrive while the seek to
    the committed offsets is under way must all be decided. As in the reemit test's rare CI stall, a worker with a
    fresh disk restores its partitions from the changelog (so Faust's fetcher runs during the recovery) while a raw
    topic that has no committed offset yet holds records. The seek is held until raw records wait in the stream
    queues (late_seek.py), the moment at which Faust's own order cleared them unread: one lost record was then
    committed over, two or more in a partition stopped its commits for good. One copy per event: a record not
    decided is an event missing."""
    topics = dedup_topics
    app_id = topics.app_id("it-seek")
    events = venue_events(4000, markets=30, seed=23)
    first, late = events[:1000], events[1000:]
    produce(topics, "g1", gatherer_copies(first, "g1"))
    w1 = dedup_workers.start(topics, "it-seek", "w1")
    assert set(wait_for_events(topics, {e.event_key for e in first}, 90)) == {e.event_key for e in first}
    expect_progress(committed_everything(topics, app_id, 60), topics, app_id, w1)
    assert w1.stop() == 0, w1.log()[-3000:]

    produce(topics, "g2", gatherer_copies(late, "g2"))  # g2: no committed offset yet
    w2 = dedup_workers.start(topics, "it-seek", "w2", entry=[str(Path(__file__).with_name("late_seek.py"))])
    expected = {e.event_key for e in events}
    seen = wait_for_events(topics, expected, 60)
    expect_progress(committed_everything(topics, app_id, 60), topics, app_id, w2)
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} events lost at the end of the rebalance, e.g. {next(iter(missing))}"
    assert w2.frames_in() == len(late)
    assert w2.stop() == 0, w2.log()[-3000:]
    assert max(venue_keys(topics).values()) == 1


@pytest.mark.parametrize("dedup_workers", ["faust"], indirect=True)
def test_faust_commit_waits_for_events_held_in_another_flush(dedup_topics, dedup_workers, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The Faust engine's commit flushes the output first (OutputBatcher.hook). When another flush (the linger timer's)
    has taken the last event batches out of the pending set and waits for their changelog acknowledgement, the
    commit's flush must wait for it too: it returned at once, and Faust committed the frames of events that had not
    reached the producer. A SIGKILL then lost them for good (every copy: the restarted worker does not read those
    frames again), as in the rare CI loss of the sigkill test. commit_during_flush.py holds that flush past a commit
    and kills the worker right after the commit that names every frame."""
    topics = dedup_topics
    events = venue_events(3000, markets=30, seed=29)
    expected = {e.event_key for e in events}
    monkeypatch.setenv("MDPIPE_TEST_FRAMES", str(produce(topics, "g1", gatherer_copies(events, "g1"))))
    w1 = dedup_workers.start(topics, "it-held", "w1", entry=[str(Path(__file__).with_name("commit_during_flush.py"))])
    assert w1.proc.wait(120) == -9, w1.log()[-3000:]
    assert "fault: events flush held" in w1.log() and "fault: SIGKILL" in w1.log(), w1.log()[-3000:]
    w1.stage_file.unlink()  # the killed worker's, which the restarted one (same name) writes again once started
    w2 = dedup_workers.start(topics, "it-held", "w1")  # same workdir, as after a crash
    deadline = time.monotonic() + 90
    while not (w2.stage_file.exists() and w2.healthy()):  # started (its signal handlers too) before stop()
        assert time.monotonic() < deadline and w2.proc.poll() is None, w2.log()[-3000:]
        time.sleep(0.5)
    seen = wait_for_events(topics, expected, 60)
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} events lost: committed before they reached the broker"
    assert w2.stop() == 0, w2.log()[-3000:]


def wait_for_gaps(topics, count: int, timeout_s: float) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Poll the events topic until it holds ``count`` Gap records; return their key -> copies."""
    from schemas.events import Gap

    deadline = time.monotonic() + timeout_s
    while True:
        seen = Counter(e.event_key for e in topics.events_read() if isinstance(e, Gap))
        if sum(seen.values()) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(1.0)


def gap_frames(t0: int) -> list[RawFrame]:
    """Gap reports of the three gatherers, both payload forms; the same window reported by g1 and g2."""
    from schemas import GapReport, encode_gap

    down = GapReport(kind="down", conn=1, from_ns=t0, to_ns=t0 + 4_000_000_000, markets=["*"])
    skip = GapReport(
        kind="seq", conn=2, from_ns=t0 + 5, to_ns=t0 + 9, channel="orderbook_delta", markets=["KXSYN-00002"], sid=3,
        expected=10, received=14,
    )  # fmt: skip
    refused = GapReport(
        kind="rejected", conn=4, from_ns=t0 + 7, to_ns=t0 + 7, channel="trade", markets=["KXSYN-00003", "KXSYN-00004"]
    )
    reports = [
        ("g1", "KXSYN-00001", encode_gap(down)),
        ("g2", "KXSYN-00001", encode_gap(down)),  # the same window on g2: its own record
        ("g2", "KXSYN-00002", encode_gap(skip)),
        ("g3", "KXSYN-00003", encode_gap(refused)),
        ("g3", "KXSYN-00005", b'{"sid": 6, "expected": 20, "received": 23, "conn": 5}'),  # older form
    ]
    frames = []
    for i, (gatherer, market, payload) in enumerate(reports):
        frames.append(
            RawFrame(venue=VENUE, gatherer=gatherer, conn=1, sid=None, seq=None, recv_ns=t0 + 10_000_000 + i,
                     kind="gap", market=market, event_key="", payload=payload)
        )  # fmt: skip
    return frames


def test_gap_reports_become_coverage_records_and_replays_keep_their_keys(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """Issue 12, item 7 (dedup side): every gap report reaches the events topic as a Gap record; a malformed one
    goes to the DLQ; the same raw frames read again (a gatherer's spool re-sending them, a replay under a new app
    id) give the same keys and records, which the sink's unique key absorbs."""
    from schemas.events import Gap

    topics = dedup_topics
    events = venue_events(300, markets=10, seed=17)
    t0 = events[0].t_ns
    gaps = gap_frames(t0)
    bad = RawFrame(
        venue=VENUE, gatherer="g2", conn=1, sid=None, seq=None, recv_ns=t0 + 20_000_000, kind="gap",
        market="KXSYN-00001", event_key="", payload=b'{"kind": "down", "conn": 1}',
    )  # fmt: skip
    for g in ("g1", "g2", "g3"):
        produce(topics, g, gatherer_copies(events, g) + [f for f in gaps if f.gatherer == g])
    produce(topics, "g2", [bad])
    worker = dedup_workers.start(topics, "it-gaps", "w1")
    gap_keys_out = wait_for_gaps(topics, len(gaps), 120)
    assert len(gap_keys_out) == len(gaps), worker.log()[-3000:]

    # the gatherers' spools re-send the same gap frames: same keys, same records (the sink keeps one row each)
    for g in ("g1", "g2", "g3"):
        produce(topics, g, [f for f in gaps if f.gatherer == g])
    assert sum(wait_for_gaps(topics, 2 * len(gaps), 120).values()) == 2 * len(gaps), worker.log()[-3000:]
    assert worker.stop() == 0, worker.log()[-3000:]

    out = topics.events_read()
    gap_records = [e for e in out if isinstance(e, Gap)]
    assert len(out) - len(gap_records) == len(events)
    first: dict[str, Gap] = {}
    for r in gap_records:
        assert r.dedup_ns > 0 and r.raw_ts_ms > 0  # the hop stamps say when this copy passed (schemas.events)
        content = msgspec.structs.replace(r, raw_ts_ms=0, dedup_ns=0)
        assert first.setdefault(r.event_key, content) == content  # a re-sent frame gives the same record
    records = list(first.values())
    assert len(records) == len(gaps) and len(gap_records) == 2 * len(gaps)
    got = {(r.gatherer, r.kind, r.market, r.from_ns, r.to_ns, r.conn, r.missed) for r in records}
    assert got == {
        ("g1", "down", "*", t0, t0 + 4_000_000_000, 1, None),
        ("g2", "down", "*", t0, t0 + 4_000_000_000, 1, None),
        ("g2", "seq", "KXSYN-00002", t0 + 5, t0 + 9, 2, 4),
        ("g3", "rejected", "KXSYN-00003", t0 + 7, t0 + 7, 4, None),
        ("g3", "seq", "KXSYN-00005", t0 + 10_000_004, t0 + 10_000_004, 5, 3),
    }
    assert all(r.ts_ms == r.from_ns // 1_000_000 and r.recv_ns >= t0 + 10_000_000 for r in records)
    letters = [decode_dead_letter(v) for _, _, _, v in topics.read(topics.dlq)]
    assert len(letters) == 1 and "gap report" in letters[0].reason and letters[0].source_topic == topics.raw("g2")
    summary = worker.summary()["gatherers"]
    assert isinstance(summary, dict)
    assert summary["g3"]["gap_kinds"] == {"rejected": 2, "seq": 2} and summary["g2"]["gap_reports"] == 4

    # a replay of the raw topics under a new app id, into another topic: the same records again
    from confluent_kafka.admin import AdminClient, NewTopic

    replayed = topics.prefix + "replayed"
    admin = AdminClient({"bootstrap.servers": topics.bootstrap})
    admin.create_topics([NewTopic(replayed, topics.partitions, 1)])[replayed].result()
    replay = dedup_workers.start(
        topics, "it-gaps-replay", "r1", "--events-topic", replayed, "--exit-when-idle", "--idle-s", "3"
    )
    assert replay.wait(120) == 0, replay.log()[-3000:]
    replay_gaps = [e for e in (decode_event(v) for _, _, _, v in topics.read(replayed)) if isinstance(e, Gap)]
    assert {r.event_key for r in replay_gaps} == {r.event_key for r in records}


def assignments(worker) -> list[tuple[str, list[int]]]:  # type: ignore[no-untyped-def]
    """Every ``partitions_assigned`` of one worker process: (log timestamp, partitions)."""
    found = re.findall(r'^ts=(\S+) .*event=partitions_assigned partitions="?\[([\d, ]*)\]', worker.log(), re.M)
    return [(ts, [int(p) for p in parts.split(",") if p.strip()]) for ts, parts in found]


def wait_assigned(worker, timeout_s: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until the worker process logged an assignment of at least one partition."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if any(parts for _, parts in assignments(worker)):
            return time.monotonic() - started
        assert worker.proc.poll() is None, worker.log()[-3000:]
        time.sleep(0.05)
    raise AssertionError(f"no assignment in {timeout_s}s:\n{worker.log()[-3000:]}")


def wait_settled(workers, partitions: int, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    """Wait until the latest logged assignments of ``workers`` are disjoint and cover every partition."""
    deadline = time.monotonic() + timeout_s
    latest: list[list[int]] = []
    while time.monotonic() < deadline:
        latest = [(assignments(w) or [("", [])])[-1][1] for w in workers]
        owned = [p for parts in latest for p in parts]
        if all(latest) and sorted(owned) == list(range(partitions)):
            return
        time.sleep(0.05)
    raise AssertionError(f"assignments never settled: latest {latest} over {partitions} partitions")


@pytest.mark.parametrize("dedup_workers", ["native"], indirect=True)
def test_rolling_restart_moves_no_partition_and_a_killed_worker_rejoins_at_once(dedup_topics, dedup_workers) -> None:  # type: ignore[no-untyped-def]
    """Issue 13 item 3. Two workers restarted one after the other (SIGTERM, start again): every partition stays
    with its worker and the other worker is not even rebalanced (static membership: a stopped member does not
    leave, its restart gets its partitions back). A
    SIGKILLed worker started again rejoins well within its session timeout (20 s here) instead of waiting it out."""
    topics = dedup_topics
    app_id = topics.app_id("it-roll")
    extra = ("--session-timeout-s", "20")
    workers = {name: dedup_workers.start(topics, "it-roll", name, *extra) for name in ("w1", "w2")}
    assert wait_members(topics, app_id, 2, 90), workers["w1"].log()[-2000:] + workers["w2"].log()[-2000:]
    processes = list(workers.items())  # every process that ever ran, in start order
    for name, other in (("w1", "w2"), ("w2", "w1")):  # the rolling restart
        # the broker calls the group stable a moment before each process has logged its assignment: count the
        # other worker's assignments only once both logged theirs and together they own every partition once
        wait_settled([workers["w1"], workers["w2"]], topics.partitions, 60)
        before = len(assignments(workers[other]))
        assert workers[name].stop() == 0
        workers[name] = dedup_workers.start(topics, "it-roll", name, *extra)
        processes.append((name, workers[name]))
        wait_assigned(workers[name], 60)
        assert wait_members(topics, app_id, 2, 60), workers[name].log()[-3000:]
        time.sleep(1.0)  # a rebalance the restart caused would reach the other worker by now
        again = assignments(workers[other])[before:]
        assert not again, f"restarting {name} rebalanced {other} (it was assigned {again}): its input stopped"
    workers["w1"].kill()
    workers["w1"] = dedup_workers.start(topics, "it-roll", "w1", *extra)
    processes.append(("w1", workers["w1"]))
    rejoin_s = wait_assigned(workers["w1"], 60)
    assert wait_members(topics, app_id, 2, 60)
    timeline = sorted((ts, name, parts) for name, worker in processes for ts, parts in assignments(worker))
    owner: dict[int, str] = {}
    moves: Counter[int] = Counter()
    formed = False
    for _, name, parts in timeline:
        for p in parts:
            if formed and owner.get(p, name) != name:
                moves[p] += 1
            owner[p] = name
        formed = formed or set(owner.values()) == {"w1", "w2"}  # the group's first two-member assignment
    assert sorted(owner) == list(range(topics.partitions))
    assert not moves, f"partitions moved during the rolling restart: {dict(moves)}; timeline {timeline}"
    assert rejoin_s < 8.0, f"a SIGKILLed worker's restart took {rejoin_s:.1f}s to get its partitions back"
    assert all(worker.stop() == 0 for worker in workers.values())
