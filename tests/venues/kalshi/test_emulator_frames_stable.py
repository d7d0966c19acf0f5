"""The emulator's Kalshi output is byte-for-byte what it was before the protocol moved into ``venues/kalshi/``.

One seeded, scripted run (no sockets, no clock): every generated event, every WebSocket message of three sessions
(subscriptions with and without ``use_yes_price``, updates, snapshots, errors, and the drop, redeliver, freeze and
overflow faults on the slow path), every fact, every REST body (listings, filters, look-ups, order books, errors,
a failed page), the venue record and the rendered book checkpoints, hashed in order. The digests were taken from
the emulator of commit 4200c7d (venue_sim/protocol.py and venue_sim's own REST, before the move), once without and
once with a record. A deliberate change of the wire updates them and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mdpipe.config import SimConfig
from venue_sim.app import SimOptions, VenueSim
from venue_sim.record import Record

DIGESTS = {  # recording: (items hashed, records, sha256)
    False: (41970, 0, "b55a7bc0737ca37173916d8272b2c4aaf6b568fa286eb6ec54b5287f8bc27448"),
    True: (42070, 100, "79858a8b70dbc04a325f8788e2c0dfa45131802eb9dd718c4d0cc9a927f8597b"),
}


class ListSink:
    def __init__(self) -> None:
        self.items: list[Record] = []

    def write(self, record: Record) -> None:
        self.items.append(record)


def scripted_run(truth_path: str) -> tuple[int, int, str]:
    cfg = SimConfig(
        markets=60, seed=11, rate=2000.0, port=0, auth=False, truth_path=truth_path, churn_per_s=5.0,
        identical_share=0.1, pause_per_s=3.0, metadata_per_s=2.0, unknown_lifecycle_per_s=1.0, fee_update_per_s=1.0,
        event_lifecycle=True, activate_after_s=0.2, dormant_share=0.1, rest_lag_s=0.5, sub_cap=0,
    )  # fmt: skip
    sim = VenueSim(cfg, SimOptions(base_ts_ms=1_700_000_000_000))
    h = hashlib.sha256()
    count = 0
    recs = ListSink()
    if sim.recorder is not None:
        sim.recorder.sink = recs
        sim.recorder._clock_ns = lambda: 42

    def put(tag: str, data: str | bytes) -> None:
        nonlocal count
        raw = data.encode() if isinstance(data, str) else data
        h.update(tag.encode() + b"\0" + raw + b"\n")
        count += 1

    factory = sim.server.session_factory
    s1, s2, s3 = factory(1), factory(2), factory(3)
    sessions = [s1, s2, s3]
    t = [sim.markets.ticker(i) for i in range(60)]

    def cmd(s: Any, cid: int, name: str, **params: Any) -> None:
        s.receive_text(json.dumps({"id": cid, "cmd": name, "params": params}))

    all_channels = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"]
    cmd(s1, 1, "subscribe", channels=all_channels, market_tickers=t[:30])
    cmd(
        s2,
        1,
        "subscribe",
        channels=["orderbook_delta"],
        market_tickers=t[::3],
        use_yes_price=True,
        skip_ticker_ack=True,
    )
    cmd(s2, 2, "subscribe", channels=["ticker", "trade"])
    cmd(s3, 1, "subscribe", channels=["orderbook_delta", "ticker"], market_tickers=t[5:15])
    for bad in (
        "nope",
        "[1]",
        '{"id":3,"cmd":"subscribe","params":{"channels":["x"]}}',
        '{"id":4,"cmd":"subscribe","params":{"channels":["orderbook_delta"]}}',
        '{"id":5,"cmd":"zz","params":{}}',
    ):
        s3.receive_text(bad)
    gen = sim.generator
    for step in range(40):
        events = gen.generate(500)
        if step == 5:
            cmd(s1, 10, "update_subscription", sid=1, action="add_markets", market_tickers=t[30:45])
            cmd(s1, 11, "update_subscription", sids=[1], action="delete_markets", market_tickers=t[0:5])
            cmd(s1, 12, "update_subscription", sid=1, action="get_snapshot", market_tickers=t[10:12])
            cmd(s1, 13, "list_subscriptions")
            cmd(s2, 14, "unsubscribe", sids=[3, 99])
        fault = {7: ("drop_next", 7), 9: ("redeliver_next", 5), 12: ("frozen", True), 13: ("frozen", False)}
        fault |= {15: ("overflowing", True), 16: ("overflowing", False)}
        if step in fault:
            setattr(s3, *fault[step])
            s3.update_flags()
        if step == 20:
            out: list[Any] = []
            for variant in ("exp", "nan", "digits", "negative"):
                gen.bad_delta(out, variant)
            gen.create_market(out)
            gen.settle_market(3, out, "yes")
            for action in ("deactivate", "activate", "metadata", "metadata_legacy", "unknown", "fee_set", "fee_clear"):
                gen.lifecycle_now(out, action, 7)
            events = events + out
        for ev in events:
            put("ev", f"{ev[0]}|{ev[1]}|{ev[2]}|{ev[3]}|{ev[4]}|{ev[5]}")
        for s in sessions:
            s.deliver(events)
            for text in s.data_to_send():
                put(f"ws{s.conn_id}", text)
        for fact in gen.facts:
            put("fact", repr(fact))
        gen.facts.clear()
    server = sim.server
    base = sim.profile.rest_base
    requests: list[tuple[str, dict[str, str]]] = [
        ("/markets", {}),
        ("/markets", {"limit": "7", "status": "open"}),
        ("/markets", {"limit": "5", "cursor": "20"}),
        ("/markets", {"status": "settled"}),
        ("/markets", {"status": "paused"}),
        ("/markets", {"status": "unopened"}),
        ("/markets", {"status": "closed"}),
        ("/markets", {"tickers": ",".join([*t[:4], "X"])}),
        ("/markets", {"status": "bogus"}),
        ("/markets", {"limit": "5000"}),
        ("/markets/orderbooks", {"tickers": ",".join(t[:3])}),
        ("/markets/orderbooks", {}),
        (f"/markets/{t[4]}/orderbook", {}),
        (f"/markets/{t[4]}/orderbook", {"depth": "2"}),
        ("/markets/NOPE/orderbook", {}),
        ("/nothing", {}),
    ]
    for path, query in requests:
        r = server._rest("c", base + path, query)
        headers = sorted((k, v) for k, v in r.headers.raw_items() if k != "Date")
        put("rest", f"{r.status_code}|{headers}|".encode() + r.body)
    server.fail_pages = 1
    for _ in range(2):
        r = server._rest("c", base + "/markets", {"cursor": "10"})
        put("rest", str(r.status_code).encode() + r.body)
    gen.final_checkpoint()
    for fact in gen.facts:
        if fact[0] == "book":
            at, after, markets, slots = fact[1]  # type: ignore[misc]
            put("ckpt", f"{at}|{after}|{list(markets)}|{list(slots)}")
    sim._checkpoints.clear()
    rendered = ListSink()
    sim.record = rendered  # type: ignore[assignment]
    gen.facts.clear()
    gen.final_checkpoint()
    sim._drain_facts()
    sim._render_checkpoints(all_of_them=True)
    for record in rendered.items:
        put("bc", repr(record))
    for s in sessions:
        s.end(gen.next_id - 1)
    for record in recs.items:
        put("rec", repr(record))
    return count, len(recs.items), h.hexdigest()


@pytest.mark.parametrize("recording", [False, True], ids=["no-record", "record"])
def test_a_seeded_run_sends_the_same_bytes_as_before_the_move(recording: bool, tmp_path: Path) -> None:
    truth = str(tmp_path / "t.truth") if recording else ""
    assert scripted_run(truth) == DIGESTS[recording]
