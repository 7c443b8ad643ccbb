"""Reconnect back-off and token buckets: pure logic, clock injected for tests."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

__all__ = ["Backoff", "TokenBucket"]


class Backoff:
    """Exponential back-off with full jitter: delay ~ U(0, min(max, min * 2**attempt)).

    Full jitter keeps a fleet that lost its broker at the same moment from reconnecting in lockstep.
    """

    def __init__(
        self, min_s: float, max_s: float, *, rng: Callable[[float, float], float] = random.uniform
    ) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"back-off needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng

    def ceiling(self) -> float:
        return float(min(self.max_s, self.min_s * 2.0 ** min(self.attempt, 62)))

    def next_delay(self) -> float:
        delay = self._rng(0.0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class TokenBucket:
    """``rate`` tokens per second up to ``capacity``. Used for bytes/hour and messages/s budgets."""

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"token bucket needs positive rate and capacity, got {rate}, {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> float:
        self._refill()
        return self._tokens

    def try_take(self, amount: float) -> bool:
        """Take ``amount`` if available. Amounts above capacity pass once the bucket is full."""
        self._refill()
        need = min(amount, self.capacity)
        if self._tokens < need:
            return False
        self._tokens -= amount  # may go negative for an oversized item: later sends wait it out
        return True

    def wait_time(self, amount: float) -> float:
        """Seconds until ``try_take(amount)`` could succeed."""
        self._refill()
        need = min(amount, self.capacity)
        return max(0.0, (need - self._tokens) / self.rate)
