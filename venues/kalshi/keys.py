"""Event keys: the identity of a venue event, derived from what every copy of it shares (never sid, seq or a clock).

Redundant gatherers receive copies of one venue event on different connections, subscribed at different times,
reconnecting and resnapshotting independently; dedup keeps the first copy per ``(market, event_key)``. A key must
therefore be (1) EQUAL on every gatherer that received the event and (2) DIFFERENT for two distinct venue events,
including two events whose bodies are byte for byte identical.

What every copy shares is the message body and, on one subscription, the venue's order. So the identity is the body
plus, where two distinct events can have the same body, a position that every gatherer derives alike:

- trade ``t:<trade_id>``: the venue's own id.
- delta ``d:<h(market, side, price, delta, ts_ms)>:<n>`` and ticker ``k:<h(every TickerMsg field)>:<n>``: the body
  carries the venue's millisecond ``ts_ms``, so two distinct events with the same body happened in the same venue
  millisecond, and their copies reach every gatherer back to back, in the venue's order, on the market's subscription.
  ``n`` numbers the identical bodies in arrival order on this gatherer. It is counted only for messages that passed
  the seq check (a re-delivered seq neither gets a key nor moves ``n``), it survives reconnects and resnapshots (the
  counters are not reset; the venue never re-sends an old delta on a new subscription), and it is forgotten by VENUE
  time, not receive time: a body is remembered until the venue clock (the newest ``ts_ms`` seen) has moved
  ``horizon_ms`` past it, which only bounds memory, because no copy of an event can carry an older ``ts_ms`` than
  ``horizon_ms`` behind the venue clock unless a connection is that late. Identical bodies 50 ms, 15 s or 10 min apart
  differ in ``ts_ms`` and so in the hash; ``n`` only separates bodies of the same millisecond.
  Where it can still go wrong (both need identical bodies in ONE venue millisecond): a gatherer that received only the
  second of two identical deltas (its subscription began between them, or it lost the first) labels it ``n=1``, the
  first event's key. Dedup keeps both events as long as one gatherer delivered both; if every gatherer missed a
  different one, one event is lost — and every gatherer reported a gap or a subscription start around it.
- snapshot ``s:<h(market, sorted levels)>``: state, not an event; copies agree only when the book is the same, and
  two snapshots of the same book merge on purpose. Its position in the delta stream travels in the frame
  (:mod:`venues.kalshi.snapshots`).
- lifecycle ``l:...`` (``market_lifecycle_v2``, ``event_lifecycle``, ``event_fee_update``): most of these bodies carry
  no time at all (activated, deactivated, metadata, fee updates), so identical bodies minutes apart are common.
  They are keyed by their position in the venue's lifecycle stream (:mod:`venues.kalshi.anchors`).
- A body whose delta has no ``ts_ms`` (the field is optional in the venue's spec; the current venue sends it) falls
  back to the deprecated ``ts`` text; with neither, ``n`` has no venue millisecond to live in and counts within the
  gatherer's own venue clock (the newest ``ts_ms`` it has seen), which copies on other gatherers may disagree with:
  such deltas are counted (``no_time``) and may split or merge. The session logs them.

Canonical numbers: every number (JSON number or numeric string) is an exact Decimal normalised so ``"0.43"``,
``"0.4300"`` and ``0.43`` agree; objects are key-sorted. ``h(...)`` is the first 8 bytes of BLAKE2b, in hex.

Bad numbers are bad input, not a disconnect: a number that is not finite, has more than
:data:`MAX_NUMBER_CHARS` characters, or lies outside the field's range (:func:`check_number`) raises ``ValueError``
naming the field, and the session dead-letters the message. Nothing here may raise anything else for a bad body
but ``msgspec.DecodeError`` (a ``ValueError``).

Hot path: :meth:`EventKeyer.delta_body`, :meth:`EventKeyer.ticker_body` and :meth:`EventKeyer.snapshot_body` (every
subscription starts with one snapshot per market) decode the body with the numbers kept as the venue's strings and
normalise each distinct string once (a bounded cache, each entry computed exactly as the Decimal path would). A body
whose numbers are JSON numbers, or that is invalid, takes the Decimal path (:meth:`EventKeyer.delta`,
:meth:`EventKeyer.ticker`, :meth:`EventKeyer.snapshot`): same keys, same errors. Before both, a delta or ticker body
goes through the C accelerator ``venues.kalshi._deltakey`` when the install compiled it (:data:`ACCELERATED`): it
derives the digest of the common, well-formed shape and hands every other body to these paths (see its source), so
the keys are the same with or without it; a snapshot body too (20,000 of them when a gatherer subscribes to 20,000
markets). :data:`MESSAGE_PARTS` does the same for a whole WebSocket message
(envelope and body in one call; :class:`venues.kalshi.protocol.KalshiSession` counts the occurrence with
:attr:`EventKeyer.occurrence`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Context, Decimal, InvalidOperation
from hashlib import blake2b
from typing import Any

import msgspec

from venues.kalshi.messages import DeltaMsg, SnapshotMsg, TickerMsg, TradeMsg
from venues.occurrences import Occurrences

__all__ = [
    "ACCELERATED",
    "MAX_NUMBER_CHARS",
    "MESSAGE_PARTS",
    "EventKeyer",
    "canonical",
    "check_number",
    "digest",
    "norm_decimal",
]

try:
    from venues.kalshi import _deltakey  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler, or a source checkout never installed
    _deltakey = None
ACCELERATED = _deltakey is not None
# body -> (market, digest, ts_ms) of a common delta body, None for any other (then the paths below decide)
_delta_parts: Any = _deltakey.delta_parts if _deltakey is not None else None
_ticker_parts: Any = _deltakey.ticker_parts if _deltakey is not None else None  # the same for ticker bodies
# a whole delta or ticker message (envelope and body) -> (kind, sid, seq, market, digest, ts_ms), None for any other
# (then the session's msgspec path and the paths below decide): KalshiSession's hot path
MESSAGE_PARTS: Any = getattr(_deltakey, "message_parts", None)  # (an extension built before it had none)
# a snapshot body -> (market, digest) of the venue's common shape, None for any other (then snapshot_body decides)
_snapshot_parts: Any = getattr(_deltakey, "snapshot_parts", None)

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_generic = msgspec.json.Decoder(float_hook=Decimal)
_canon_encoder = msgspec.json.Encoder(order="sorted")
_blake = blake2b(digest_size=8)  # copied per hash: much cheaper than building a new hasher with its parameters

MAX_NUMBER_CHARS = 40  # longer spellings of a price or size are not numbers a venue sends
_MAX_ADJUSTED = 18  # |value| < 1e19 and no digit finer than 1e-18 ... see check_number
PRICE = (Decimal(0), Decimal(1))  # prices are dollars of a contract paying $1
SIZE = (Decimal(-(10**15)), Decimal(10**15))  # signed contract counts / dollar amounts
_NO_RANGE: tuple[Decimal, Decimal] | None = None


def check_number(value: Decimal, field: str, bounds: tuple[Decimal, Decimal] | None = _NO_RANGE) -> Decimal:
    """``value`` if it is a finite number of sane magnitude inside ``bounds``; else ``ValueError`` naming ``field``.

    Sane: finite, and neither its most nor its least significant digit more than 18 decimal places from the point
    (so ``1E+1000000``, ``NaN``, a 5,000-digit number or ``1E-50`` are refused before anything expands them).
    """
    if not value.is_finite():
        raise ValueError(f"{field}: {value} is not a finite number")
    if value and (value.adjusted() > _MAX_ADJUSTED or value.as_tuple().exponent < -_MAX_ADJUSTED):  # type: ignore[operator]
        raise ValueError(f"{field}: {_short(value)} is outside the range of a price or size")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field}: {_short(value)} is outside [{bounds[0]}, {bounds[1]}]")
    return value


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"


_EXACT = Context(prec=2 * _MAX_ADJUSTED + 4)  # every digit of a number check_number accepts


def norm_decimal(value: Decimal | int | str) -> str:
    """Exact, normalised text of a number: 0.4300 -> "0.43", 5.00 -> "5", -0.0 -> "0", 1E+2 -> "100".

    Callers pass numbers that :func:`check_number` accepted (a huge exponent would expand to that many digits): at
    most 37 significant digits, all kept (the default context would round to 28, and the C path keeps every digit)."""
    d = (value if isinstance(value, Decimal) else Decimal(value)).normalize(_EXACT)
    s = str(d)
    if "E" in s:
        s = format(d, "f")
    return "0" if s == "-0" else s


def _canon_value(value: Any, field: str = "") -> Any:
    if isinstance(value, str):
        if _NUMBER.match(value):
            if len(value) > MAX_NUMBER_CHARS:
                raise ValueError(f"{field or 'number'}: {_short(value)} has more than {MAX_NUMBER_CHARS} characters")
            return norm_decimal(check_number(Decimal(value), field or "number"))
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | Decimal):
        return norm_decimal(check_number(Decimal(value), field or "number"))
    if isinstance(value, dict):
        return {k: _canon_value(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon_value(v, field) for v in value]
    return value


def canonical(body: bytes) -> bytes:
    """Canonical JSON of a message body: sorted keys, numbers (and numeric strings) normalised and checked."""
    try:
        return _canon_encoder.encode(_canon_value(_generic.decode(body)))
    except (InvalidOperation, OverflowError) as exc:  # Decimal() of something the checks did not foresee
        raise ValueError(f"number: {type(exc).__name__}") from None


def digest(data: bytes) -> str:
    """``h(data)``: the first 8 bytes of BLAKE2b, in hex."""
    h = _blake.copy()
    h.update(data)
    return h.hexdigest()


_h = digest


def _as_text(struct: type[msgspec.Struct], name: str) -> tuple[type[msgspec.Struct], tuple[bool, ...]]:
    """``struct`` with its ``Decimal`` fields typed ``str`` (same names, order, defaults), and which those are."""
    fields: list[Any] = []
    numeric: list[bool] = []
    for f in msgspec.structs.fields(struct):
        tp = f.type
        is_num = tp is Decimal or tp == Decimal | None
        if is_num:
            tp = str | None if tp != Decimal else str
        numeric.append(is_num)
        fields.append((f.name, tp) if f.required else (f.name, tp, f.default))
    return msgspec.defstruct(name, fields), tuple(numeric)


_DeltaText, _ = _as_text(DeltaMsg, "_DeltaText")
_TickerText, _TICKER_NUMERIC = _as_text(TickerMsg, "_TickerText")
_TICKER_NAMES = tuple(f.name for f in msgspec.structs.fields(TickerMsg))
# ticker fields that are prices (the rest are sizes, volumes and dollar amounts)
_TICKER_BOUNDS = tuple(
    PRICE if name in ("price_dollars", "yes_bid_dollars", "yes_ask_dollars") else SIZE for name in _TICKER_NAMES
)
_delta_text = msgspec.json.Decoder(_DeltaText, strict=False)
_ticker_text = msgspec.json.Decoder(_TickerText, strict=False)
_delta = msgspec.json.Decoder(DeltaMsg, strict=False)
_ticker = msgspec.json.Decoder(TickerMsg, strict=False)
_NORM_MAX = 1 << 16
_norm: dict[str | None, str] = {None: ""}


def _norm_text(text: str | None, field: str, bounds: tuple[Decimal, Decimal]) -> str:
    """``norm_decimal`` of a number the venue sent as a string, checked, as the Decimal decoders parse it (cached).

    The cache holds only numbers that passed the checks of SOME field; a hit is re-checked against ``bounds`` only
    when the bounds differ from the sizes' (prices are the narrow case)."""
    out = _norm.get(text)
    if out is None:
        if text is not None and len(text) > MAX_NUMBER_CHARS:
            raise ValueError(f"{field}: {_short(text)} has more than {MAX_NUMBER_CHARS} characters")
        value = msgspec.convert(text, Decimal, strict=False)  # ValidationError like the decoders
        out = norm_decimal(check_number(value, field, bounds))
        if len(_norm) >= _NORM_MAX:
            _norm.clear()
            _norm[None] = ""
        _norm[text] = out
        return out
    if bounds is PRICE and text is not None and not (out[0] == "0" or out == "1"):  # 0.xx, 0 and 1 are prices
        check_number(Decimal(out), field, bounds)
    return out


