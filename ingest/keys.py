"""Event keys: the identity of a venue event, derived from a Kalshi message BODY only (never sid/seq).

Redundant gatherers receive copies of one venue event on different connections, with different
``sid``/``seq``; dedup keeps the first copy per ``event_key``. Canonical form: every number (JSON number or
numeric string) is an exact Decimal normalised so ``"0.43"``, ``"0.4300"`` and ``0.43`` agree; objects are
key-sorted. ``h(...)`` below is the first 8 bytes of BLAKE2b of the canonical text, in hex. The occurrence
number ``n`` is 1 + how many identical bodies (same market, same hash) this gatherer saw within the last
``window_s`` seconds of its receive clock (two rotating generations, so memory is bounded by rate x window).

Per type, the key and where it can still go wrong:

- trade ``t:<trade_id>``: the venue id. Merges or splits nothing (unless the venue reuses an id).
- delta ``d:<h(market, side, price, delta, ts_ms)>:<n>``. Two real identical deltas (same ms) stay two
  (n=1, n=2). MERGE: a gatherer that missed the first of two identical deltas labels the second n=1; dedup
  still gets both from any gatherer that saw both, but if every gatherer missed a different one of them, one
  event is lost. SPLIT: a gatherer whose window expired between two identical bodies (only possible when
  ``ts_ms`` is absent or the window is shorter than the venue's repeat interval) restarts at n=1 while another
  says n=2, so one real event can surface as two, or two as one. A restarted gatherer restarts counting.
- ticker ``k:<h(the fields of schemas.kalshi.TickerMsg, normalised)>:<n>``: same MERGE/SPLIT cases as deltas;
  the body carries ``ts_ms`` and cumulative volume, so identical bodies are rare and usually true repeats.
  Fields unknown to ``TickerMsg`` (deprecated ``ts``/``time`` strings) are not part of the key.
- lifecycle ``l:<h(canonical body)>:<n>``: as ticker. A body without a timestamp (e.g. ``activated``) that
  repeats after more than ``window_s`` restarts at n=1 on every gatherer alike, so dedup MERGES it with the
  earlier one while dedup's own window still holds that key.
- snapshot ``s:<h(market, sorted yes levels, sorted no levels)>``: no occurrence number, so two snapshots of
  the same book state MERGE (on purpose: snapshots are state, not events; each gatherer takes its own at
  different times, so copies only agree when the book is unchanged). Level order on the wire does not matter.

Hot path: :meth:`EventKeyer.delta_body` and :meth:`EventKeyer.ticker_body` decode the body with the numbers kept
as the venue's strings (structs derived from ``DeltaMsg``/``TickerMsg``) and normalise each distinct string once
(a bounded cache, each entry computed exactly as the Decimal path would). A body whose numbers are JSON numbers, or
that is invalid, takes the Decimal path (:meth:`EventKeyer.delta`/:meth:`EventKeyer.ticker`): same keys, same errors.
"""

from __future__ import annotations

import re
from decimal import Decimal
from hashlib import blake2b
from typing import Any

import msgspec

from schemas.kalshi import DeltaMsg, SnapshotMsg, TickerMsg, TradeMsg

__all__ = ["EventKeyer", "canonical", "norm_decimal"]

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_generic = msgspec.json.Decoder(float_hook=Decimal)
_canon_encoder = msgspec.json.Encoder(order="sorted")
_blake = blake2b(digest_size=8)  # copied per hash: much cheaper than building a new hasher with its parameters


def norm_decimal(value: Decimal | int | str) -> str:
    """Exact, normalised text of a number: 0.4300 -> "0.43", 5.00 -> "5", -0.0 -> "0", 1E+2 -> "100"."""
    d = (value if isinstance(value, Decimal) else Decimal(value)).normalize()
    s = str(d)
    if "E" in s:
        s = format(d, "f")
    return "0" if s == "-0" else s


def _canon_value(value: Any) -> Any:
    if isinstance(value, str):
        return norm_decimal(value) if _NUMBER.match(value) else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | Decimal):
        return norm_decimal(value)
    if isinstance(value, dict):
        return {k: _canon_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon_value(v) for v in value]
    return value


def canonical(body: bytes) -> bytes:
    """Canonical JSON of a message body: sorted keys, numbers (and numeric strings) normalised."""
    return _canon_encoder.encode(_canon_value(_generic.decode(body)))


def _h(data: bytes) -> str:
    h = _blake.copy()
    h.update(data)
    return h.hexdigest()


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
_delta_text = msgspec.json.Decoder(_DeltaText, strict=False)
_ticker_text = msgspec.json.Decoder(_TickerText, strict=False)
_delta = msgspec.json.Decoder(DeltaMsg, strict=False)
_ticker = msgspec.json.Decoder(TickerMsg, strict=False)
_NORM_MAX = 1 << 16
_norm: dict[str | None, str] = {None: ""}


