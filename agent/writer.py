"""The result writer: one thread committing results to the store in batched transactions.

Results arrive as rows (:meth:`ResultWriter.put_rows`, stored by ``Store.write_result_rows``),
as batches whose rows the writer thread builds itself (the pipeline's hot path,
:meth:`ResultWriter.put_deferred`), or as :class:`ResultRecord` objects (results made elsewhere, e.g.
cloud answers, :meth:`ResultWriter.put`, stored by ``Store.write_results``).

Group commit, rate-limited: at most one transaction per ``interval_s`` unless ``batch_size``
results are waiting; the first result after a quiet period commits at once (a fresh agent
shows its first result without delay). The hand-over queue is bounded, so when the store
falls behind the producer waits, the ring buffers fill and their back-pressure policy
decides - memory stays flat. A failing store is retried; meanwhile at most
``max_pending`` results are kept (the oldest beyond that are dropped and counted).

The hand-over (:class:`_Inbox`) wakes the writer thread only when it wants the items now: when
its next transaction is due (after a quiet spell the first result commits at once), when a full
transaction's worth is there, when the queue is half full (a producer never waits for a writer
that sleeps) and to stop. Otherwise items wait for the writer's due time; at a steady load of one
batch per sources' tick that is one wake-up per transaction instead of one per batch, and a
wake-up of a thread costs far more CPU than the little it does per batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.store import ResultRecord, Store

__all__ = ["ResultWriter", "WriterSettings"]

log = logging.getLogger(__name__)

_STOP = object()
_T = TypeVar("_T")


@dataclass(slots=True)
class _RowBatch:
    rows: list[tuple[Any, ...]]


@dataclass(slots=True)
class _DeferredRows:
    """Rows the writer builds itself (see :meth:`ResultWriter.put_deferred`)."""

    make: Callable[[], list[tuple[Any, ...]]]
    on_error: Callable[[Exception], None]
    results: int = 1


@dataclass(slots=True)
class _Pending:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    records: list[ResultRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.records)


class _Inbox:
    """Producers -> writer thread: a bounded FIFO of items, each worth some results, whose
    :meth:`put` wakes the waiting writer only when the writer wants the items now (module doc)."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[tuple[object, int]] = deque()
        self._maxsize = maxsize
        self._results = 0  # results in the queued items
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # the writer waits on it
        self._room = threading.Condition(self._lock)  # producers wait on it while full
        self._producers_waiting = 0
        self._writer_waiting = False
        self._want = 1  # queued results the waiting writer wants to be woken for

    def put(self, item: object, results: int, timeout: float | None = None) -> None:
        """Queue ``item``; blocks while full (at most ``timeout`` seconds: then ``queue.Full``)."""
        with self._lock:
            if len(self._items) >= self._maxsize:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._producers_waiting += 1
                try:
                    while len(self._items) >= self._maxsize:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise queue.Full
                        self._room.wait(remaining)
                finally:
                    self._producers_waiting -= 1
            self._items.append((item, results))
            self._results += results
            if self._writer_waiting and (
                self._results >= self._want or 2 * len(self._items) >= self._maxsize or item is _STOP
            ):
                self._writer_waiting = False
                self._ready.notify()

    def get(self, timeout: float, want: int) -> object:
        """The oldest item; when there is none, wait up to ``timeout`` seconds, woken early once
        ``want`` results are queued (or the queue is half full, or stop). ``queue.Empty`` if none."""
        with self._lock:
            if not self._items and timeout > 0:
                self._want = max(1, want)
                self._writer_waiting = True
                self._ready.wait(timeout)
                self._writer_waiting = False
            return self._take()

    def get_nowait(self) -> object:
        with self._lock:
            return self._take()

    def _take(self) -> object:
        if not self._items:
            raise queue.Empty
        item, results = self._items.popleft()
        self._results -= results
        if self._producers_waiting:
            self._room.notify()
        return item

    def empty(self) -> bool:
        with self._lock:
            return not self._items


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
        self._queue = _Inbox(self.settings.max_queued_batches)
        self._thread: threading.Thread | None = None
        self.wakeups = 0
        """Times the writer's loop came round (woken or timed out); for benchmarks and tests."""
        self.first_commit = threading.Event()
        """Set once the first results are committed."""
        self.lost = 0
        """Results given up on: the store kept failing past ``max_pending``, or at shutdown."""
        self.heartbeat = time.monotonic()
        """When the thread last came round its loop (stall detection)."""

    def start(self) -> None:
        self.heartbeat = time.monotonic()
        # Acknowledgements and metrics wait for this writer's next commit (docs/store.md).
        self.store.hold_writes(self.settings.interval_s)
        self._thread = threading.Thread(target=self._loop, name="agent-writer", daemon=True)
        self._thread.start()

    def put(self, records: Sequence[ResultRecord]) -> None:
        """Hand results over; blocks while the queue is full (back-pressure)."""
        if records:
            self._queue.put(list(records), len(records))

    def put_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Hand over result rows (``RESULT_COLUMNS`` order, plain values; see
        ``Store.write_result_rows``); the list is the writer's from now on. Blocks while full."""
        if rows:
            self._queue.put(_RowBatch(rows), len(rows))

    def put_deferred(
        self,
        make: Callable[[], list[tuple[Any, ...]]],
        on_error: Callable[[Exception], None],
        results: int = 1,
    ) -> None:
        """Hand over a batch whose rows ``make()`` builds in the writer thread.

        Building rows (argmax, scores, one tuple per window) is Python work that holds the GIL;
        done here it overlaps the inference thread's next model call instead of delaying it.
        Should ``make`` raise, ``on_error`` gets the exception (in the writer thread) and the
        batch is skipped. Blocks while the queue is full, like :meth:`put_rows`. ``results``: how
        many rows ``make`` will build (it decides when a full transaction's worth is waiting).
        """
        self._queue.put(_DeferredRows(make, on_error, results), results)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        """Commit everything handed over so far; True when it finished within ``timeout``."""
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, 0, timeout=max(0.1, timeout))
        except queue.Full:
            return False
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            return not self._thread.is_alive()
        return True

    def _loop(self) -> None:
        pending = _Pending()
        batch_size = self.settings.batch_size
        interval = self.settings.interval_s
        last_commit = -float("inf")
        stopping = False
        while True:
            self.heartbeat = time.monotonic()
            self.wakeups += 1
            due_at = last_commit + interval
            until_due = due_at - time.monotonic()
            try:
                if stopping:
                    item = self._queue.get_nowait()
                elif pending or until_due > 0:
                    # Until due, or until a full transaction's worth is queued; at least once a
                    # second round the loop (the heartbeat). With nothing pending too: within
                    # ``interval`` of the last commit the first result would only wait here again.
                    wait = min(1.0, max(0.0, until_due))
                    item = self._queue.get(wait, want=batch_size - len(pending))
                else:
                    item = self._queue.get(1.0, want=1)  # after a quiet spell: commit at once
            except queue.Empty:
                item = None
                if not pending:
                    self._flush_held()  # nothing to ride on: commit held acks/metrics once due
            while item is not None:
                if isinstance(item, _RowBatch):
                    pending.rows += item.rows
                elif isinstance(item, _DeferredRows):
                    pending.rows += self._build(item)
                elif item is _STOP:
                    stopping = True
                elif isinstance(item, list):
                    pending.records += item
                if len(pending) >= batch_size:
                    break
                try:
                    item = self._queue.get_nowait()  # take whatever else is already queued
                except queue.Empty:
                    item = None
            if pending and (stopping or time.monotonic() >= due_at):
                self._flush(pending, final=stopping)
                last_commit = time.monotonic()
            elif len(pending) >= batch_size:
                # Full transactions only; a remainder waits for its due time with the next ones.
                self._flush(pending, final=False, full_only=True)
                last_commit = time.monotonic()
            if stopping and not pending and self._queue.empty():
                try:
                    self.store.hold_writes(None)  # commits what is still held
                except Exception as exc:
                    log.error("committing held acknowledgements and metrics failed: %s", exc)
                return

    def _flush_held(self) -> None:
        try:
            self.store.flush_held(only_if_due=True)
        except Exception as exc:  # the store fails: the next commit retries them
            self.counters.record_store_error()
            log.error("committing held acknowledgements and metrics failed: %s", exc)

    @staticmethod
    def _build(item: _DeferredRows) -> list[tuple[Any, ...]]:
        try:
            return item.make()
        except Exception as exc:  # a bad batch must not stop the writer: its producer reports it
            try:
                item.on_error(exc)
            except Exception:
                log.exception("reporting a failed result batch failed")
            return []

    def _flush(self, pending: _Pending, *, final: bool, full_only: bool = False) -> None:
        stored = True
        if pending.records:
            stored = self._flush_list(
                pending, pending.records, self.store.write_results, final=final, full_only=full_only
            )
        if stored or final:
            self._flush_list(
                pending, pending.rows, self.store.write_result_rows, final=final, full_only=full_only
            )

    def _trim(self, pending: _Pending) -> None:
        """Keep at most ``max_pending`` results while the store fails: the oldest go first."""
        overflow = len(pending) - self.settings.max_pending
        for items in (pending.rows, pending.records):
            dropped = min(max(overflow, 0), len(items))
            if dropped:
                self.lost += dropped
                overflow -= dropped
                del items[:dropped]

    def _flush_list(
        self,
        pending: _Pending,
        items: list[_T],
        write: Callable[[list[_T]], object],
        *,
        final: bool,
        full_only: bool,
    ) -> bool:
        """Commit ``items`` (one of ``pending``'s lists) in chunks, deleting what was stored.

        False when the store failed (the rest waits, or is lost when ``final``).
        """
        size = self.settings.batch_size
        while len(items) >= (size if full_only else 1):
            chunk = items[:size]
            try:
                write(chunk)
            except Exception as exc:
                self.counters.record_store_error()
                log.error("storing %d results failed: %s", len(chunk), exc)
                if final:
                    self.lost += len(items)
                    items.clear()
                    return False
                self._trim(pending)
                time.sleep(min(1.0, self.settings.interval_s * 5))
                return False
            self.counters.record_stored(len(chunk))
            self.first_commit.set()
            del items[:size]
        return True
