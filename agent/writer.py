"""The result writer: one thread committing results to the store in batched transactions.

Group commit, rate-limited: at most one transaction per ``interval_s`` unless ``batch_size``
results are waiting; the first result after a quiet period commits at once (a fresh agent
shows its first result without delay). The hand-over queue is bounded, so when the store
falls behind the producer waits, the ring buffers fill and their back-pressure policy
decides - memory stays flat. A failing store is retried; meanwhile at most
``max_pending`` results are kept (the oldest beyond that are dropped and counted).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.store import ResultRecord, Store

__all__ = ["ResultWriter", "WriterSettings"]

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(frozen=True)
class WriterSettings:
    batch_size: int = 256  # results per transaction at most
    interval_s: float = 0.2  # longest a result waits for its transaction
    max_queued_batches: int = 32  # producer -> writer hand-over bound
    max_pending: int = 100_000  # results kept while the store fails


class ResultWriter:
    def __init__(
        self, store: Store, counters: PipelineCounters, settings: WriterSettings | None = None
    ) -> None:
        self.store = store
        self.counters = counters
        self.settings = settings or WriterSettings()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=self.settings.max_queued_batches)
        self._thread: threading.Thread | None = None
        self.first_commit = threading.Event()
        """Set once the first results are committed."""
        self.lost = 0
        """Results given up on: the store kept failing past ``max_pending``, or at shutdown."""
        self.heartbeat = time.monotonic()
        """When the thread last came round its loop (stall detection)."""

    def start(self) -> None:
        self.heartbeat = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="agent-writer", daemon=True)
        self._thread.start()

    def put(self, records: Sequence[ResultRecord]) -> None:
        """Hand results over; blocks while the queue is full (back-pressure)."""
        if records:
            self._queue.put(list(records))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Commit everything handed over so far; True when it finished within ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=max(0.1, timeout))
        except queue.Full:
            return False
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            return not self._thread.is_alive()
        return True

    def _loop(self) -> None:
        pending: list[ResultRecord] = []
        batch_size = self.settings.batch_size
        interval = self.settings.interval_s
        last_commit = -float("inf")
        stopping = False
        while True:
            self.heartbeat = time.monotonic()
            due_at = last_commit + interval
            try:
                if stopping:
                    item = self._queue.get_nowait()
                elif pending:
                    item = self._queue.get(timeout=max(0.0, due_at - time.monotonic()))
                else:
                    item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, list):
                    pending.extend(item)
                if len(pending) >= batch_size:
                    break
                try:
                    item = self._queue.get_nowait()  # take whatever else is already queued
                except queue.Empty:
                    item = None
            if pending and (stopping or time.monotonic() >= due_at):
                pending = self._flush(pending, final=stopping)
                last_commit = time.monotonic()
            elif len(pending) >= batch_size:
                # Full transactions only; a remainder waits for its due time with the next ones.
                pending = self._flush(pending, final=False, full_only=True)
                last_commit = time.monotonic()
            if stopping and not pending and self._queue.empty():
                return

    def _flush(
        self, pending: list[ResultRecord], *, final: bool, full_only: bool = False
    ) -> list[ResultRecord]:
        size = self.settings.batch_size
        while len(pending) >= (size if full_only else 1):
            chunk = pending[:size]
            try:
                self.store.write_results(chunk)
            except Exception as exc:
                self.counters.record_store_error()
                log.error("storing %d results failed: %s", len(chunk), exc)
                if final:
                    self.lost += len(pending)
                    return []
                overflow = len(pending) - self.settings.max_pending
                if overflow > 0:
                    self.lost += overflow
                    del pending[:overflow]
                time.sleep(min(1.0, self.settings.interval_s * 5))
                return pending
            self.counters.record_stored(len(chunk))
            self.first_commit.set()
            del pending[:size]
        return pending
