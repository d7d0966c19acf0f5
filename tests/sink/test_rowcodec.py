"""The C row builder (sink._rowcodec) against the Python one (sink.rows): same rows, skips and dead letters.

The C builder may hand any record to the Python path, but whatever it builds itself must be byte-for-byte
what Python builds; these tests compare the two on every record shape, on decimal spellings at the edges, and
on seeded random corruptions of real records.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import msgspec
import pytest

from bench.sink.data import make_events
from mdpipe.config import SinkConfig
from schemas import encode_event
from schemas.events import Gap, Lifecycle
from sink import rowcodec
from sink.batch import build_rows
from sink.records import RecDelta, RecLifecycle, RecSnapshot, RecTicker, RecTrade
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

fast = rowcodec.fast_build()
needs_c = pytest.mark.skipif(fast is None, reason="sink._rowcodec was not built (no C compiler at install)")


def both(payloads: list[bytes], from_ms: int | None = None, to_ms: int | None = None) -> tuple[object, object]:
    """(C-with-fallback outcome, pure-Python outcome): (rows per table, dead letters, skipped)."""
    c_rows: dict[str, list[bytes]] = {}
    py_rows: dict[str, list[bytes]] = {}
    c_dead, c_skipped = build_rows(payloads, from_ms, to_ms, c_rows, fast=fast)
    py_dead, py_skipped = build_rows(payloads, from_ms, to_ms, py_rows)
    return (c_rows, c_dead, c_skipped), (py_rows, py_dead, py_skipped)


def c_handled(payloads: list[bytes]) -> int:
    """How many of ``payloads`` the C builder takes itself (the others go to the Python path)."""
    assert fast is not None
    i = stops = 0
    while i < len(payloads):
        i, _ = fast(payloads, i, {}, 1, None, None)
        if i < len(payloads):
            stops += 1
            i += 1
    return len(payloads) - stops


def test_built_where_a_compiler_exists() -> None:
    if shutil.which("cc") or shutil.which("gcc"):
        assert rowcodec.ACCELERATED, "a C compiler is installed but sink._rowcodec was not built: rerun make setup"


@needs_c
def test_every_event_type_same_bytes() -> None:
    payloads = [encode_event(e) for e in make_events(5000, markets=50, seed=11)]
    c_out, py_out = both(payloads)
    assert c_out == py_out
    rows, dead, _ = c_out
    assert not dead and sum(len(r) for r in rows.values()) == 5000
    # everything but lifecycle events and gap reports (left to Python) is built in C
    assert c_handled(payloads) == 5000 - len(rows["market_lifecycle"]) - len(rows["coverage_gaps"])


@needs_c
def test_time_range_same_skips() -> None:
    events = make_events(2000, seed=12)
    payloads = [encode_event(e) for e in events]
    lo, hi = events[300].ts_ms, events[1500].ts_ms
    c_out, py_out = both(payloads, lo, hi)
    assert c_out == py_out
    assert c_out[2] == 2000 - 1200


def _delta(price: str, delta: str = "1", **kw: object) -> bytes:
    fields: dict[str, object] = {
        "venue": VENUE,
        "market": "KXM-1",
        "event_key": "d:1:1",
        "ts_ms": 1_767_225_600_000,
        "recv_ns": 1_767_225_600_000_123_456,
        "gatherer": "g1",
        "market_id": "m-1",
        "side": "yes",
        "price": price,
        "delta": delta,
    }
    fields.update(kw)
    return msgspec.msgpack.encode(RecDelta(**fields))  # type: ignore[arg-type]


SPELLINGS = [
    "0", "-0", "+0", "0.0000", "-0.0000", "+1", "1", "-1", ".5", "5.", "-.5", "0.5600", "0.0001", "-0.0001",
    "9999", "10000", "10000.0001", "99999999.9999", "123456789.12345", "00010.50", "0000", "1.00000",
    "0.00001234", "1234.5678", "12345678", "100000000", "-12345.6", "3" * 64, "4" * 65, "0." + "7" * 64,
    "1e3", "1E+3", "NaN", "Infinity", "", "-", "+", ".", "1.2.3", " 1", "1 ", "--1", "+-1", "\u0661", "1_000", "0x10",
]  # fmt: skip


@needs_c
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_decimal_spellings(spelling: str) -> None:
    payloads = [_delta(spelling), _delta("0.5", spelling), _delta("0.41")]
    c_out, py_out = both(payloads)
    assert c_out == py_out


@needs_c
def test_decimal_digit_groups_random() -> None:
    rng = random.Random(5)
    spellings = []
    for _ in range(3000):
        sign = rng.choice(("", "", "-", "+"))
        int_part = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 20)))
        frac = "".join(rng.choice("0000123456789") for _ in range(rng.randint(0, 20)))
        spellings.append(sign + int_part + (("." + frac) if frac or rng.random() < 0.2 else ""))
    c_out, py_out = both([_delta(s) for s in spellings])
    assert c_out == py_out


@needs_c
def test_odd_values_same_outcome() -> None:
    base = {
        "venue": VENUE, "market": "KXM-1", "event_key": "k", "ts_ms": 1_767_225_600_000,
        "recv_ns": 1_767_225_600_000_000_000, "gatherer": "g1",
    }  # fmt: skip
    records: list[object] = [
        RecDelta(**{**base, "market": "KXM-é"}, side="yes", price="0.5", delta="1"),  # non-ASCII: Python path
        RecDelta(**{**base, "venue": "vé"}, side="yes", price="0.5", delta="1"),  # non-ASCII venue: Python path
        RecDelta(**{**base, "venue": ""}, side="yes", price="0.5", delta="1"),
        RecTrade(**{**base, "venue": "v" * 300}, trade_id="t-0", yes_price="0.4", no_price="0.6", count="1"),
        RecDelta(**{**base, "recv_ns": -1_234_567}, side="no", price="0.5", delta="1"),  # floor division
        RecDelta(**{**base, "ts_ms": 2**62}, side="no", price="0.5", delta="1"),  # overflows the timestamp
        RecDelta(**{**base, "ts_ms": -(2**62)}, side="no", price="0.5", delta="1"),
        RecDelta(**{**base, "v": 2}, side="no", price="0.5", delta="1"),  # unsupported version
        RecTicker(**base, market_id="m", price="0.5", volume="12.5", dollar_volume=2**63 - 1),
        RecTicker(**base, market_id="m", dollar_open_interest=-(2**63)),
        RecTicker(**base),
        RecTrade(**base, trade_id="t-1", yes_price="0.4", no_price="0.6", count="10.25", is_block_trade=True),
        RecTrade(**base, trade_id="t-2", yes_price="0.4", no_price="0.6", count="1", taker_side="yes"),
        RecSnapshot(**base, market_id="m", yes=[("0.01", "100.5"), ("0.02", "3")], no=[]),
        RecSnapshot(**base, market_id="m", yes=[], no=[("0.99", "NaN")]),
        RecSnapshot(**base),
        RecLifecycle(**base, event_type="created", open_ts=1_767_225_600, details='{"a": 1}'),
        RecLifecycle(**base, event_type="settled", result="yes", settlement_value="1", is_deactivated=True),
    ]
    payloads = [msgspec.msgpack.encode(r) for r in records]
    u64_volume = ["ticker", 1, VENUE, "M", "k", 1, 2, "g", "m", *[None] * 8, 2**64 - 1, None]
    payloads.append(msgspec.msgpack.encode(u64_volume))
    payloads.append(_delta("0.5") + b"\x00")  # trailing byte
    payloads.append(b"")
    c_out, py_out = both(payloads)
    assert c_out == py_out
    assert len(c_out[1]) >= 5  # overflow, version, bad NaN level, u64 volume, trailing byte, empty...


@needs_c
def test_random_corruptions_same_outcome() -> None:
    rng = random.Random(7)
    good = [encode_event(e) for e in make_events(400, markets=20, seed=13)]
    mutated = []
    for _ in range(20_000):
        data = bytearray(rng.choice(good))
        kind = rng.random()
        if kind < 0.3:  # any byte
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.6:  # a printable ASCII byte: mostly still a valid record, with odd strings and digits
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.choice(b"0123456789.-+eE aZ:")
        elif kind < 0.8:
            del data[rng.randrange(len(data)) :]
        else:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        mutated.append(bytes(data))
    c_out, py_out = both(mutated)
    assert c_out == py_out
    assert c_out[1], "the corruptions should produce dead letters"
    assert c_handled(mutated) > 4000, "many corruptions (in strings, digits) still decode: C must build those"


def test_row_codec_setting() -> None:
    assert SinkConfig(row_codec="python").row_codec == "python"
    assert rowcodec.resolve("python") is None
    assert rowcodec.resolve("auto") is rowcodec.fast_build()


def test_row_codec_c_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowcodec, "_rowcodec", None)
    assert SinkConfig(row_codec="c").row_codec == "c"  # the configuration knows nothing of what the install built
    with pytest.raises(ValueError, match=r"^row_codec: "):
        rowcodec.resolve("c")
    assert rowcodec.resolve("auto") is None


def test_the_sink_refuses_row_codec_c_without_the_builder_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The check moved from the configuration (which imported the sink) to the sink's start-up: still one line
    naming the setting, exit status 2, before the sink touches the broker or the database."""
    from mdpipe.cli import main

    monkeypatch.setattr(rowcodec, "_rowcodec", None)
    config = tmp_path / "mdpipe.toml"
    config.write_text(
        '[sink]\nrow_codec = "c"\n[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
        '[postgres]\ndsn = "postgresql://nobody@127.0.0.1:1/none"\n'
    )
    assert main(["--config", str(config), "sink"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sink.row_codec" in err[0] and "compiled" in err[0], err


@needs_c
@pytest.mark.parametrize("bounds", [(None, 2**63), (-(2**63) - 1, None), (0.0, None), (None, 10**30)])
def test_bounds_outside_int64_take_the_python_path(bounds: tuple[object, object]) -> None:
    payloads = [encode_event(e) for e in make_events(50, seed=14)]
    c_out, py_out = both(payloads, *bounds)  # type: ignore[arg-type]
    assert c_out == py_out


@needs_c
def test_huge_exponent_is_a_dead_letter_not_a_stall() -> None:
    payloads = [_delta("1e999999999999"), _delta("0.5")]
    c_out, py_out = both(payloads)
    assert c_out == py_out
    assert len(c_out[1]) == 1 and "numeric range" in c_out[1][0][1]


@needs_c
def test_hop_stamps_are_read_past_in_c() -> None:
    """Records with the two trailing hop stamps (raw_ts_ms, dedup_ns) and records of the older layout without them
    are both built in C, to the same rows as Python; other lengths and out-of-range stamps go to Python."""
    events = make_events(3000, markets=40, seed=21)
    stamped = [
        encode_event(msgspec.structs.replace(e, raw_ts_ms=e.recv_ns // 1_000_000 + 3, dedup_ns=e.recv_ns + 9_000_000))
        for e in events
    ]
    older = []  # the layout before the stamps: the same arrays without their last two items (deltas: five, the
    for payload in stamped:  # book rule and the alias flag follow their stamps)
        items = msgspec.msgpack.decode(payload)
        older.append(msgspec.msgpack.encode(items[: -5 if items[0] == "delta" else -2]))
    c_out, py_out = both(stamped + older)
    assert c_out == py_out
    rows, dead, _ = c_out
    assert not dead
    in_python = sum(isinstance(e, (Lifecycle, Gap)) for e in events)
    assert c_handled(stamped) == len(stamped) - in_python
    assert c_handled(older) == len(older) - in_python
    assert rows == {t: r + r for t, r in both(stamped)[0][0].items()}  # stamps change no row

    delta = msgspec.msgpack.decode(_delta("0.5"))[:-5]  # without its stamps (and the book rule, alias after them)
    odd = [
        msgspec.msgpack.encode([*delta, 1_767_225_600_003]),  # one stamp only: valid (default), Python's
        msgspec.msgpack.encode([*delta, 2**64 - 1, 5]),  # a stamp beyond int64: valid, Python's
        msgspec.msgpack.encode([*delta, None, 5]),  # not an int: a dead letter either way
        msgspec.msgpack.encode([*delta, 1, 2, False, 0, False, 3]),  # an extra item: the Python path decides
    ]
    c_out, py_out = both(odd)
    assert c_out == py_out
    assert c_handled(odd) == 0
    assert len(c_out[1]) == 1


@pytest.mark.parametrize("codec", ["c", "python"])
def test_deltas_carry_their_book_rule(codec: str) -> None:
    """replaces and ordinal (after the hop stamps) land in their columns; records of the older layouts (without the
    alias flag, without the rule, without the stamps) are rows too, without the rule additive deltas of ordinal 0; C
    and Python agree on every shape."""
    if codec == "c" and fast is None:
        pytest.skip("sink._rowcodec was not built")
    from sink.rows import COLUMNS

    names = COLUMNS["orderbook_deltas"]
    full = msgspec.msgpack.decode(_delta("0.5", replaces=True, ordinal=7))
    assert full[-5:] == [0, 0, True, 7, False]  # stamps, then the rule, then the alias flag
    payloads = [
        msgspec.msgpack.encode(full),
        _delta("0.5", replaces=False, ordinal=2**31 - 1),
        _delta("0.5", replaces=True, ordinal=-(2**31)),
        msgspec.msgpack.encode(full[:-1]),  # before the alias flag: the same row
        msgspec.msgpack.encode(full[:-3]),  # before the rule: additive, 0
        msgspec.msgpack.encode(full[:-5]),  # before the stamps too
    ]
    rows: dict[str, list[bytes]] = {}
    dead, _ = build_rows(payloads, None, None, rows, fast=fast if codec == "c" else None)
    assert not dead
    got = [(f[names.index("replaces")], f[names.index("ordinal")]) for f in map(_fields, rows["orderbook_deltas"])]
    i4 = [n.to_bytes(4, "big", signed=True) for n in (7, 2**31 - 1, -(2**31), 7, 0, 0)]
    assert got == list(zip([b"\x01", b"\x00", b"\x01", b"\x01", b"\x00", b"\x00"], i4, strict=True))
    if codec == "c":
        assert c_handled(payloads) == len(payloads)
        assert both(payloads)[0] == both(payloads)[1]
    odd = [
        _delta("0.5", replaces=True, ordinal=2**31),  # beyond the integer column: a dead letter either way
        msgspec.msgpack.encode([*full[:-3], 1, 7]),  # replaces not a bool: a dead letter either way
        msgspec.msgpack.encode([*full[:-3], True]),  # the rule without its ordinal: valid (default)
        msgspec.msgpack.encode([*full, 9]),  # an extra item: the Python path decides
    ]
    dead_odd, _ = build_rows(odd, None, None, {}, fast=fast if codec == "c" else None)
    assert sorted(i for i, _ in dead_odd) == [0, 1], dead_odd
    if codec == "c":
        assert both(odd)[0] == both(odd)[1] and c_handled(odd) == 0


def _fields(row: bytes) -> list[bytes | None]:
    """A COPY row (without its field count) split into its fields (None = NULL)."""
    out: list[bytes | None] = []
    i = 0
    while i < len(row):
        n = int.from_bytes(row[i : i + 4], "big", signed=True)
        i += 4
        out.append(None if n < 0 else row[i : i + n])
        i += max(n, 0)
    return out


@pytest.mark.parametrize("codec", ["c", "python"])
def test_every_row_carries_its_venue_in_the_column_order(codec: str) -> None:
    if codec == "c" and fast is None:
        pytest.skip("sink._rowcodec was not built")
    from sink.rows import COPY_COLUMNS

    events = [msgspec.structs.replace(e, venue=f"venue-{i % 3}") for i, e in enumerate(make_events(600, seed=13))]
    rows: dict[str, list[bytes]] = {}
    dead, _ = build_rows([encode_event(e) for e in events], None, None, rows, fast=fast if codec == "c" else None)
    assert not dead
    by_table: dict[str, list[object]] = {}
    for e in events:
        by_table.setdefault(type(e).__name__, []).append(e)
    for table, built in rows.items():
        names = COPY_COLUMNS[table]  # a lifecycle row also carries its alias flag (sink.lifecycle)
        got = [(f[names.index("venue")], f[names.index("market")]) for f in map(_fields, built)]
        assert all(len(_fields(r)) == len(names) for r in built), table
        kind = {"orderbook_snapshots": "BookSnapshot", "orderbook_deltas": "BookDelta", "trades": "Trade",
                "tickers": "Ticker", "market_lifecycle": "Lifecycle", "coverage_gaps": "Gap"}[table]  # fmt: skip
        assert got == [(e.venue.encode(), e.market.encode()) for e in by_table[kind]], table  # type: ignore[attr-defined]
