"""A heap of deadlines on the monotonic clock, fired by the engine's loop (never a thread)."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any


class Timers:
    """``add(delay_s, payload)``; ``fire_due(callback)`` calls ``callback(payload)`` for each due one.

    Entries cannot be cancelled: callbacks check whether their payload still matters
    (a held message already requeued, a task that already finished), which keeps this tiny.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay_s: float, payload: Any) -> None:
        heapq.heappush(self._heap, (self._clock() + max(0.0, delay_s), next(self._seq), payload))

    def seconds_to_next(self) -> float:
        """Seconds until the earliest deadline (0 if overdue); a large number when there is none."""
        if not self._heap:
            return 3600.0
        return max(0.0, self._heap[0][0] - self._clock())

    def fire_due(self, callback: Callable[[Any], None]) -> int:
        """Pop and fire every entry whose deadline has passed; returns how many fired."""
        fired = 0
        now = self._clock()
        while self._heap and self._heap[0][0] <= now:
            _, _, payload = heapq.heappop(self._heap)
            callback(payload)
            fired += 1
        return fired
