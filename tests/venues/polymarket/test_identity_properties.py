"""Property tests of Polymarket event identity (venues.polymarket.keys) over generated venue streams and gatherers.

The venue publishes a stream of price_change entries and last_trade_price messages on two tokens, with many in one
venue millisecond, levels changed several times per millisecond and identical trades. Each gatherer subscribed at
some point, lost some messages, and spells numbers its own way (the venue's spelling is not part of the identity:
``".5"``, ``"0.50"``, a JSON number). The claims of the keys module:

1. two distinct venue messages never share a reference key (the key a gatherer that received everything derives);
2. a copy gets its message's reference key whenever the gatherer received every earlier message of the same counter
   (identical body in the same ms: same level and same new size for a price_change, same trade body for a trade),
   whatever else it lost (another size of the same level included);
3. otherwise its key is the reference key of an earlier message that did the SAME thing (same level and same new
   size, or an identical trade body, same ms) -- a merge of identical operations -- and NEVER a key no message has
   (such a key is a second row of its message);
4. a change's ordinal is its level's count in the ms: exact when the gatherer received every earlier change of the
   level in that ms, otherwise lower by the ones it did not.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from venues.polymarket import wire
from venues.polymarket.keys import PolymarketKeyer
from venues.polymarket.normalise import change_payload


@dataclass(frozen=True)
class Msg:
    kind: str  # "change" | "trade"
    asset: str
    ts: int
    side: str
    price: Decimal
    size: Decimal

    def counter(self) -> tuple[Any, ...]:
        """What the occurrence number of the key counts: identical bodies in one ms."""
        return (self.kind, self.asset, self.ts, self.side, self.price, self.size)

    def level(self) -> tuple[Any, ...]:
        """What a change's ordinal counts: the level's changes in one ms."""
        return (self.asset, self.ts, self.side, self.price)

    def same_operation(self, other: Msg) -> bool:
        return self.counter() == other.counter() and self.size == other.size


def spell(value: Decimal, style: int) -> Any:
    if style == 0:
        return str(value)
    if style == 1:
        text = f"{value:.4f}"
        return text[1:] if text.startswith("0.") else text  # ".5000"
    return float(value) if value == value.quantize(Decimal("0.01")) else str(value)  # a JSON number


def encode(m: Msg, style: int) -> tuple[str, bytes]:
    if m.kind == "change":
        entry = {"asset_id": m.asset, "price": spell(m.price, style), "size": spell(m.size, style), "side": m.side}
        return "price_change", change_payload("0xc", m.ts, json.dumps(entry).encode())
    body = {
        "event_type": "last_trade_price", "asset_id": m.asset, "market": "0xc", "price": spell(m.price, style),
        "size": spell(m.size, style), "side": m.side, "fee_rate_bps": "0", "timestamp": str(m.ts),
    }  # fmt: skip
    return "last_trade_price", json.dumps(body).encode()


def keyed(keyer: PolymarketKeyer, m: Msg, style: int) -> tuple[str, int]:
    """(key, ordinal); a trade's ordinal is 0."""
    event_type, payload = encode(m, style)
    decoded = wire.decode(event_type, payload)
    if event_type == "price_change":
        return keyer.change(decoded.timestamp, decoded.price_changes[0])
    return keyer.trade(decoded), 0


def key_of(keyer: PolymarketKeyer, m: Msg, style: int) -> str:
    return keyed(keyer, m, style)[0]


