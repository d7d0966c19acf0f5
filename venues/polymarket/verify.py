"""The emulator's ground truth in Polymarket's terms, for ``mdpipe verify`` (pure logic, no I/O).

The emulator generates venue-neutral events on its own market tickers (:mod:`venue_sim.truth`); its Polymarket
profile (:mod:`venues.polymarket.emulator`) sends each one as ``market`` channel messages of the market's two tokens
and records subscriptions by token. :class:`Translator` replays the profile's translation from the run's seed (the
profile is deterministic: same seed, same books, same messages), so verify expects exactly what the venue sent:

- **events**: a delta -> one ``price_change`` with an entry per token -> two expected book deltas (``delta`` = the
  level's NEW size); a trade -> a ``last_trade_price`` per token -> two expected trades; tickers and lifecycle
  messages have no ``market`` channel counterpart and expect nothing. Each message is normalised by the venue's own
  :func:`venues.polymarket.normalise.message_to_event` (the path dedup takes). An event whose body is invalid on
  purpose (``BadMessage``) becomes the profile's invalid ``price_change``; its normalisation error is passed on.
- **snapshots sent**: the ``book`` the venue sends a connection when it subscribes a token (the token's book after
  the ``Subscribed`` record's ``after_id``) and the two ``book`` messages after every trade.
- **record**: ``MarketLive`` and ``BookCheckpoint`` of a ticker become one per token (the NO token's book is the
  mirror: its bids are the NO ladder, its asks the YES ladder at ``1 - p``); everything else is already per token.
- every event kind travels on the one ``market`` channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from sink.book import Book
from venue_sim.markets import MarketTable
from venue_sim.record import BookCheckpoint, MarketLive, Subscribed
from venues.polymarket.emulator import CH_ORDERBOOK, CH_TRADE, CHANNEL, Out, Profile
from venues.polymarket.normalise import change_payload, message_to_event

__all__ = ["Translator", "market_index"]

_CHANNEL_NUMBER = {"delta": CH_ORDERBOOK, "trade": CH_TRADE}  # the emulator's channel of the kinds it translates
_json = msgspec.json.Encoder()


class _Entries(msgspec.Struct):
    market: str
    timestamp: str
    price_changes: list[msgspec.Raw]


class _Asset(msgspec.Struct):
    asset_id: str = ""


_entries = msgspec.json.Decoder(_Entries)
_asset = msgspec.json.Decoder(_Asset)


def market_index(ticker: str) -> int | None:
    """The emulator's market index of one of its tickers (:meth:`venue_sim.markets.MarketTable.ticker`), else None."""
    _, sep, num = ticker.rpartition("-M")
    if not sep or not num.isdigit():
        return None
    i = int(num)
    return i if MarketTable.ticker(i) == ticker else None


def _normalise(kind: str, payload: bytes, market: str) -> Any:
    try:
        return message_to_event(kind, payload, market=market, event_key="", recv_ns=0, gatherer="")
    except (ValueError, ArithmeticError) as exc:  # SchemaError is a ValueError
        return exc


class Translator:
    """One verified run's translation (see module docstring); :meth:`record` before :meth:`truth`."""

    channel_of_kind = dict.fromkeys(("delta", "trade", "ticker", "lifecycle"), CHANNEL)

    def __init__(self, seed: int) -> None:
        self.profile = Profile(seed, MarketTable.ticker)
        self._subscribed: list[tuple[int, str]] = []  # (after_id, token) of every subscription of a token

    def tokens(self, ticker: str) -> tuple[str, str] | None:
        """(YES token, NO token) of an emulator ticker; None for a name that is no market (an event ticker)."""
        m = market_index(ticker)
        if m is None:
            return None
        _, yes, no = self.profile.ids(m)
        return yes, no

    def record(self, records: Iterable[Any]) -> Iterator[Any]:
        """The record with its ticker-level facts per token; notes every subscription for :meth:`truth`."""
        replace = msgspec.structs.replace
        for r in records:
            if isinstance(r, Subscribed):
                self._subscribed.extend((r.after_id, token) for token in r.markets)
            elif isinstance(r, MarketLive | BookCheckpoint):
                tokens = self.tokens(r.market)
                if tokens is not None:
                    yes, no = tokens
                    yield replace(r, market=yes)
                    yield (
                        replace(r, market=no, yes=r.no, no=r.yes)
                        if isinstance(r, BookCheckpoint)
                        else replace(r, market=no)
                    )
                    continue
            yield r

    def truth(self, events: Iterable[Any], sent: Callable[[str, Book], None]) -> Iterator[tuple[Any, str, str, Any]]:
        """Per emulator event ``ev``: ``(ev, kind, token, Event or exception)`` of each message it became; every book
        the venue sent goes to ``sent(token, book)``."""
        profile = self.profile
        subs = sorted(self._subscribed)
        k = 0
        for ev in events:
            while k < len(subs) and subs[k][0] < ev.id:  # subscribed after event subs[k][0]: the book then
                self._book_sent(subs[k][1], sent)
                k += 1
            m = market_index(ev.market) if ev.kind in _CHANNEL_NUMBER else None
            if m is None:
                continue
            for out in profile.translate(ev.id, _CHANNEL_NUMBER[ev.kind], m, ev.ts_ms, ev.msg):
                yield from self._messages(ev, out, sent)
        for _, token in subs[k:]:
            self._book_sent(token, sent)

    def _book_sent(self, token: str, sent: Callable[[str, Book], None]) -> None:
        known = self.profile.asset(token)
        if known is not None:
            self._sent(self.profile.book(known[0], known[1], self.profile.clock_ms), sent)

    @staticmethod
    def _sent(out: Out, sent: Callable[[str, Book], None]) -> None:
        token = out.assets[0]
        snap = message_to_event("snapshot", out.data, market=token, event_key="", recv_ns=0, gatherer="")
        sent(token, Book.of(snap.yes, snap.no))  # type: ignore[union-attr]

    def _messages(self, ev: Any, out: Out, sent: Callable[[str, Book], None]) -> Iterator[tuple[Any, str, str, Any]]:
        if not out.event_id:  # a book (after a trade)
            self._sent(out, sent)
            return
        if ev.kind == "trade":
            token = out.assets[0]
            yield ev, "trade", token, _normalise("trade", out.data, token)
            return
        msg = _entries.decode(out.data)
        for raw in msg.price_changes:
            entry = bytes(raw)
            token = _asset.decode(entry).asset_id
            payload = change_payload(msg.market, int(msg.timestamp), entry)
            yield ev, "delta", token, _normalise("delta", payload, token)
