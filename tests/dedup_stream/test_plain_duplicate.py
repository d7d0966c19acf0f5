"""The C path of ``Deduper.decide_at`` for a later copy whose winner the store's caches hold
(``dedup_stream._plaindup``): against the Python path it accelerates, on the same frames from the same state.

Two deciders read every frame: one with the C path, one without it. After each frame both must have given the same
answer (the shared ``PLAIN_DUPLICATE``, or decisions of the same verdict, frame and winner), and after the stream the
same counters, store and singles state. Streams: the pipeline's mix from three gatherers with jitter and reordering,
copies read again at their own offsets (re-emits), lifecycle copies with alternate and weak keys, ordinals, gap
reports and invalid frames; over the real worker's store with small cache generations (keys leave the caches, so the
database answers) and over the dict store. Then malformed frames: every truncation and thousands of byte changes of
a valid later copy, and one change of each field the C path must refuse.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dedup_stream import logic
from dedup_stream.logic import PLAIN_DUPLICATE, PLAIN_DUPLICATE_C, Deduper, MemoryStore
from dedup_stream.partition_state import PartitionStates
from dedup_stream.synth import gatherer_copies, pipeline_events
from schemas import RawFrame, encode_raw
from venues import default_name

pytestmark = pytest.mark.skipif(PLAIN_DUPLICATE_C is None, reason="dedup_stream._plaindup not built")

GATHERERS = ("g1", "g2", "g3")


def _pair(make_store: Any) -> tuple[Deduper, Deduper]:
    fast, slow = Deduper(make_store("fast")), Deduper(make_store("slow"))
    assert fast._plain_duplicate is PLAIN_DUPLICATE_C
    slow._plain_duplicate = None  # the Python path alone
    return fast, slow


def _same_answer(a: Any, b: Any, where: str) -> None:
    if a is PLAIN_DUPLICATE or b is PLAIN_DUPLICATE:
        assert a is b, where
        return
    assert (a.verdict, a.frame, a.winner, a.weak, a.link, a.error) == (
        b.verdict,
        b.frame,
        b.winner,
        b.weak,
        b.link,
        b.error,
    ), where


def _typed(value: Any) -> Any:
    """``value`` with the type of every number in it (0 and 0.0 are equal, but not the same counter)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _state(d: Deduper) -> Any:
    store: Any = d.store
    data = store.data if isinstance(store, MemoryStore) else [dict(c) for c in store.caches]
    s = d.singles
    return _typed([asdict(d.stats), data, dict(s._waiting), list(s._times), list(s._keys), list(s._gatherers)])


def _stream(seed: int, events: int = 600) -> list[tuple[bytes | None, str, int, int]]:
    """(value, topic, partition, offset) in read order: three gatherers' copies of the pipeline's mix interleaved
    with jitter, every 40th read again at its own offset, and lifecycle copies with alternate keys, weak keys and
    ordinals, gap reports and invalid values among them."""
    rng = random.Random(seed)
    evs = pipeline_events(events, markets=40, seed=seed, t0_ns=1_767_225_600_000_000_000)
    reads: list[tuple[int, bytes | None, str, int, int]] = []
    for g in GATHERERS:
        frames = gatherer_copies(evs, g, seed=seed, jitter_ns=3_000_000, reorder=5, keep=0.97)
        for offset, f in enumerate(frames):
            value = encode_raw(f)
            at = f.recv_ns + rng.randrange(2_000_000)
            reads.append((at, value, f"raw.{g}", hash(f.market) % 3, offset))
    reads.sort(key=lambda r: r[0])
    out: list[tuple[bytes | None, str, int, int]] = []
    for i, (_, value, topic, partition, offset) in enumerate(reads):
        out.append((value, topic, partition, offset))
        if i % 40 == 39:
            out.append((value, topic, partition, offset))  # read again: a re-emit
        if i % 97 == 0:
            out.append((b"\xc1 not a frame", topic, partition, offset + 100_000))
        if i % 53 == 0:
            out.extend(_specials(rng, topic, partition, offset + 200_000))
    return out


def _frame(gatherer: str, key: str, t_ns: int, **fields: Any) -> bytes:
    base: dict[str, Any] = {
        "venue": default_name(),
        "gatherer": gatherer,
        "conn": 1,
        "sid": 1,
        "seq": 1,
        "recv_ns": t_ns,
        "kind": "delta",
        "market": "KXSPECIAL-1",
        "event_key": key,
        "payload": b"{}",
    }
    return encode_raw(RawFrame(**{**base, **fields}))