def _norm_text(text: str | None) -> str:
    """``norm_decimal`` of a number the venue sent as a string, as the Decimal decoders parse it (cached)."""
    out = _norm.get(text)
    if out is None:
        out = norm_decimal(msgspec.convert(text, Decimal, strict=False))  # ValidationError like the decoders
        if len(_norm) >= _NORM_MAX:
            _norm.clear()
            _norm[None] = ""
        _norm[text] = out
    return out


class EventKeyer:
    """Derives ``(market, event_key)`` per message kind and keeps the bounded occurrence counters."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_ns = int(window_s * 1e9)
        self._half = max(1, self.window_ns // 2)
        self._cur: dict[str, int] = {}
        self._prev: dict[str, int] = {}
        self._rotate_at = 0

    def _occurrence(self, digest: str, now_ns: int) -> int:
        if now_ns >= self._rotate_at:
            if self._rotate_at and now_ns - self._rotate_at < self._half:
                self._prev = self._cur  # one half-window passed: the current generation becomes the old one
            else:
                self._prev = {}  # idle longer than a window: everything expired
            self._cur = {}
            self._rotate_at = now_ns + self._half
        cur = self._cur
        n = cur.get(digest)
        if n is None:
            n = self._prev.get(digest, 0)
        n += 1
        cur[digest] = n
        return n

    @property
    def tracked(self) -> int:
        """Bodies currently remembered (both generations)."""
        return len(self._cur) + len(self._prev)

    def delta(self, m: DeltaMsg, now_ns: int) -> str:
        text = f"{m.market_ticker}\x1f{m.side}\x1f{norm_decimal(m.price_dollars)}\x1f{norm_decimal(m.delta_fp)}"
        digest = _h(f"{text}\x1f{m.ts_ms if m.ts_ms is not None else m.ts}".encode())
        return f"d:{digest}:{self._occurrence(digest, now_ns)}"

    def delta_body(self, body: bytes, now_ns: int) -> tuple[str, str]:
        """``(market, key)`` of an orderbook_delta body; equal to :meth:`delta` of its ``DeltaMsg``."""
        try:
            m = _delta_text.decode(body)
            price = _norm_text(m.price_dollars)
            size = _norm_text(m.delta_fp)
        except msgspec.DecodeError:  # numbers sent as JSON numbers, or an invalid body: the Decimal path
            d = _delta.decode(body)
            return d.market_ticker, self.delta(d, now_ns)
        ts = m.ts_ms if m.ts_ms is not None else m.ts
        digest = _h(f"{m.market_ticker}\x1f{m.side}\x1f{price}\x1f{size}\x1f{ts}".encode())
        return m.market_ticker, f"d:{digest}:{self._occurrence(digest, now_ns)}"

    def ticker_body(self, body: bytes, now_ns: int) -> tuple[str, str]:
        """``(market, key)`` of a ticker body; equal to :meth:`ticker` of its ``TickerMsg``."""
        try:
            m = _ticker_text.decode(body)
            parts = [
                _norm_text(v) if num else ("" if v is None else str(v))
                for v, num in zip(msgspec.structs.astuple(m), _TICKER_NUMERIC, strict=True)
            ]
        except msgspec.DecodeError:
            t = _ticker.decode(body)
            return t.market_ticker, self.ticker(t, now_ns)
        digest = _h("\x1f".join(parts).encode())
        return m.market_ticker, f"k:{digest}:{self._occurrence(digest, now_ns)}"

    @staticmethod
    def trade(m: TradeMsg) -> str:
        return "t:" + m.trade_id

    @staticmethod
    def snapshot(m: SnapshotMsg) -> str:
        yes = ";".join(f"{norm_decimal(p)},{norm_decimal(c)}" for p, c in sorted(m.yes_dollars_fp))
        no = ";".join(f"{norm_decimal(p)},{norm_decimal(c)}" for p, c in sorted(m.no_dollars_fp))
        return "s:" + _h(f"{m.market_ticker}\x1fyes\x1f{yes}\x1fno\x1f{no}".encode())

    def ticker(self, m: TickerMsg, now_ns: int) -> str:
        """``k:`` key from the ticker fields ``schemas.kalshi.TickerMsg`` knows (numbers normalised)."""
        parts = [
            "" if v is None else (norm_decimal(v) if isinstance(v, Decimal) else str(v))
            for v in msgspec.structs.astuple(m)
        ]
        digest = _h("\x1f".join(parts).encode())
        return f"k:{digest}:{self._occurrence(digest, now_ns)}"

    def body(self, prefix: str, market: str, body: bytes, now_ns: int) -> str:
        """Key for ticker (``k``) and lifecycle (``l``) messages: hash of the canonical body + occurrence."""
        digest = _h(market.encode() + b"\x1f" + canonical(body))
        return f"{prefix}:{digest}:{self._occurrence(digest, now_ns)}"
