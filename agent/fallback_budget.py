"""The cloud fallback's budget: requests per minute and request bytes per hour, sliding windows.

Each window is a ring of 60 buckets (one second each for the minute, one minute each for the
hour), so memory stays fixed at any request rate; a bucket counts until its whole span has
passed, so the budget errs on the side of refusing (by at most one bucket's span). A limit of
None lets everything through and still counts what was spent (the status shows it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["FallbackBudget", "SlidingCount"]

_BUCKETS = 60


class SlidingCount:
    """Sum of what was added over the last ``span_s`` seconds, in ``_BUCKETS`` buckets. Not locked."""

    def __init__(self, span_s: float) -> None:
        self.bucket_s = span_s / _BUCKETS
        self._totals = [0] * _BUCKETS
        self._index = [-1] * _BUCKETS  # which bucket number each slot holds now

    def total(self, now: float) -> int:
        current = int(now // self.bucket_s)
        return sum(t for t, i in zip(self._totals, self._index, strict=True) if current - i < _BUCKETS)

    def add(self, now: float, amount: int) -> None:
        number = int(now // self.bucket_s)
        slot = number % _BUCKETS
        if self._index[slot] != number:
            self._index[slot], self._totals[slot] = number, 0
        self._totals[slot] += amount


class FallbackBudget:
    """``max_requests_per_min`` and ``max_bytes_per_hour`` (None: no limit); thread-safe."""

    def __init__(
        self,
        *,
        max_requests_per_min: int | None = None,
        max_bytes_per_hour: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_requests_per_min = max_requests_per_min
        self.max_bytes_per_hour = max_bytes_per_hour
        self._clock = clock
        self._requests = SlidingCount(60.0)
        self._bytes = SlidingCount(3600.0)
        self._lock = threading.Lock()
        self.refused = 0

    def spend(self, size: int) -> bool:
        """Spend one request of ``size`` bytes if both limits allow it; False (and counted) if not."""
        return self._spend(size, count_refusal=True)

    def try_spend(self, nbytes: int) -> bool:
        """The deferred resends' hook (:class:`edgefleet.agent.fallback_deferred.Budget`): like
        :meth:`spend`, but a resend that waits for budget is not a live request refused."""
        return self._spend(nbytes, count_refusal=False)

    def _spend(self, size: int, *, count_refusal: bool) -> bool:
        with self._lock:
            now = self._clock()
            requests_ok = (
                self.max_requests_per_min is None
                or self._requests.total(now) + 1 <= self.max_requests_per_min
            )
            bytes_ok = (
                self.max_bytes_per_hour is None or self._bytes.total(now) + size <= self.max_bytes_per_hour
            )
            if not (requests_ok and bytes_ok):
                self.refused += count_refusal
                return False
            self._requests.add(now, 1)
            self._bytes.add(now, size)
            return True

    def usage(self) -> tuple[int, int]:
        """Requests in the last minute and bytes in the last hour."""
        with self._lock:
            now = self._clock()
            return self._requests.total(now), self._bytes.total(now)
