"""A bounded set of recently seen keys (oldest forgotten first): the gatherer records each lifecycle anchor once
although two of its connections receive the lifecycle channel (the venue session asks; other lifecycle copies are
all recorded: the dedup stage's weak matching needs every subscription's copy)."""

from __future__ import annotations

from collections import deque

__all__ = ["RecentKeys"]


class RecentKeys:
    def __init__(self, size: int) -> None:
        self.size = size
        self._order: deque[str] = deque()
        self._keys: set[str] = set()

    def seen(self, key: str) -> bool:
        """True when ``key`` was seen before (and is still remembered); otherwise remember it and return False."""
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.size:
            self._keys.discard(self._order.popleft())
        return False

    def __len__(self) -> int:
        return len(self._keys)
