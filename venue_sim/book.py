"""Order books of every market: two bid-only ladders (YES bids, NO bids) of size per price.

Prices are integer cents (1..99), sizes integer hundredths of a contract. A market nobody touched has no
stored book: its initial book is derived from (seed, index) on demand, so a million quiet markets cost
nothing. Sides never go negative and never cross (YES bids below ``mid``, NO bids below ``100 - mid``).
Renders snapshot bodies for the WebSocket and the REST ``orderbook_fp`` object.
"""

from __future__ import annotations

from venue_sim.wire import PRICE, count_fp

__all__ = ["Book", "Books", "mix64"]

MASK64 = (1 << 64) - 1
LEVEL_SPAN = 10  # a side's prices lie in [base - 9, base]


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class Book:
    """One market's book plus the trading figures its ticker reports."""

    __slots__ = ("last_delta", "last_price", "mid", "no", "open_interest", "volume", "yes")

    def __init__(self, mid: int, yes: dict[int, int], no: dict[int, int]) -> None:
        self.mid = mid
        self.yes = yes
        self.no = no
        self.last_price = mid
        self.volume = 0
        self.open_interest = 0
        # (side, price, delta, ts_ms, body, body_yes) of the last delta: the identical-repeat case.
        self.last_delta: tuple[str, int, int, int, str, str] | None = None

    def side(self, side: str) -> dict[int, int]:
        return self.yes if side == "yes" else self.no

    def base(self, side: str) -> int:
        """Highest price a bid on ``side`` may take without crossing the other side."""
        return self.mid - 1 if side == "yes" else 99 - self.mid

    def apply(self, side: str, price: int, delta: int) -> None:
        levels = self.yes if side == "yes" else self.no
        new = levels.get(price, 0) + delta
        if new < 0:
            raise ValueError(f"book would go negative at {side} {price}: {new}")
        if new:
            levels[price] = new
        else:
            levels.pop(price, None)

    def top(self) -> tuple[int, int, int, int]:
        """(best YES bid, YES ask = 100 - best NO bid, their sizes); empty side -> 0 / 100 and size 0."""
        yes_bid = max(self.yes) if self.yes else 0
        no_bid = max(self.no) if self.no else 0
        return (
            yes_bid,
            100 - no_bid,
            self.yes.get(yes_bid, 0),
            self.no.get(no_bid, 0),
        )


def _initial(seed: int, i: int) -> Book:
    h = mix64((seed * 1_000_003 + i) & MASK64)
    mid = 20 + h % 61
    nlev = (h >> 8) % 4
    yes: dict[int, int] = {}
    no: dict[int, int] = {}
    for k in range(nlev):
        yes[mid - 1 - 2 * k] = 100 * (1 + (h >> (16 + 6 * k)) % 50)
        no[99 - mid - 2 * k] = 100 * (1 + (h >> (40 + 6 * k)) % 50)
    return Book(mid, yes, no)


class Books:
    """Books keyed by market index; materialised on first change."""

    __slots__ = ("_books", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._books: dict[int, Book] = {}

    def __len__(self) -> int:
        return len(self._books)

    def get(self, i: int) -> Book:
        """The book of market ``i`` for changing it (stored from now on)."""
        book = self._books.get(i)
        if book is None:
            book = self._books[i] = _initial(self.seed, i)
        return book

    def peek(self, i: int) -> Book:
        """The book of market ``i`` for reading only (not stored if untouched)."""
        book = self._books.get(i)
        return book if book is not None else _initial(self.seed, i)

    def snapshot_body(self, i: int, ticker: str, market_id: str, use_yes_price: bool) -> str:
        """``msg`` of an ``orderbook_snapshot``: levels ascending by price, empty sides omitted."""
        book = self.peek(i)
        parts = [f'{{"market_ticker":"{ticker}","market_id":"{market_id}"']
        if book.yes:
            levels = ",".join(f'["{PRICE[p]}","{count_fp(book.yes[p])}"]' for p in sorted(book.yes))
            parts.append(f',"yes_dollars_fp":[{levels}]')
        if book.no:
            if use_yes_price:
                prices = sorted(book.no, reverse=True)
                levels = ",".join(f'["{PRICE[100 - p]}","{count_fp(book.no[p])}"]' for p in prices)
            else:
                levels = ",".join(f'["{PRICE[p]}","{count_fp(book.no[p])}"]' for p in sorted(book.no))
            parts.append(f',"no_dollars_fp":[{levels}]')
        parts.append("}")
        return "".join(parts)

    def rest_orderbook(self, i: int, depth: int) -> dict[str, object]:
        """REST ``{"orderbook_fp":{"yes_dollars":[[p,c]],"no_dollars":[[p,c]]}}``; depth 0 = all levels."""
        book = self.peek(i)
        out: dict[str, list[list[str]]] = {}
        for name, levels in (("yes_dollars", book.yes), ("no_dollars", book.no)):
            prices = sorted(levels)
            if depth > 0:
                prices = prices[-depth:]
            out[name] = [[PRICE[p], count_fp(levels[p])] for p in prices]
        return {"orderbook_fp": out}