def _specials(rng: random.Random, topic: str, partition: int, offset: int) -> list[tuple[bytes | None, str, int, int]]:
    """Copies of one event from each gatherer with an ordinal, alternate keys or a weak key; a gap report."""
    n = rng.randrange(1_000_000)
    t = 1_767_225_600_000_000_000 + n
    out: list[tuple[bytes | None, str, int, int]] = []
    for i, g in enumerate(GATHERERS):
        shape = rng.choice(("ordinal", "alt", "weak", "plain"))
        fields: dict[str, Any] = {
            "ordinal": {"ordinal": rng.randrange(1, 4)},
            "alt": {"kind": "lifecycle", "alt_keys": [f"a:{n}:{rng.randrange(2)}"]},
            "weak": {"kind": "lifecycle", "weak_key": f"w:{n}", "event_key": f"l:{n}:{g}"},
            "plain": {},
        }[shape]
        out.append((_frame(g, f"s:{n}", t + i * 1000, **fields), f"raw.{g}", partition, offset + i))
    out.append((_frame("g2", f"gap:{n}", t, kind="gap", payload=b'{"kind":"down","conn":1}'), topic, partition, offset))
    return out


def _run(fast: Deduper, slow: Deduper, reads: list[tuple[bytes | None, str, int, int]]) -> int:
    plain = 0
    for i, (value, topic, partition, offset) in enumerate(reads):
        a = fast.decide_at(value, topic, partition, offset)
        b = slow.decide_at(value, topic, partition, offset)
        _same_answer(a, b, f"read {i}")
        plain += a is PLAIN_DUPLICATE
        if i % 50 == 0:
            for d in (fast, slow):
                flush = getattr(d.store, "flush", None)
                if flush is not None:
                    flush()
    assert _state(fast) == _state(slow)
    return plain


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_c_path_decides_as_the_python_path_over_the_workers_store(tmp_path: Path, seed: int) -> None:
    stores: list[PartitionStates] = []

    def make(name: str) -> PartitionStates:
        states = PartitionStates(tmp_path / name, 3600, lambda p, records: None, cache_keys=150)
        for p in range(3):
            states.open(p)
        stores.append(states)
        return states

    fast, slow = _pair(make)
    try:
        plain = _run(fast, slow, _stream(seed))
        assert plain > 600  # most later copies took the C path (a key that left the caches: the database answers)
    finally:
        for s in stores:
            s.close_all()


@pytest.mark.parametrize("seed", [4, 5])
def test_the_c_path_decides_as_the_python_path_over_the_dict_store(seed: int) -> None:
    fast, slow = _pair(lambda name: MemoryStore())
    assert _run(fast, slow, _stream(seed)) > 600


def _primed(winner_ns: int = 1_000_000_000) -> tuple[Deduper, bytes]:
    """A decider that has the winner of one event (g1's copy, received at ``winner_ns``), and g2's later copy of it
    (3 ms later)."""
    d = Deduper(MemoryStore())
    d.decide_at(_frame("g1", "d:1", winner_ns), "raw.g1", 0, 7)
    d.decide_at(_frame("g2", "other", winner_ns), "raw.g2", 0, 1)  # g2 known to the stats
    return d, _frame("g2", "d:1", winner_ns + 3_000_000)


def _check_refused_or_same(value: bytes, winner_ns: int = 1_000_000_000) -> bool:
    """Decide ``value`` as g2's copy with and without the C path from the same primed state: the same answer and
    state; and when the C function refused it, it changed nothing. True when the C function took it."""
    fast, _ = _primed(winner_ns)
    slow, _ = _primed(winner_ns)
    slow._plain_duplicate = None
    before = copy.deepcopy(_state(fast))
    took = PLAIN_DUPLICATE_C(value, "raw.g2", 0, 9, fast._caches, fast.stats, fast.singles._waiting)  # type: ignore[misc]
    if not took:
        assert _state(fast) == before
        a = fast.decide_at(value, "raw.g2", 0, 9)
    else:
        a = PLAIN_DUPLICATE
    b = slow.decide_at(value, "raw.g2", 0, 9)
    _same_answer(a, b, repr(value))
    assert _state(fast) == _state(slow), repr(value)
    return bool(took)


def test_a_valid_later_copy_is_taken_and_every_truncation_refused() -> None:
    _, value = _primed()
    assert _check_refused_or_same(value)
    for cut in range(len(value)):
        assert not _check_refused_or_same(value[:cut])
    assert not _check_refused_or_same(value + b"\x00")  # something after the frame


def test_byte_changes_of_a_later_copy_are_taken_only_when_the_python_path_would_say_the_same() -> None:
    rng = random.Random(11)
    _, value = _primed()
    taken = 0
    for _ in range(3000):
        data = bytearray(value)
        for _ in range(rng.choice((1, 1, 2, 3))):
            data[rng.randrange(len(data))] = rng.randrange(256)
        taken += _check_refused_or_same(bytes(data))
    assert taken > 100  # changes inside the payload or the values keep it a plain later copy


