"""PostgreSQL binary COPY encoders for the field types the sink writes (pure, no I/O).

Each function returns one COPY field: a 4-byte big-endian length followed by the value in PostgreSQL's
binary send format (``NULL`` is length -1). Built by hand because psycopg's per-row ``write_row`` costs
several microseconds per row; the decimal strings of the events become binary ``numeric`` directly
(base-10000 digits), with a bounded cache because prices and sizes repeat a lot, and lookup tables for the
common spellings on a cache miss (:func:`numeric_miss`, ~0.65 us per distinct value; numerics are ~40% of the
sink's row building in ``make bench-sink``, whose sizes are mostly distinct).
"""

from __future__ import annotations

import struct
from decimal import Decimal, InvalidOperation

__all__ = [
    "COPY_HEADER",
    "COPY_TRAILER",
    "NULL",
    "NUMERIC_CACHE",
    "PG_EPOCH_MS",
    "boolean",
    "int8",
    "jsonb",
    "numeric",
    "numeric_array",
    "numeric_array_of",
    "numeric_miss",
    "opt_numeric",
    "text",
    "ts_from_ms",
    "ts_from_ns",
    "ts_from_s",
]

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
NULL = struct.pack(">i", -1)
PG_EPOCH_MS = 946_684_800_000  # 2000-01-01T00:00:00Z in Unix ms
NUMERIC_OID = 1700
TEXT_OID = 25

_TS = struct.Struct(">iq")
_LEN = struct.Struct(">i")
_NUM_HEAD = struct.Struct(">ihhHh")
_I8 = struct.Struct(">iq")
_ARR_HEAD = struct.Struct(">iiiiii")
_ARR_EMPTY = struct.pack(">iiii", 12, 0, 0, NUMERIC_OID)
_TRUE = struct.pack(">i?", 1, True)
_FALSE = struct.pack(">i?", 1, False)
_CACHE_MAX = 400_000  # distinct decimal strings kept (~150 bytes each: <= ~60 MB)
NUMERIC_CACHE: dict[str, bytes] = {}  # decimal text -> numeric field (bounded)


def ts_from_ms(ms: int) -> bytes:
    """timestamptz from Unix milliseconds."""
    return _TS.pack(8, (ms - PG_EPOCH_MS) * 1000)