class _SnapshotText(msgspec.Struct):
    """:class:`venues.kalshi.messages.SnapshotMsg` with each level's numbers kept as the venue's strings."""

    market_ticker: str
    market_id: str = ""
    yes_dollars_fp: list[tuple[str, str]] = []
    no_dollars_fp: list[tuple[str, str]] = []


_snapshot_text = msgspec.json.Decoder(_SnapshotText, strict=False)
_snapshot = msgspec.json.Decoder(SnapshotMsg, strict=False)
_order: dict[str, Decimal] = {}  # a normalised number's value, to sort levels by (bounded like _norm)


def _numeric(text: str) -> Decimal:
    out = _order.get(text)
    if out is None:
        if len(_order) >= _NORM_MAX:
            _order.clear()
        out = _order[text] = Decimal(text)
    return out


def _level_order(level: tuple[str, str]) -> tuple[Decimal, Decimal]:
    return _numeric(level[0]), _numeric(level[1])


def _levels_text(levels: list[tuple[str, str]], field: str) -> str:
    """``price,size;...`` of one side, numbers normalised and checked, in the order ``sorted`` gives the Decimal
    levels: by value (two spellings of one value normalise to the same text, so ties cannot differ)."""
    pairs = [(_norm_text(p, field, PRICE), _norm_text(c, field, SIZE)) for p, c in levels]
    pairs.sort(key=_level_order)
    return ";".join([f"{p},{c}" for p, c in pairs])


