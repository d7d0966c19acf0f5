"""Event keys of Polymarket's ``market`` channel: equal for every gatherer's copy of one venue message, different for
two distinct messages. Pure logic (no I/O, no clock).

What Polymarket gives (``venues.polymarket.wire``): no sequence number, no subscription id, no trade id; every message
has a venue ``timestamp`` (epoch ms) and its token (``asset_id``); books and price_change entries carry a ``hash``
(a fingerprint of the book: its exact recipe does not always reproduce [3p], so it is not used as a validator). The
venue has no per-connection field at all, so the body of one message is the same on every socket [inference: no
published byte comparison]. The session (one connection) gets each subscribed asset's messages in the venue's order.

So the key is the body's content plus, where two distinct messages can have the same content, a position every
gatherer derives alike: the occurrence number ``n`` of that content in the same venue millisecond, counted in arrival
order (the venue's order on the asset's subscription). Numbers are canonical (``".48"`` == ``"0.480"``); ``h(...)`` is
the first 8 bytes of BLAKE2b in hex over the fields joined by ``\\x1f``.

- book ``b:<h(asset, timestamp, sorted bids, sorted asks)>``: state, not an event (books are also sent to one
  connection alone, on its subscription). Copies of one book agree; two books of one asset with the same timestamp
  and the same levels merge on purpose (same state). ``hash``, ``tick_size``, ``last_trade_price`` are left out: the
  last one is reported only in the first book after connecting [3p].
- price_change entry ``p:<h(asset, timestamp, side, price, size)>:<n>``: ``n`` numbers the IDENTICAL changes (same
  level (asset, side, price), same new size) in the same venue millisecond, as for trades below. It does not count
  the level's other changes: a gatherer that did not receive an earlier change of the level in that millisecond (the
  venue lost it on that connection, which nothing on this wire reveals when the next change states the level's new
  size; or its subscription began after it) still keys every later one as the other gatherers do. The ORDER of one
  level's changes in a millisecond, which a book rebuild needs (a price_change REPLACES a level's size: changes to one
  level do not commute, changes to different levels do), is returned apart, as the ``ordinal`` of the change: the
  number of the level's changes in the millisecond counted so far, whatever their sizes (it travels in the RawFrame,
  not in the key). ``hash``/``best_bid``/``best_ask`` are derived from the book and left out (fewer assumptions about
  their stability across sockets).
- last_trade_price ``t:<h(asset, timestamp, price, size, side, fee_rate_bps, transaction_hash)>:<n>`` and
  tick_size_change ``z:<h(asset, timestamp, old, new)>:<n>``: ``n`` numbers identical bodies in the millisecond
  (two identical fills in one millisecond stay two; there is no trade id).

Where it can still go wrong: a gatherer that did not receive an earlier IDENTICAL body in the same millisecond
(price_change, trade or tick) numbers the later one one lower, which is the earlier twin's key; never a key that no
message has. Dedup keeps both twins as long as one gatherer delivered both. If every gatherer missed one of the two
(different ones), the twins share one row: a lost event, and for a price_change with another change of the level
between the twins (size 5, then 3, then 5 again) a wrong size at that millisecond. The key counted every change of
the level before; a single gatherer's loss then gave a key no message had (a duplicate row, which the e2e test met),
where now losses on every gatherer at once are needed. A gatherer's ``ordinal`` of a change is low by the level's
changes it did not receive in that millisecond, never more than the venue sent before the message its copy is (which
is the later twin's position when its key is the earlier twin's, above). The dedup stage keeps the highest any copy
carried (a later copy that counts more than the one it stored raises the row's, :mod:`dedup_stream.logic`
"Ordinals"), so the row sorts right when one gatherer received every earlier change of the level in that
millisecond; when every gatherer lost one, it may sort before a change that preceded it (the level's size at that
millisecond is then the earlier change's until the level changes again or a ``book`` comes). A re-delivered message
is indistinguishable from a second identical one and gets ``n + 1`` (a duplicate row). Counters are forgotten by
VENUE time (``horizon_ms`` behind the newest timestamp seen); a
copy older than that gets ``n = 0``, which no first copy has (never a merge), and ordinal 0.
"""

from __future__ import annotations

from hashlib import blake2b

from venues.occurrences import Occurrences
from venues.polymarket.numbers import PRICE, SIZE, check, norm
from venues.polymarket.wire import BookMsg, LastTradePriceMsg, Level, PriceChange, TickSizeChangeMsg

__all__ = ["PolymarketKeyer", "digest", "level_text"]

_blake = blake2b(digest_size=8)


def digest(text: str) -> str:
    h = _blake.copy()
    h.update(text.encode())
    return h.hexdigest()


def level_text(levels: list[tuple[str, str]]) -> str:
    return ";".join(f"{p},{s}" for p, s in levels)


class PolymarketKeyer:
    """Keys per message type (module docstring). One per gatherer connection's session, surviving its reconnects;
    an asset is subscribed on one connection only, so its counters see each message once."""

    def __init__(self, horizon_ms: int = 120_000) -> None:
        self._seen = Occurrences(horizon_ms, late=0)  # a number no first copy gets
        self.late = 0  # copies older than the horizon (keyed n = 0)

    @property
    def tracked(self) -> int:
        return len(self._seen)

    def _n(self, key: str, ts_ms: int) -> int:
        n = self._seen.next(key, ts_ms)
        if n == 0:
            self.late += 1
        return n

    @staticmethod
    def book(m: BookMsg) -> str:
        bids = _levels(m.bids, "bids")
        asks = _levels(m.asks, "asks")
        return "b:" + digest(_join(m.asset_id, m.timestamp, "bids", level_text(bids), "asks", level_text(asks)))

    def change(self, ts_ms: int, e: PriceChange) -> tuple[str, int]:
        """``(event key, ordinal)`` of one price_change entry (module docstring)."""
        price = norm(check(e.price, "price", PRICE))
        size = norm(check(e.size, "size", SIZE))
        level = _join(e.asset_id, ts_ms, e.side, price)
        body = digest(level + "\x1f" + size)
        n = self._n("p" + body, ts_ms)
        return f"p:{body}:{n}", self._seen.next(level, ts_ms) if n else 0

    def trade(self, m: LastTradePriceMsg) -> str:
        price = norm(check(m.price, "price", PRICE))
        size = norm(check(m.size, "size", SIZE))
        fee = "" if m.fee_rate_bps is None else norm(check(m.fee_rate_bps, "fee_rate_bps", SIZE))
        body = digest(_join(m.asset_id, m.timestamp, price, size, m.side, fee, m.transaction_hash))
        return f"t:{body}:{self._n('t' + body, m.timestamp)}"

    def tick(self, m: TickSizeChangeMsg) -> str:
        old = norm(check(m.old_tick_size, "old_tick_size", PRICE))
        new = norm(check(m.new_tick_size, "new_tick_size", PRICE))
        body = digest(_join(m.asset_id, m.timestamp, old, new))
        return f"z:{body}:{self._n('z' + body, m.timestamp)}"


def _levels(levels: list[Level], field: str) -> list[tuple[str, str]]:
    """Canonical ``(price, size)`` texts of a book side, sorted by price (numbers checked)."""
    out = [(check(lv.price, field, PRICE), check(lv.size, field, SIZE)) for lv in levels]
    return [(norm(p), norm(s)) for p, s in sorted(out)]


def _join(*parts: object) -> str:
    return "\x1f".join(str(p) for p in parts)