@st.composite
def venue_streams(draw: Any) -> list[Msg]:
    n = draw(st.integers(1, 70))
    ts = 1_767_225_600_000
    out = []
    for _ in range(n):
        ts += draw(st.sampled_from([0, 0, 0, 1, 40, 20_000]))
        out.append(
            Msg(
                draw(st.sampled_from(["change", "change", "trade"])),
                draw(st.sampled_from(["111", "222"])),
                ts,
                draw(st.sampled_from(["BUY", "SELL"])),
                draw(st.sampled_from([Decimal("0.5"), Decimal("0.52")])),
                draw(st.sampled_from([Decimal(0), Decimal(10), Decimal("12.5")])),
            )
        )
    return out


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_keys_agree_across_gatherers_and_never_merge_different_operations(data: Any) -> None:
    stream = data.draw(venue_streams())
    reference = PolymarketKeyer()
    ref = [keyed(reference, m, 0) for m in stream]
    assert len(ref) == len({k for k, _ in ref}), "two distinct venue messages share a reference key"
    owner = {k: i for i, (k, _) in enumerate(ref)}
    for _ in range(3):  # three gatherers
        start = data.draw(st.integers(0, len(stream)))
        lost = set(data.draw(st.lists(st.integers(0, max(0, len(stream) - 1)), max_size=len(stream) // 3)))
        style = data.draw(st.integers(0, 2))
        keyer = PolymarketKeyer()
        missed: Counter[tuple[Any, ...]] = Counter()  # messages this gatherer did not get, by counter and by level
        for i, m in enumerate(stream):
            if i < start or i in lost:
                missed[m.counter()] += 1
                if m.kind == "change":
                    missed[m.level()] += 1
                continue
            key, ordinal = keyed(keyer, m, style)
            if not missed[m.counter()]:
                assert key == ref[i][0], f"message {i}: a copy that missed no identical body got another key"
            assert key in owner, f"message {i}: a key no venue message has (a second row)"
            j = owner[key]
            assert j <= i and stream[j].same_operation(m), f"message {i} took the key of {j}: {stream[j]}"
            if m.kind == "change":
                assert ordinal == ref[i][1] - missed[m.level()]


def test_the_generator_reaches_the_interesting_cases() -> None:
    """Same level changed three times in one ms (sizes 10, 0, 10), identical trades, and a late subscriber: its copies
    of b and c get b's key and a's (a merge of two equal operations), never a key nobody has; ordinals count the
    level's changes it saw."""
    ts = 1_767_225_600_000
    a = Msg("change", "111", ts, "BUY", Decimal("0.5"), Decimal(10))
    b = Msg("change", "111", ts, "BUY", Decimal("0.5"), Decimal(0))
    c = Msg("change", "111", ts, "BUY", Decimal("0.5"), Decimal(10))
    t = Msg("trade", "111", ts, "BUY", Decimal("0.5"), Decimal(10))
    full = PolymarketKeyer()
    got = [keyed(full, m, 0) for m in (a, b, c, t, t)]
    keys = [k for k, _ in got]
    assert len(set(keys)) == 5 and keys[2].endswith(":2") and keys[4].endswith(":2")
    assert [o for _, o in got] == [1, 2, 3, 0, 0]
    late = PolymarketKeyer()  # subscribed after a
    assert keyed(late, b, 1) == (keys[1], 1)
    assert keyed(late, c, 2) == (keys[0], 2)  # c as the late one counts it: the first size-10 change, a's key


def test_a_copy_older_than_the_horizon_gets_a_key_no_first_copy_has() -> None:
    keyer = PolymarketKeyer(horizon_ms=1_000)
    m = Msg("trade", "111", 1_000_000, "BUY", Decimal("0.5"), Decimal(1))
    key_of(keyer, Msg("trade", "111", 1_010_000, "BUY", Decimal("0.5"), Decimal(1)), 0)
    assert key_of(keyer, m, 0).endswith(":0") and keyer.late == 1


def test_books_merge_only_when_they_show_the_same_state_at_the_same_time() -> None:
    def book(ts: int, bid: str, style: str = "0.") -> bytes:
        return json.dumps(
            {"asset_id": "111", "timestamp": str(ts), "bids": [{"price": f"{style}48", "size": bid}], "asks": [],
             "hash": f"h{style}"}
        ).encode()  # fmt: skip

    k = PolymarketKeyer.book
    assert k(wire.decode("book", book(5, "30"))) == k(wire.decode("book", book(5, "30.00", ".")))  # spelling, hash
    assert k(wire.decode("book", book(5, "30"))) != k(wire.decode("book", book(6, "30")))
    assert k(wire.decode("book", book(5, "30"))) != k(wire.decode("book", book(5, "31")))