def _check_delta(m: DeltaMsg) -> None:
    check_number(m.price_dollars, "price_dollars", PRICE)
    check_number(m.delta_fp, "delta_fp", SIZE)


def _check_ticker(m: TickerMsg) -> None:
    for value, name, bounds in zip(msgspec.structs.astuple(m), _TICKER_NAMES, _TICKER_BOUNDS, strict=True):
        if isinstance(value, Decimal):
            check_number(value, name, bounds)


class EventKeyer:
    """Derives ``(market, event_key)`` per message kind; keeps the occurrence counters (see module docstring).

    One per gatherer (shared by its connections, so an event received on two of them would count twice: the
    session subscribes each market on one connection only, and lifecycle keys do not use these counters)."""

    def __init__(self, horizon_ms: int = 120_000) -> None:
        self._seen = Occurrences(horizon_ms, late=1)  # a copy this late cannot be told from the first one
        self.no_time = 0  # deltas without ts_ms or ts (see module docstring)
        # (digest, ts_ms) -> n: the count the delta and ticker keys end with, for a digest the C accelerator derived
        # (MESSAGE_PARTS: the session builds the key "d:<digest>:<n>" / "k:<digest>:<n>" itself)
        self.occurrence = self._seen.next

    @property
    def tracked(self) -> int:
        """Bodies currently remembered."""
        return len(self._seen)

    def _occurrence(self, digest: str, ts_ms: int | None) -> int:
        if ts_ms is None:
            self.no_time += 1
            ts_ms = self._seen.newest_ms
        return self._seen.next(digest, ts_ms)

    def delta(self, m: DeltaMsg) -> str:
        """``d:`` key of a decoded delta (numbers checked)."""
        _check_delta(m)
        text = f"{m.market_ticker}\x1f{m.side}\x1f{norm_decimal(m.price_dollars)}\x1f{norm_decimal(m.delta_fp)}"
        digest = _h(f"{text}\x1f{m.ts_ms if m.ts_ms is not None else m.ts}".encode())
        return f"d:{digest}:{self._occurrence(digest, _delta_ms(m.ts_ms, m.ts))}"

    def delta_body(self, body: bytes) -> tuple[str, str, int | None]:
        """``(market, key, venue ms)`` of an orderbook_delta body; the key equals :meth:`delta` of its ``DeltaMsg``."""
        if _delta_parts is not None:
            parts = _delta_parts(body)
            if parts is not None:  # the C accelerator's shape: ts_ms is there
                market, digest, ms = parts
                return market, f"d:{digest}:{self._seen.next(digest, ms)}", ms
        try:
            m = _delta_text.decode(body)
            price = _norm_text(m.price_dollars, "price_dollars", PRICE)
            size = _norm_text(m.delta_fp, "delta_fp", SIZE)
        except msgspec.DecodeError:  # numbers sent as JSON numbers, or an invalid body: the Decimal path
            d = _delta.decode(body)
            return d.market_ticker, self.delta(d), _delta_ms(d.ts_ms, d.ts)
        ts = m.ts_ms if m.ts_ms is not None else m.ts
        digest = _h(f"{m.market_ticker}\x1f{m.side}\x1f{price}\x1f{size}\x1f{ts}".encode())
        ms = m.ts_ms if m.ts_ms is not None else _delta_ms(None, m.ts)
        return m.market_ticker, f"d:{digest}:{self._occurrence(digest, ms)}", ms

    def ticker_body(self, body: bytes) -> tuple[str, str, int | None]:
        """``(market, key, venue ms)`` of a ticker body; the key equals :meth:`ticker` of its ``TickerMsg``."""
        if _ticker_parts is not None:
            parts = _ticker_parts(body)
            if parts is not None:  # the C accelerator's shape: ts_ms is there
                market, digest, ms = parts
                return market, f"k:{digest}:{self._seen.next(digest, ms)}", ms
        try:
            m = _ticker_text.decode(body)
            parts = [
                _norm_text(v, name, bounds) if num else ("" if v is None else str(v))
                for v, num, name, bounds in zip(
                    msgspec.structs.astuple(m), _TICKER_NUMERIC, _TICKER_NAMES, _TICKER_BOUNDS, strict=True
                )
            ]
        except msgspec.DecodeError:
            t = _ticker.decode(body)
            return t.market_ticker, self.ticker(t), _ticker_ms(t.ts_ms, t.ts)
        digest = _h("\x1f".join(parts).encode())
        ms = _ticker_ms(m.ts_ms, m.ts)
        return m.market_ticker, f"k:{digest}:{self._occurrence(digest, ms)}", ms

    def ticker(self, m: TickerMsg) -> str:
        """``k:`` key from the ticker fields ``messages.TickerMsg`` knows (numbers normalised and checked)."""
        _check_ticker(m)
        parts = [
            "" if v is None else (norm_decimal(v) if isinstance(v, Decimal) else str(v))
            for v in msgspec.structs.astuple(m)
        ]
        digest = _h("\x1f".join(parts).encode())
        return f"k:{digest}:{self._occurrence(digest, _ticker_ms(m.ts_ms, m.ts))}"

    @staticmethod
    def trade(m: TradeMsg) -> str:
        check_number(m.yes_price_dollars, "yes_price_dollars", PRICE)
        check_number(m.no_price_dollars, "no_price_dollars", PRICE)
        check_number(m.count_fp, "count_fp", SIZE)
        return "t:" + m.trade_id

    @staticmethod
    def snapshot_body(body: bytes, check_market: Callable[[str], object]) -> tuple[str, str]:
        """``(market, key)`` of an orderbook_snapshot body; the key equals :meth:`snapshot` of its ``SnapshotMsg``.

        The numbers are read as the venue's strings and normalised through the cache the deltas use (a snapshot
        repeats a few prices and sizes). A body this path cannot take (numbers sent as JSON numbers, anything
        ``check_market`` or the number checks refuse) goes through the Decimal path, which decides the error:
        decoding first, then ``check_market``, then the numbers. One known difference, shared with
        :meth:`delta_body`: in a body that repeats a key, both decoders keep the last copy, but the Decimal decoder
        also refuses an earlier copy that is not a number, where this path never looks at it (the venue does not
        repeat keys; dedup's normaliser dead-letters such a snapshot's payload later)."""
        if _snapshot_parts is not None:
            parts = _snapshot_parts(body)
            if parts is not None:  # the C accelerator's shape: the same key as below, once the market passes
                market, digest = parts
                try:
                    check_market(market)
                except ValueError:
                    pass  # the paths below raise it, in their order
                else:
                    return market, "s:" + digest
        try:
            m = _snapshot_text.decode(body)
            check_market(m.market_ticker)
            yes = _levels_text(m.yes_dollars_fp, "yes_dollars_fp")
            no = _levels_text(m.no_dollars_fp, "no_dollars_fp")
        except ValueError:  # msgspec.DecodeError too: the Decimal path, in its order (decode, market, numbers)
            d = _snapshot.decode(body)
            check_market(d.market_ticker)
            return d.market_ticker, EventKeyer.snapshot(d)
        return m.market_ticker, "s:" + _h(f"{m.market_ticker}\x1fyes\x1f{yes}\x1fno\x1f{no}".encode())

    @staticmethod
    def snapshot(m: SnapshotMsg) -> str:
        for side, levels in (("yes_dollars_fp", m.yes_dollars_fp), ("no_dollars_fp", m.no_dollars_fp)):
            for price, count in levels:
                check_number(price, side, PRICE)
                check_number(count, side, SIZE)
        yes = ";".join(f"{norm_decimal(p)},{norm_decimal(c)}" for p, c in sorted(m.yes_dollars_fp))
        no = ";".join(f"{norm_decimal(p)},{norm_decimal(c)}" for p, c in sorted(m.no_dollars_fp))
        return "s:" + _h(f"{m.market_ticker}\x1fyes\x1f{yes}\x1fno\x1f{no}".encode())

    @staticmethod
    def body_digest(market: str, body: bytes) -> str:
        """``h(market, canonical body)``: a lifecycle message's content, positioned by :mod:`venues.kalshi.anchors`."""
        return _h(market.encode() + b"\x1f" + canonical(body))


def _delta_ms(ts_ms: int | None, ts: str | None) -> int | None:
    if ts_ms is not None:
        return ts_ms
    if ts:
        from venues.kalshi.messages import rfc3339_ms

        return rfc3339_ms(ts)
    return None


def _ticker_ms(ts_ms: int | None, ts_s: int | None) -> int | None:
    if ts_ms is not None:
        return ts_ms
    return ts_s * 1000 if ts_s is not None else None
