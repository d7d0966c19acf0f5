"""Books as the emulator's Kalshi protocol spells them: snapshot level lists, ``orderbook_snapshot`` bodies and the
REST ``orderbook_fp`` object, from the emulator's two bid ladders (:class:`venue_sim.book.Books`). Pure functions.

:func:`wire_levels` is also how the venue's record keeps a book (snapshots sent, book checkpoints): the exact
strings a snapshot carries, so verify compares strings.
"""

from __future__ import annotations

from venues.kalshi.emulator_wire import PRICE, count_fp

__all__ = ["LEVEL_SPAN", "Level", "rest_orderbook", "snapshot_json", "wire_levels"]

LEVEL_SPAN = 10  # price levels per side (venue_sim.book.LEVEL_SPAN: slots 0..9 YES, 10..19 NO)

Level = tuple[str, str]  # (price_dollars, count_fp) as the wire spells them


def wire_levels(mid: int, slots: list[int], use_yes_price: bool = False) -> tuple[list[Level], list[Level]]:
    """(YES bids, NO bids) of a book with ``mid`` and 20 ``slots``, ascending by price, empty levels left out.

    NO bids are NO-leg prices (what a subscriber without ``use_yes_price`` receives) unless ``use_yes_price``,
    which expresses them as YES prices (1 - p)."""
    yes = [(PRICE[mid - 1 - k], count_fp(slots[k])) for k in range(LEVEL_SPAN - 1, -1, -1) if slots[k]]
    if use_yes_price:
        no = [(PRICE[1 + mid + k], count_fp(slots[LEVEL_SPAN + k])) for k in range(LEVEL_SPAN) if slots[LEVEL_SPAN + k]]
    else:
        ks = range(LEVEL_SPAN - 1, -1, -1)
        no = [(PRICE[99 - mid - k], count_fp(slots[LEVEL_SPAN + k])) for k in ks if slots[LEVEL_SPAN + k]]
    return yes, no


def snapshot_json(ticker: str, market_id: str, yes: list[Level], no: list[Level]) -> str:
    """``msg`` of an ``orderbook_snapshot`` from its level lists (a side's key is absent when it is empty)."""
    parts = [f'{{"market_ticker":"{ticker}","market_id":"{market_id}"']
    if yes:
        parts.append(',"yes_dollars_fp":[' + ",".join([f'["{p}","{c}"]' for p, c in yes]) + "]")
    if no:
        parts.append(',"no_dollars_fp":[' + ",".join([f'["{p}","{c}"]' for p, c in no]) + "]")
    parts.append("}")
    return "".join(parts)


def rest_orderbook(yes: dict[int, int], no: dict[int, int], depth: int) -> dict[str, object]:
    """REST ``{"orderbook_fp":{"yes_dollars":[[p,c]],"no_dollars":[[p,c]]}}`` ascending from a book's ladders
    (price cents -> size hundredths); ``depth`` 0 = all levels, else the best ``depth`` of each side."""
    out: dict[str, list[list[str]]] = {}
    for name, levels in (("yes_dollars", yes), ("no_dollars", no)):
        prices = sorted(levels)
        if depth > 0:
            prices = prices[-depth:]
        out[name] = [[PRICE[p], count_fp(levels[p])] for p in prices]
    return {"orderbook_fp": out}