def test_each_field_the_c_path_must_refuse_is_refused() -> None:
    _, value = _primed()
    raw = msgspec.msgpack.decode(value)
    changes: dict[str, tuple[int, Any]] = {
        "schema version 2": (0, 2),
        "venue not a str": (1, 5),
        "gatherer not a str": (2, b"g2"),
        "conn nil": (3, None),
        "sid a str": (4, "1"),
        "recv_ns a float": (6, 1.003e9),
        "recv_ns beyond int64": (6, 2**63),
        "a gap report": (7, "gap"),
        "an unknown kind": (7, "bogus"),
        "market nil": (8, None),
        "payload a str": (10, "{}"),
        "venue_ms a str": (11, "1"),
        "after_keys holding an int": (12, [1]),
        "alternate keys": (13, ["x"]),
        "a weak key": (14, "w"),
        "weak_refs a str": (15, "x"),
        "weak_sub an int": (16, 0),
        "an ordinal": (17, 1),
        "a negative ordinal": (17, -1),
    }
    for name, (index, new) in changes.items():
        changed = list(raw)
        changed[index] = new
        assert not _check_refused_or_same(msgspec.msgpack.encode(changed)), name
    assert not _check_refused_or_same(msgspec.msgpack.encode(raw[:-1])), "17 elements"
    assert not _check_refused_or_same(msgspec.msgpack.encode([*raw, 0])), "19 elements"
    bad_utf8 = value.replace(b"KXSPECIAL-1", b"KXSPECIAL-\xed", 1)  # a truncated sequence in the market
    assert not _check_refused_or_same(bad_utf8)
    surrogate = value.replace(b"d:1", b"\xed\xa0\x80", 1)  # an encoded surrogate in the event key
    assert not _check_refused_or_same(surrogate)


def test_winners_it_cannot_read_and_gatherers_it_does_not_know_go_to_the_python_path() -> None:
    d, value = _primed()
    key = b"KXSPECIAL-1\x1fd:1"
    winner = d.store.get(key, 0)
    assert winner is not None
    for stored in (b"\x94" + winner[1:], winner + b"\x00", b"\xc1"):  # 4 elements, trailing byte, not msgpack
        d.store.put(key, stored, 0)
        assert not PLAIN_DUPLICATE_C(value, "raw.g2", 0, 9, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]
    d.store.put(key, winner, 0)
    stranger = value.replace(b"\xa2g2", b"\xa2g9", 1)
    assert not PLAIN_DUPLICATE_C(stranger, "raw.g9", 0, 9, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]
    # the winner's own origin read again is a re-emit, decided in Python
    own = _frame("g1", "d:1", 1_000_000_000)
    assert not PLAIN_DUPLICATE_C(own, "raw.g1", 0, 7, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]
    assert PLAIN_DUPLICATE_C(value, "raw.g2", 0, 9, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]


def test_the_c_path_is_used_only_where_a_store_has_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    class Plain:
        def __init__(self) -> None:
            self.data: dict[bytes, bytes] = {}

        def get(self, key: bytes, partition: int) -> bytes | None:
            return self.data.get(key)

        def put(self, key: bytes, value: bytes, partition: int) -> None:
            self.data[key] = value

    assert Deduper(Plain())._plain_duplicate is None
    monkeypatch.setattr(logic, "PLAIN_DUPLICATE_C", None)
    assert Deduper(MemoryStore())._plain_duplicate is None


def _pack(value: Any, rng: random.Random) -> bytes:
    """msgpack of ``value`` with each int, str, bin and array header in a form drawn at random among those that can
    hold it (msgspec writes the shortest; a decoder must read them all)."""
    if value is None:
        return b"\xc0"
    if value is True or value is False:
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        forms = []
        if 0 <= value <= 0x7F:
            forms.append(bytes([value]))
        if -32 <= value < 0:
            forms.append(bytes([value & 0xFF]))
        for tag, width, lo, hi in (
            (0xCC, 1, 0, 2**8 - 1), (0xCD, 2, 0, 2**16 - 1), (0xCE, 4, 0, 2**32 - 1), (0xCF, 8, 0, 2**64 - 1),
            (0xD0, 1, -(2**7), 2**7 - 1), (0xD1, 2, -(2**15), 2**15 - 1), (0xD2, 4, -(2**31), 2**31 - 1),
            (0xD3, 8, -(2**63), 2**63 - 1),
        ):  # fmt: skip
            if lo <= value <= hi:
                forms.append(bytes([tag]) + value.to_bytes(width, "big", signed=lo < 0))
        return rng.choice(forms)
    if isinstance(value, str | bytes):
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        n = len(data)
        if isinstance(value, bytes):
            forms = [bytes([tag]) + n.to_bytes(w, "big") for tag, w in ((0xC4, 1), (0xC5, 2), (0xC6, 4)) if n < 256**w]
        else:
            forms = [bytes([0xA0 | n])] if n < 32 else []
            forms += [bytes([tag]) + n.to_bytes(w, "big") for tag, w in ((0xD9, 1), (0xDA, 2), (0xDB, 4)) if n < 256**w]
        return rng.choice(forms) + data
    assert isinstance(value, list)
    n = len(value)
    forms = ([bytes([0x90 | n])] if n < 16 else []) + [b"\xdc" + n.to_bytes(2, "big"), b"\xdd" + n.to_bytes(4, "big")]
    return rng.choice(forms) + b"".join(_pack(v, rng) for v in value)


