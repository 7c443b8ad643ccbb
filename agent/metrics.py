"""Thread-safe counters the pipeline updates and the health monitor reads.

The pipeline's threads call ``record_*``; the health monitor calls :meth:`snapshot`
(cheap, consistent copy) and derives rates by differencing two snapshots.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["CountersSnapshot", "PipelineCounters", "percentile"]

# Enough recent latencies for a stable p99 without unbounded memory.
_LATENCY_WINDOW = 2048


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class CountersSnapshot:
    taken_at: float  # time.monotonic()
    windows_inferred: int
    batches: int
    results_stored: int
    store_transactions: int
    inference_errors: int
    store_errors: int
    windows_to_fallback: int
    windows_skipped: int
    router_mismatches: int
    latencies_ms: list[float] = field(repr=False)
    batch_sizes: list[int] = field(repr=False)

    def latency_percentiles(self) -> dict[str, float | None]:
        return {f"p{q}": percentile(self.latencies_ms, q) for q in (50, 95, 99)}


class PipelineCounters:
    """Monotonic totals plus a sliding window of recent latencies and batch sizes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.windows_inferred = 0
        self.batches = 0
        self.results_stored = 0
        self.store_transactions = 0
        self.inference_errors = 0
        self.store_errors = 0
        self.windows_to_fallback = 0
        self.windows_skipped = 0
        self.router_mismatches = 0  # batches whose router gave another number of reasons than windows
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._batch_sizes: deque[int] = deque(maxlen=_LATENCY_WINDOW)

    def record_batch(self, size: int, latency_ms: float) -> None:
        with self._lock:
            self.batches += 1
            self.windows_inferred += size
            self._batch_sizes.append(size)
            self._latencies.append(latency_ms)

    def record_inference_error(self, windows: int) -> None:
        with self._lock:
            self.inference_errors += 1
            self.windows_skipped += windows

    def record_skipped(self, windows: int) -> None:
        with self._lock:
            self.windows_skipped += windows

    def record_fallback(self, windows: int) -> None:
        with self._lock:
            self.windows_to_fallback += windows

    def record_router_mismatch(self) -> None:
        with self._lock:
            self.router_mismatches += 1

    def record_stored(self, results: int) -> None:
        with self._lock:
            self.results_stored += results
            self.store_transactions += 1

    def record_store_error(self) -> None:
        with self._lock:
            self.store_errors += 1

    def snapshot(self) -> CountersSnapshot:
        with self._lock:
            return CountersSnapshot(
                taken_at=time.monotonic(),
                windows_inferred=self.windows_inferred,
                batches=self.batches,
                results_stored=self.results_stored,
                store_transactions=self.store_transactions,
                inference_errors=self.inference_errors,
                store_errors=self.store_errors,
                windows_to_fallback=self.windows_to_fallback,
                windows_skipped=self.windows_skipped,
                router_mismatches=self.router_mismatches,
                latencies_ms=list(self._latencies),
                batch_sizes=list(self._batch_sizes),
            )
