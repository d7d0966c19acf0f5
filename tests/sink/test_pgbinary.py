"""Binary COPY field encoders: decoded back with an independent reader of PostgreSQL's send formats."""

from __future__ import annotations

import random
import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sink import pgbinary as pb


def read_numeric(field: bytes) -> Decimal:
    (length,) = struct.unpack(">i", field[:4])
    assert length == len(field) - 4
    ndigits, weight, sign, dscale = struct.unpack(">hhHh", field[4:12])
    digits = struct.unpack(f">{ndigits}H", field[12:])
    assert all(0 <= d < 10000 for d in digits)
    value = sum((Decimal(d) * Decimal(10000) ** (weight - i) for i, d in enumerate(digits)), Decimal(0))
    value = value.quantize(Decimal(1).scaleb(-dscale)) if dscale else value.quantize(Decimal(1))
    return -value if sign == 0x4000 else value


@pytest.mark.parametrize(
    ("text", "ndigits", "weight", "dscale"),
    [
        ("0.4100", 1, -1, 4),
        ("0", 0, 0, 0),
        ("0.00", 0, 0, 2),
        ("4701.60", 2, 0, 2),
        ("12345.6789", 3, 1, 4),
        ("-5.25", 2, 0, 2),
        ("0.00001", 1, -2, 5),
        ("100000000", 1, 2, 0),
    ],
)
def test_numeric_layout(text: str, ndigits: int, weight: int, dscale: int) -> None:
    field = pb.numeric(text)
    got_ndigits, got_weight, sign, got_dscale = struct.unpack(">hhHh", field[4:12])
    assert (got_ndigits, got_weight, got_dscale) == (ndigits, weight, dscale)
    assert sign == (0x4000 if text.startswith("-") else 0)
    assert read_numeric(field) == Decimal(text)
    assert str(read_numeric(field)) == str(Decimal(text)) or Decimal(text) == 0


def test_numeric_random_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        scale = rng.randint(0, 9)
        value = Decimal(rng.randint(-(10**14), 10**14)).scaleb(-scale)
        text = format(value, "f")
        got = read_numeric(pb.numeric(text))
        assert got == value, text
        assert got.as_tuple().exponent == -scale or value == 0


@pytest.mark.parametrize("text", ["1E+3", "2.5e-3", "+7.50", " 3.1 "])
def test_numeric_other_spellings(text: str) -> None:
    assert read_numeric(pb.numeric(text)) == Decimal(text.strip())


@pytest.mark.parametrize("bad", ["", "abc", "NaN", "Infinity", "1.2.3", "1,5"])
def test_numeric_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        pb.numeric(bad)


def test_timestamps() -> None:
    def read_ts(field: bytes) -> datetime:
        length, micros = struct.unpack(">iq", field)
        assert length == 8
        return datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)

    assert read_ts(pb.ts_from_ms(1767225600123)) == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert read_ts(pb.ts_from_ns(1767225600123456789)) == datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    assert read_ts(pb.ts_from_s(1767225600)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert pb.ts_from_s(None) == pb.NULL


def test_scalars() -> None:
    assert pb.text("KX-é") == struct.pack(">i", 5) + "KX-é".encode()
    assert pb.jsonb("") == pb.NULL
    assert pb.jsonb('{"a":1}') == struct.pack(">i", 8) + b'\x01{"a":1}'
    assert pb.boolean(True) == b"\x00\x00\x00\x01\x01"
    assert pb.boolean(None) == pb.NULL
    assert pb.int8(-2) == struct.pack(">iq", 8, -2)


def test_numeric_array() -> None:
    arr = pb.numeric_array(["0.41", "12.5"])
    length, ndim, flags, oid, dim, lower = struct.unpack(">iiiiii", arr[:24])
    assert (length, ndim, flags, oid, dim, lower) == (len(arr) - 4, 1, 0, 1700, 2, 1)
    first = pb.numeric("0.41")
    assert arr[24 : 24 + len(first)] == first
    assert read_numeric(arr[24 + len(first) :]) == Decimal("12.5")
    assert struct.unpack(">iiii", pb.numeric_array([])) == (12, 0, 0, 1700)


def test_numeric_table_path_matches_the_general_encoder() -> None:
    """numeric_miss' lookup tables (integer part < 10000, up to 4 fraction digits) give the general path's bytes."""
    rng = random.Random(11)
    texts = ["0", "-0", "0.0000", "-0.00", "5.", "9999.9999", "-9999.0001", "10000", "0.5", "-0.5", "12.30"]
    texts += [f"{rng.randint(-9999, 9999)}.{rng.randint(0, 9999):0{rng.randint(1, 4)}d}" for _ in range(2000)]
    texts += [str(rng.randint(-9999, 9999)) for _ in range(200)]
    for text in texts:
        pb.NUMERIC_CACHE.pop(text, None)
        got = pb.numeric_miss(text)
        assert got == pb._numeric_body(text), text
        assert read_numeric(got) == Decimal(text), text
        assert pb.NUMERIC_CACHE[text] == got


@pytest.mark.parametrize("bad", [".", "-", "-.", "1.2.3", "1.", "0012.5", "+3.25"])
def test_numeric_miss_falls_back_for_other_spellings(bad: str) -> None:
    try:
        expected: bytes | type[ValueError] = pb._numeric_body(bad)
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            pb.numeric_miss(bad)
    else:
        assert pb.numeric_miss(bad) == expected


@pytest.mark.parametrize(
    "value", ["1e999999999999", "1e-99999999", "0e-9999999", "1e100000", "1" * 12_001, "0." + "1" * 16_384]
)
def test_numeric_out_of_postgres_range_is_refused_without_expanding_it(value: str) -> None:
    # a tiny record with a huge exponent must become a dead letter, not terabytes of digits or a MemoryError
    with pytest.raises(ValueError, match="numeric"):
        pb.numeric(value)


def test_numeric_at_postgres_limits_is_encoded() -> None:
    assert len(pb.numeric("1e11999")) == 8 + 2 + 4  # one base-10000 digit, weight 2999
    assert pb.numeric("0e999999999999") == pb.numeric("0")
