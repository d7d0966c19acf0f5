"""Sharding of markets over WebSocket connections (sans-I/O): which connection holds which market.

A new market goes to the first connection with spare room (``per_connection``), else to a new connection;
a released market frees its slot. Connection 0 always exists (it also carries the lifecycle channel). Groups of
markets that must share a connection (:meth:`ShardPlan.assign_groups`, e.g. the two tokens of one question) go
whole to the first connection with room for the whole group.
"""

from __future__ import annotations

__all__ = ["ShardPlan"]


class ShardPlan:
    """Market -> connection index, at most ``per_connection`` markets per connection."""

    def __init__(self, per_connection: int) -> None:
        if per_connection <= 0:
            raise ValueError("per_connection must be > 0")
        self.per_connection = per_connection
        self.conn_of: dict[str, int] = {}
        self.sizes: list[int] = [0]
        self._first_free = 0

    @property
    def connections(self) -> int:
        return len(self.sizes)

    def assign(self, tickers: list[str]) -> dict[int, list[str]]:
        """Place new ``tickers``; returns connection index -> tickers placed there (known ones are skipped)."""
        out: dict[int, list[str]] = {}
        i = self._first_free
        for t in tickers:
            if t in self.conn_of:
                continue
            while i < len(self.sizes) and self.sizes[i] >= self.per_connection:
                i += 1
            if i == len(self.sizes):
                self.sizes.append(0)
            self.sizes[i] += 1
            self.conn_of[t] = i
            out.setdefault(i, []).append(t)
        self._first_free = i
        return out

    def release(self, tickers: list[str]) -> dict[int, list[str]]:
        """Forget ``tickers``; returns connection index -> tickers removed from it."""
        out: dict[int, list[str]] = {}
        for t in tickers:
            i = self.conn_of.pop(t, None)
            if i is None:
                continue
            self.sizes[i] -= 1
            self._first_free = min(self._first_free, i)
            out.setdefault(i, []).append(t)
        return out

    def assign_groups(self, groups: list[list[str]]) -> dict[int, list[str]]:
        """Place each group's new markets together on the first connection with room for all of them (a group
        larger than ``per_connection`` is split into pieces that fit); returns connection index -> markets placed."""
        out: dict[int, list[str]] = {}
        for group in groups:
            new = list(dict.fromkeys(t for t in group if t not in self.conn_of))
            for start in range(0, len(new), self.per_connection):
                piece = new[start : start + self.per_connection]
                i = self._first_free
                while i < len(self.sizes) and self.sizes[i] + len(piece) > self.per_connection:
                    i += 1
                if i == len(self.sizes):
                    self.sizes.append(0)
                self.sizes[i] += len(piece)
                for t in piece:
                    self.conn_of[t] = i
                out.setdefault(i, []).extend(piece)
                while self._first_free < len(self.sizes) and self.sizes[self._first_free] >= self.per_connection:
                    self._first_free += 1
        return out
