"""Per-task rate limits (``"10/s"``, ``"100/m"``, ``"1000/h"``) as token buckets.

A task over its limit is not blocked in the consumer: the engine asks the bucket how long
until the next token and holds the message in its timer heap until then, so other tasks
keep running.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str | float | None) -> float | None:
    """Tokens per second for Celery's rate strings; a bare number means per second; 0/None: no limit."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value) or None
    text = str(value).strip()
    amount, slash, unit = text.partition("/")
    if slash and unit not in _PER:
        raise ValueError(f"bad rate limit {value!r}: the unit must be s, m or h (e.g. '10/m')")
    try:
        rate = float(amount) / _PER[unit or "s"]
    except ValueError:
        raise ValueError(f"bad rate limit {value!r}: expected '<number>/<s|m|h>'") from None
    return rate or None


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``capacity`` saved up (default one second's worth).

    It starts full, like kombu's bucket: ``"1/m"`` runs one task at once and the next a minute later.
    """

    def __init__(
        self, rate_per_s: float, capacity: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, capacity if capacity is not None else rate_per_s)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    def take(self) -> float:
        """Take a token and return 0, or take nothing and return seconds until one is due."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s

    def give_back(self) -> None:
        """Return a token taken by :meth:`take` for a task that could not start after all."""
        self._tokens = min(self.capacity, self._tokens + 1.0)