def ts_from_ns(ns: int) -> bytes:
    """timestamptz from Unix nanoseconds (PostgreSQL keeps microseconds: truncated)."""
    return _TS.pack(8, ns // 1000 - PG_EPOCH_MS * 1000)


def ts_from_s(s: int | None) -> bytes:
    """timestamptz from Unix seconds, or NULL."""
    if s is None:
        return NULL
    return _TS.pack(8, (s * 1000 - PG_EPOCH_MS) * 1000)


def text(value: str) -> bytes:
    data = value.encode()
    return _LEN.pack(len(data)) + data


def jsonb(value: str) -> bytes:
    """jsonb (version byte 1 + JSON text); empty string -> NULL. The server validates the JSON."""
    if not value:
        return NULL
    data = value.encode()
    return _LEN.pack(len(data) + 1) + b"\x01" + data


def boolean(value: bool | None) -> bytes:
    if value is None:
        return NULL
    return _TRUE if value else _FALSE


def int8(value: int | None) -> bytes:
    if value is None:
        return NULL
    return _I8.pack(8, value)


_SCALE = (1, 1000, 100, 10, 1)
_N0 = struct.Struct(">ihhHh")
_N1 = struct.Struct(">ihhHhH")
_N2 = struct.Struct(">ihhHhHH")


_N3 = struct.Struct(">ihhHhHHH")


# What PostgreSQL's numeric_recv accepts: at most 3000 base-10000 digits and a display scale of 16383 (else the
# whole COPY fails and the batch has to be bisected to find the row); longer spellings are refused up front.
MAX_INT_DIGITS = 12_000
MAX_DSCALE = 16_383
_MAX_TEXT = MAX_INT_DIGITS + MAX_DSCALE + 2


def _numeric_body(value: str) -> bytes:
    if len(value) > _MAX_TEXT:
        raise ValueError(f"decimal number too long for PostgreSQL numeric: {len(value)} characters")
    s = value
    neg = False
    first = s[:1]
    if first == "-":
        neg, s = True, s[1:]
    elif first == "+":
        s = s[1:]
    int_part, _, frac = s.partition(".")
    digits = int_part + frac
    if not (digits.isdigit() and digits.isascii()):  # exponent, spaces, junk: let Decimal judge
        return _numeric_slow(value)
    dscale = len(frac)
    if len(int_part) <= 8 and dscale <= 4:  # fast path: up to 8 integer and 4 fraction digits
        i = int(int_part) if int_part else 0
        f = int(frac) * _SCALE[dscale] if frac else 0
        sign = 0x4000 if neg and (i or f) else 0
        if i >= 10000:
            hi, lo = divmod(i, 10000)
            if f:
                return _N3.pack(14, 3, 1, sign, dscale, hi, lo, f)
            if lo:
                return _N2.pack(12, 2, 1, sign, dscale, hi, lo)
            return _N1.pack(10, 1, 1, sign, dscale, hi)
        if i:
            if f:
                return _N2.pack(12, 2, 0, sign, dscale, i, f)
            return _N1.pack(10, 1, 0, sign, dscale, i)
        if f:
            return _N1.pack(10, 1, -1, sign, dscale, f)
        return _N0.pack(8, 0, 0, 0, dscale)
    return _numeric_general(int_part.lstrip("0"), frac, neg)


def _numeric_slow(value: str) -> bytes:
    try:
        dec = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not dec.is_finite():
        raise ValueError(f"not a finite decimal number: {value!r}")
    # bound the exponent BEFORE writing the digits out: "1e999999999999" would need terabytes
    if -int(dec.as_tuple().exponent) > MAX_DSCALE or (dec and dec.adjusted() >= MAX_INT_DIGITS):
        raise ValueError(f"decimal number out of PostgreSQL's numeric range: {value[:40]!r}")
    text = format(dec, "f")
    if not text.lstrip("-").replace(".", "", 1).isascii():
        raise ValueError(f"not a decimal number: {value!r}")
    return _numeric_body(text)


def _numeric_general(int_part: str, frac: str, neg: bool) -> bytes:
    dscale = len(frac)
    if len(int_part) > MAX_INT_DIGITS or dscale > MAX_DSCALE:
        raise ValueError(
            f"decimal number out of PostgreSQL's numeric range: {len(int_part)} integer digits, {dscale} decimals"
        )
    ip = "0" * (-len(int_part) % 4) + int_part
    fp = frac + "0" * (-len(frac) % 4)
    groups = [int(ip[i : i + 4]) for i in range(0, len(ip), 4)]
    groups += [int(fp[i : i + 4]) for i in range(0, len(fp), 4)]
    weight = len(ip) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight, neg = 0, False
    n = len(groups)
    return _NUM_HEAD.pack(8 + 2 * n, n, weight, 0x4000 if neg else 0, dscale) + struct.pack(f">{n}H", *groups)


# Lookup tables of the common spellings (measured: ~2x faster than parsing): the fraction part of up to 4
# digits -> (base-10000 digit, dscale), and an integer part below 10000 (optionally signed, no leading zeros) ->
# (digit, negative). Anything else ("12345.6", "+1", "1E+3", ".5", junk) takes the general path.
_FRAC: dict[str, tuple[int, int]] = {"": (0, 0)}
for _d in range(1, 5):
    _FRAC.update({str(_v).zfill(_d): (_v * 10 ** (4 - _d), _d) for _v in range(10**_d)})
_INT: dict[str, tuple[int, bool]] = {str(_v): (_v, False) for _v in range(10000)}
_INT.update({"-" + str(_v): (_v, True) for _v in range(10000)})
_n0, _n1, _n2 = _N0.pack, _N1.pack, _N2.pack


def numeric_miss(value: str) -> bytes:
    """:func:`numeric` for a value not in :data:`NUMERIC_CACHE` (callers try the cache inline first)."""
    ip, _, fp = value.partition(".")
    frac = _FRAC.get(fp)
    whole = _INT.get(ip)
    if frac is None or whole is None:
        out = _numeric_body(value)
    else:
        f, dscale = frac
        i, neg = whole
        sign = 0x4000 if neg and (i or f) else 0
        if i:
            out = _n2(12, 2, 0, sign, dscale, i, f) if f else _n1(10, 1, 0, sign, dscale, i)
        else:
            out = _n1(10, 1, -1, sign, dscale, f) if f else _n0(8, 0, 0, 0, dscale)
    if len(NUMERIC_CACHE) >= _CACHE_MAX:
        NUMERIC_CACHE.clear()
    NUMERIC_CACHE[value] = out
    return out


def numeric(value: str) -> bytes:
    """numeric from decimal text (``"0.4100"``, ``"-5.25"``); raises ValueError for anything else."""
    return NUMERIC_CACHE.get(value) or numeric_miss(value)


def opt_numeric(value: str | None) -> bytes:
    return NULL if value is None else numeric(value)


def numeric_array(values: list[str]) -> bytes:
    """numeric[] (one dimension, no NULLs)."""
    return numeric_array_of([NUMERIC_CACHE.get(v) or numeric_miss(v) for v in values])


def text_array(values: list[str]) -> bytes:
    """text[] (one dimension; an empty list is an empty array)."""
    if not values:
        return _TEXT_ARR_EMPTY
    body = b"".join(text(v) for v in values)
    return _ARR_HEAD.pack(20 + len(body), 1, 0, TEXT_OID, len(values), 1) + body


_TEXT_ARR_EMPTY = struct.pack(">iiii", 12, 0, 0, TEXT_OID)


def numeric_array_of(fields: list[bytes]) -> bytes:
    """numeric[] from already encoded :func:`numeric` fields."""
    if not fields:
        return _ARR_EMPTY
    body = b"".join(fields)
    return _ARR_HEAD.pack(20 + len(body), 1, 0, NUMERIC_OID, len(fields), 1) + body
