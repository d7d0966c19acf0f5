"""Order books of every market in flat arrays: two bid-only ladders (YES bids, NO bids) per market.

Prices are integer cents, sizes integer hundredths of a contract. Each market has a fixed ``mid`` (from
the seed); its YES bids live at prices ``mid-1 .. mid-10`` and its NO bids at ``99-mid .. 90-mid``, so the
book never crosses and fits 20 slots. All markets share one ``array('i')`` of 20 slots each (80 bytes per
market, about 100 MB with the per-market counters for a million markets, whatever the run length). An
untouched market's book is derived from (seed, index) on demand; the first change stores it. Sizes never
go negative. How a venue spells a book (snapshots, REST order books, the level lists the venue's record keeps) is
its emulator profile's; the default venue's ``wire_levels`` is the record's spelling.
"""

from __future__ import annotations

from array import array

__all__ = ["LEVEL_SPAN", "SLOTS", "BookView", "Books", "mix64"]

MASK64 = (1 << 64) - 1
LEVEL_SPAN = 10  # price levels per side
SLOTS = 2 * LEVEL_SPAN


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread hash of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


class BookView:
    """A read-only copy of one market's book: ``yes``/``no`` map price (cents) -> size (hundredths)."""

    __slots__ = ("last_price", "mid", "no", "open_interest", "volume", "yes")

    def __init__(self, mid: int, yes: dict[int, int], no: dict[int, int], last: int, vol: int, oi: int) -> None:
        self.mid = mid
        self.yes = yes
        self.no = no
        self.last_price = last
        self.volume = vol
        self.open_interest = oi

    def top(self) -> tuple[int, int, int, int]:
        """(best YES bid, YES ask = 100 - best NO bid, their sizes); empty side -> 0 / 100 and size 0."""
        yes_bid = max(self.yes) if self.yes else 0
        no_bid = max(self.no) if self.no else 0
        return yes_bid, 100 - no_bid, self.yes.get(yes_bid, 0), self.no.get(no_bid, 0)


class Books:
    """Books of markets ``0 .. len-1``, plus the trading figures tickers and REST report."""

    def __init__(self, seed: int, count: int = 0) -> None:
        self.seed = seed
        self.levels = array("i")
        self.touched = bytearray()
        self.mids = bytearray()  # 0 = not computed yet
        self.last_price = bytearray()
        self.volume = array("q")
        self.open_interest = array("q")
        self.last_trade = array("i")  # size of the market's last trade (hundredths)
        self.grow(count)

    def __len__(self) -> int:
        """Markets whose book was changed at least once."""
        return len(self.touched) - self.touched.count(0)

    def grow(self, count: int) -> None:
        """Make room for markets up to ``count`` (new markets start untouched)."""
        extra = count - len(self.touched)
        if extra <= 0:
            return
        self.levels.frombytes(bytes(4 * SLOTS * extra))
        self.touched.extend(bytes(extra))
        self.mids.extend(bytes(extra))
        self.last_price.extend(bytes(extra))
        self.volume.frombytes(bytes(8 * extra))
        self.open_interest.frombytes(bytes(8 * extra))
        self.last_trade.frombytes(bytes(4 * extra))

    def _hash(self, m: int) -> int:
        return mix64((self.seed * 1_000_003 + m) & MASK64)

    def mid(self, m: int) -> int:
        v = self.mids[m]
        if not v:
            v = self.mids[m] = 20 + self._hash(m) % 61
        return v

    def initial_slots(self, m: int) -> list[int]:
        """The 20 slot sizes of market ``m`` before any change (slot k = price base - k per side)."""
        h = self._hash(m)
        slots = [0] * SLOTS
        for k in range((h >> 8) % 4):
            slots[2 * k] = 100 * (1 + (h >> (16 + 6 * k)) % 50)
            slots[LEVEL_SPAN + 2 * k] = 100 * (1 + (h >> (40 + 6 * k)) % 50)
        return slots

    def touch(self, m: int) -> int:
        """Store market ``m``'s book for changing; returns its first slot index in ``levels``."""
        base = m * SLOTS
        if not self.touched[m]:
            self.touched[m] = 1
            self.levels[base : base + SLOTS] = array("i", self.initial_slots(m))
            self.last_price[m] = self.mid(m)
        return base

    def slots(self, m: int) -> list[int]:
        if self.touched[m]:
            base = m * SLOTS
            return self.levels[base : base + SLOTS].tolist()
        return self.initial_slots(m)

    def apply(self, m: int, side: str, price: int, delta: int) -> None:
        """``level[side][price] += delta`` (raises ValueError if it would go negative or off the ladder)."""
        mid = self.mid(m)
        k = (mid - 1 - price) if side == "yes" else (99 - mid - price)
        if not 0 <= k < LEVEL_SPAN:
            raise ValueError(f"price {price} outside market {m}'s {side} ladder")
        slot = self.touch(m) + k + (0 if side == "yes" else LEVEL_SPAN)
        new = self.levels[slot] + delta
        if new < 0:
            raise ValueError(f"book would go negative at {side} {price}: {new}")
        self.levels[slot] = new

    def peek(self, m: int) -> BookView:
        mid = self.mid(m)
        s = self.slots(m)
        yes = {mid - 1 - k: s[k] for k in range(LEVEL_SPAN) if s[k]}
        no = {99 - mid - k: s[LEVEL_SPAN + k] for k in range(LEVEL_SPAN) if s[LEVEL_SPAN + k]}
        touched = self.touched[m]
        last = self.last_price[m] if touched else mid
        return BookView(mid, yes, no, last, self.volume[m], self.open_interest[m])

    def top(self, m: int) -> tuple[int, int, int, int]:
        """(best YES bid, YES ask, YES bid size, NO bid size) without building dicts."""
        mid = self.mid(m)
        s = self.slots(m)
        yes_bid = bid_size = no_size = 0
        no_bid = 0
        for k in range(LEVEL_SPAN):
            if s[k]:
                yes_bid, bid_size = mid - 1 - k, s[k]
                break
        for k in range(LEVEL_SPAN):
            if s[LEVEL_SPAN + k]:
                no_bid, no_size = 99 - mid - k, s[LEVEL_SPAN + k]
                break
        return yes_bid, 100 - no_bid, bid_size, no_size