def test_every_encoding_of_every_field_is_read_as_the_python_path_reads_it() -> None:
    """Later copies whose fields take every value shape the schema allows, and some it does not (negative ints, nil
    or a bool where an int goes, string lists with and without text that is not UTF-8), each field encoded in a form
    drawn at random: taken or refused, the same answer and state as the Python path's."""
    rng = random.Random(5)
    _, value = _primed()
    base = msgspec.msgpack.decode(value)
    ints = [0, 1, -1, -33, 127, 128, -129, 2**15, -(2**31), 2**40, -(2**62), 2**63 - 1]
    choices: dict[int, list[Any]] = {
        3: ints,  # conn
        4: [None, *ints, False, True],  # sid
        5: [None, *ints, False],  # seq
        6: [base[6], base[6] + 1, base[6] - 5_000_000_000, 0, -1, 2**62],  # recv_ns
        11: [None, *ints, True],  # venue_ms
        12: [[], ["a"], ["k1", "k2", "ü"], ["\udc80"], [1]],  # after_keys
        15: [[], ["r"], ["\ud800"], [None]],  # weak_refs
        16: ["", "s", "\ud800", 0],  # weak_sub
    }
    taken = 0
    for _ in range(4000):
        fields = list(base)
        for index, values in choices.items():
            if rng.random() < 0.5:
                fields[index] = rng.choice(values)
        data = b"\xdc\x00\x12" + b"".join(_pack(f, rng) for f in fields)  # the gatherers' array16 header
        taken += _check_refused_or_same(data)
    assert taken > 1000


def test_no_reference_is_left_behind() -> None:
    """Each call allocates the key and a few numbers: none may outlive it (taken, refused, or refused late)."""
    import gc
    import tracemalloc

    d, value = _primed()
    own = _frame("g1", "d:1", 1_000_000_000)  # refused after the key was built: the winner read again
    args = [(value, "raw.g2", 0, 9), (own, "raw.g1", 0, 7), (value[:-1], "raw.g2", 0, 9)]
    for frame_args in args:
        for _ in range(100):  # warm: interned objects, free lists
            PLAIN_DUPLICATE_C(*frame_args, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(20_000):
            PLAIN_DUPLICATE_C(*frame_args, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]
        gc.collect()
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
        tracemalloc.stop()
        assert grown < 20_000, (frame_args[1:], grown)  # a leaked 40-byte key each call would be ~1 MB


def test_small_and_negative_receive_times_in_every_int_form() -> None:
    """Receive times near 0 (a clock that was never set) in every form an int of that size takes, the winner's and
    the copy's: the lag the C path computes is the Python path's."""
    rng = random.Random(9)
    for winner_ns in (-100, -1, 0, 5, -(2**31), 2**31):
        _, value = _primed(winner_ns)
        base = msgspec.msgpack.decode(value)
        for copy_ns in (winner_ns - 200, winner_ns - 1, winner_ns + 1, winner_ns + 130, -33, 0, 200):
            fields = [*base[:6], copy_ns, *base[7:]]
            for _ in range(6):
                data = b"\xdc\x00\x12" + b"".join(_pack(f, rng) for f in fields)
                assert _check_refused_or_same(data, winner_ns)


def test_a_dict_store_replaced_whole_is_the_one_the_c_path_reads() -> None:
    d, value = _primed()
    store: Any = d.store
    old = store.data
    store.data = dict(old)  # a test store that restores by replacing its dict (tests/dedup_stream/test_logic.py)
    old.clear()  # the dict replaced no longer holds the winner: only the new one does
    assert PLAIN_DUPLICATE_C(value, "raw.g2", 0, 9, d._caches, d.stats, d.singles._waiting)  # type: ignore[misc]
