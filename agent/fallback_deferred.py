"""Deferred escalation: a window the cloud could not answer in time is asked again later.

When a live cloud request ends in ``timeout``, ``offline`` or ``budget``, :class:`CloudRouter`
hands the window to :meth:`DeferredEscalation.keep` instead of only storing the edge answer: the
edge answer is stored (it stays the real-time decision) and the window's samples are kept beside
it in the store (:mod:`edgefleet.agent.store.deferred`, capped by ``fallback.deferred_max_bytes``,
oldest dropped first and counted). ``keep`` only queues the pair in memory; the sender thread
stores the queue in one transaction (a window at a time would cost a transaction each during an
outage), and a queue the store refuses goes to the pipeline's writer as plain edge answers.

A sender thread resends due windows, oldest first, whenever the link is up (the publish succeeds)
and the budget allows (:class:`Budget`, a ``try_spend(nbytes)`` hook; the default allows
everything). The cloud's answer - to the resend, or the original request answered after its
deadline - is written onto the **same** stored result, marked late, and queued for the controller
as a ``result_update``; a second answer for the same window finds nothing left and only counts.
A window not answered ``retry_after_s`` after a resend is sent again, at most ``max_attempts``
times, then forgotten (its result stays the edge answer; counted in ``given_up``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edgefleet.agent.store import ResultRecord
from edgefleet.agent.store.deferred import (
    CloudAnswer,
    DeferredStore,
    DeferredWindow,
    KeptWindow,
    deferred_request_id,
)
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import InferRequestBody, InferResponseBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.errors import StoreError
from edgefleet.runtime.ringbuffer import Window

__all__ = ["DEFERRABLE", "AlwaysAllow", "Budget", "DeferredEscalation"]

log = logging.getLogger(__name__)

DEFERRABLE = frozenset({"timeout", "offline", "budget"})
"""Outcomes of a live request whose window is kept for a late answer. Not ``cloud_error`` (the
cloud looked and refused) nor ``queue_full`` (never claimed, so never submitted)."""

Publish = Callable[[str, bytes], str | None]
Deliver = Callable[[Sequence[ResultRecord]], None]


class Budget(Protocol):
    """The cloud budget the resends draw on (:class:`edgefleet.agent.fallback_budget.FallbackBudget`)."""

    def try_spend(self, nbytes: int) -> bool:
        """Take one request of ``nbytes`` from the budget; False (and nothing taken) when over it."""
        ...


class AlwaysAllow:
    """No budget: every resend may go."""

    def try_spend(self, nbytes: int) -> bool:
        return True


class DeferredEscalation:
    """Keeps timed-out windows and resends them; see the module docstring."""

    def __init__(
        self,
        *,
        deferred: DeferredStore,
        device_id: str,
        publish: Publish,
        deliver: Deliver,
        budget: Budget | None = None,
        prefix: str = "edgefleet/v1",
        interval_s: float = 1.0,
        retry_after_s: float = 30.0,
        max_attempts: int = 5,
        batch: int = 16,
    ) -> None:
        self.deferred = deferred
        self.device_id = device_id
        self.budget: Budget = budget or AlwaysAllow()
        self.request_topic = device_topic(device_id, "infer/request", prefix=prefix)
        self.interval_s = interval_s
        self.retry_after_s = retry_after_s
        self.max_attempts = max_attempts
        self.batch = batch
        self._publish = publish
        self._deliver = deliver
        self._queued: list[KeptWindow] = []
        self._flush_lock = threading.Lock()
        self._send_now = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: Counter[str] = Counter()
        """``kept``, ``dropped`` (over the byte cap), ``resent``, ``late`` (answers attached),
        ``cloud_error``, ``budget_wait``, ``offline``, ``given_up``, ``store_errors``."""

    # --- from the router ---------------------------------------------------------------------------
    def keep(self, window: Window, edge: ResultRecord | None, outcome: str, request_id: str) -> bool:
        """Take ``edge`` (already flagged with its outcome) and ``window`` for a late answer.

        Does not block (FallbackRouter.submit must not): the pair is queued in memory and the
        sender thread stores the queue in one transaction, as the pipeline's writer batches its
        results; if the store refuses it, the edge answers go to ``deliver`` instead. False when
        the window is not deferred (outcome not deferrable, no edge answer, cap 0): the caller
        then stores the edge answer the usual way.
        """
        if outcome not in DEFERRABLE or edge is None or self.deferred.max_bytes <= 0:
            return False
        data = np.ascontiguousarray(window.data, dtype="<f4")
        with self._lock:
            self._queued.append(KeptWindow(edge, request_id, tuple(data.shape), data.tobytes()))
        self._wake.set()
        return True

    def flush(self) -> int:
        """Store the queued windows now; returns how many. Never raises: refused ones are delivered."""
        with self._flush_lock:
            with self._lock:
                queued, self._queued = self._queued, []
            if not queued:
                return 0
            try:
                _, dropped = self.deferred.keep_many(queued)
            except StoreError as exc:
                log.warning(
                    "deferred escalation: %d windows not kept, edge answers stored: %s", len(queued), exc
                )
                self._count("store_errors")
                self._deliver([item.record for item in queued])
                return 0
            self._count("kept", len(queued))
            if dropped:
                self._count("dropped", dropped)
            return len(queued)

    def on_response(self, body: InferResponseBody) -> bool:
        """Handle a response no live request waits for; True if it belonged to a deferred window."""
        if body.error is not None or body.label is None:
            self.flush()
            if self.deferred.knows(body.request_id):
                self._count("cloud_error")  # kept: tried again after retry_after_s
                return True
            return False
        answer = CloudAnswer(body.label, body.score, body.outputs, body.model_version)
        self.flush()  # the window this answers may still be queued
        try:
            result_id = self.deferred.attach(body.request_id, answer)
        except StoreError as exc:
            log.warning("deferred escalation: late answer not stored: %s", exc)
            self._count("store_errors")
            return True
        if result_id is None:
            return False
        self._count("late")
        return True

    # --- the sender -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="edgefleet-deferred", daemon=True)
            self._thread.start()

    def nudge(self) -> None:
        """Resend now (e.g. the link just came back) rather than at the next interval."""
        self._send_now = True
        self._wake.set()

    def close(self) -> None:
        """Stop the sender; the queued windows are stored (kept for the next start)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.flush()

    def _loop(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            self.flush()  # woken by keep(): store at once, resend only every interval_s
            now = time.monotonic()
            if now >= next_send or self._send_now:
                self._send_now = False
                next_send = now + self.interval_s
                try:
                    self.send_due()
                except Exception:  # a store hiccup must not end the sender: the windows stay kept
                    log.exception("deferred escalation: sending failed; trying again")
                    self._count("store_errors")
            self._wake.wait(max(0.0, next_send - time.monotonic()))
            self._wake.clear()

    def send_due(self, *, now: float | None = None) -> int:
        """Resend the due windows while the link and budget allow; returns how many went out."""
        self.flush()
        now = time.time() if now is None else now
        sent = 0
        for window in self.deferred.due(limit=self.batch, now=now):
            if window.attempts >= self.max_attempts:
                if self.deferred.give_up(window.id):
                    self._count("given_up")
                continue
            request_id = deferred_request_id(window.result_id, uuid.uuid4().hex[:12])
            payload = self._request(window, request_id)
            if not self.budget.try_spend(len(payload)):
                self._count("budget_wait")
                break  # oldest first: the rest waits for budget too
            error = self._publish(self.request_topic, payload)
            if error is not None:
                self._count("offline")
                break  # the link is down: nothing else would go either
            # After the publish: an answer racing this write still finds the window by result id.
            self.deferred.sent(window.id, request_id, retry_at=now + self.retry_after_s)
            self._count("resent")
            sent += 1
        return sent

    def _request(self, window: DeferredWindow, request_id: str) -> bytes:
        body = InferRequestBody(
            request_id=request_id,
            stream=window.stream,
            window_seq=window.window_seq,
            window_start=window.window_start,
            window_end=window.window_end,
            shape=list(window.shape),
            data=window.data,
            fallback_reason=window.fallback_reason or "deferred",
        )
        return encode_message(make_envelope(self.device_id, "infer/request", body))

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


def deferred_status(escalation: DeferredEscalation | None) -> dict[str, object]:
    """The ``fallback_deferred`` section of the agent's status: windows waiting and the counters."""
    if escalation is None:
        return {"enabled": False}
    try:
        stats = escalation.deferred.stats()
    except StoreError as exc:  # the status must not fail with the store
        return {"enabled": True, "error": str(exc), "counts": escalation.snapshot()}
    return {
        "enabled": True,
        "windows": stats.windows,
        "bytes": stats.bytes,
        "max_bytes": escalation.deferred.max_bytes,
        "dropped_total": stats.dropped_total,
        "counts": escalation.snapshot(),
    }
