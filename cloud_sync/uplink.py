"""Store-and-forward: drain the agent store's outbox to the broker.

An outbox row becomes one message (or ``parts`` messages when it is too big) whose
``message_id`` is the row id, so every resend carries the same identity and the receiver
de-duplicates. With ``sync.end_to_end_ack`` (the default) a row leaves the store only when the
controller acknowledged it (an ``ack`` downlink, :mod:`.awaiting`); the broker's PUBACK only
marks it sent, because a broker may lose what it acknowledged. Without it, the broker's PUBACK
is enough. Whatever was in flight when a connection died is simply peeked and sent again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from pydantic import ValidationError

from edgefleet.cloud_sync.awaiting import NO_MATCHING_SUBSCRIBERS, AwaitingAcks
from edgefleet.cloud_sync.backoff import TokenBucket
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.config import SyncConfig
from edgefleet.cloud_sync.protocol import (
    BODY_TYPES,
    AckBody,
    Body,
    Envelope,
    EventItem,
    EventsBody,
    MetricPoint,
    ResultsBody,
    TelemetryBody,
)
from edgefleet.cloud_sync.topics import ACKNOWLEDGED_KINDS, UPLINK_KINDS, MessageKind, device_topic
from edgefleet.errors import ProtocolError

__all__ = ["OutboxLike", "OutboxStore", "Uplink", "UplinkCounters", "build_messages", "wire_bytes"]

log = logging.getLogger(__name__)

_METRIC_FIELDS = frozenset(MetricPoint.model_fields)
_EVENT_FIELDS = frozenset(EventItem.model_fields)
_RETAINED_KINDS = frozenset({"status"})
_PEEK_MAX_BYTES = 32 * 1024 * 1024
_ACK_BATCH = 256
_ACK_MAX_DELAY_S = 0.5


class OutboxLike(Protocol):
    """What sync needs of ``edgefleet.agent.store.OutboxItem``."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def payload(self) -> Any: ...


class OutboxStore(Protocol):
    """The part of ``edgefleet.agent.store.Store`` the sync uses (docs/architecture.md)."""

    def outbox_peek(
        self, limit: int, *, max_bytes: int | None = None, skip: Container[int] = ...
    ) -> Sequence[OutboxLike]: ...
    def outbox_ack(self, ids: Iterable[int]) -> Any: ...
    def outbox_backlog(self) -> dict[str, int]: ...
    def add_event(
        self, kind: str, message: str, *, level: str = ..., data: dict[str, Any] | None = ...
    ) -> Any: ...


def wire_bytes(topic: str, payload_len: int, *, v5: bool) -> int:
    """Bytes of one QoS>0 PUBLISH packet: fixed header, topic, packet id, (v5) properties, payload."""
    remaining = 2 + len(topic.encode()) + 2 + (1 if v5 else 0) + payload_len
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2097152 else 4
    return 1 + length_bytes + remaining


# ------------------------------------------------------------------ payload -> body


def _pick(row: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k in fields}


def _rows(payload: Any, key: str) -> list[dict[str, Any]]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get(key), list):
        rows: list[dict[str, Any]] = payload[key]
        return rows
    if isinstance(payload, dict):
        return [payload]
    raise ValueError(f"payload must be a list of rows or a map, got {type(payload).__name__}")


def body_for(kind: str, payload: Any) -> Body:
    """The protocol body of one outbox payload (the store's row layout, extra keys ignored)."""
    if kind == "results":
        # No model per row: the store validated them, and the codec type-checks the columns.
        rows = _rows(payload, "results")
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError("results payload must be a list of row maps")
        return ResultsBody.model_construct(results=rows)  # extra keys (id, synced_at) are ignored
    if kind == "telemetry":
        return TelemetryBody(
            samples=[MetricPoint.model_validate(_pick(r, _METRIC_FIELDS)) for r in _rows(payload, "samples")]
        )
    if kind == "events":
        return EventsBody(
            events=[EventItem.model_validate(_pick(r, _EVENT_FIELDS)) for r in _rows(payload, "events")]
        )
    return BODY_TYPES[kind].model_validate(payload)


def build_messages(item: OutboxLike, device_id: str, config: SyncConfig) -> list[tuple[str, bytes]]:
    """(topic, payload) for each part of one outbox row. Raises ProtocolError if it cannot be sent."""
    if item.kind not in UPLINK_KINDS:
        raise ProtocolError(
            f"outbox row {item.id} has kind {item.kind!r}; expected one of {', '.join(UPLINK_KINDS)}",
            reason="malformed",
        )
    try:
        body = body_for(item.kind, item.payload)
    except (ValidationError, ValueError, TypeError) as exc:
        raise ProtocolError(f"outbox row {item.id} ({item.kind}) does not fit its schema: {exc}") from None
    topic = device_topic(device_id, item.kind, prefix=config.topic_prefix)
    bodies: list[Body] = [body]
    if isinstance(body, ResultsBody):
        bodies = _split_results(body, config.max_batch_results)
    now = time.time()
    while True:
        try:
            payloads = _encode_parts(item, device_id, bodies, now)
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            raise ProtocolError(f"outbox row {item.id} ({item.kind}) cannot be encoded: {exc}") from None
        if all(len(p) <= config.max_message_bytes for p in payloads):
            return [(topic, p) for p in payloads]
        if not isinstance(body, ResultsBody) or max(len(b.results) for b in bodies) <= 1:  # type: ignore[union-attr]
            raise ProtocolError(
                f"outbox row {item.id} ({item.kind}) encodes to {max(map(len, payloads))} bytes; "
                f"sync.max_message_bytes is {config.max_message_bytes}",
                reason="oversize",
                hint="raise sync.max_message_bytes (and the controller's decode limit)",
            )
        biggest = max(len(b.results) for b in bodies)  # type: ignore[union-attr]
        bodies = _split_results(body, max(1, biggest // 2))


def _encode_parts(item: OutboxLike, device_id: str, bodies: list[Body], now: float) -> list[bytes]:
    return [
        encode_message(
            Envelope(
                message_id=item.id,
                device_id=device_id,
                kind=cast(MessageKind, item.kind),  # build_messages checked it is an uplink kind
                seq=item.id,
                part=i,
                parts=len(bodies),
                created_at=item.created_at,
                sent_at=now,
                body=body,
            )
        )
        for i, body in enumerate(bodies)
    ]


def _split_results(body: ResultsBody, size: int) -> list[Body]:
    rows = body.results
    if len(rows) <= size:
        return [body]
    return [ResultsBody.model_construct(results=rows[i : i + size]) for i in range(0, len(rows), size)]


# ------------------------------------------------------------------ drain


@dataclass
class UplinkCounters:
    bytes_sent_by_kind: dict[str, int] = field(default_factory=dict)
    messages_sent_by_kind: dict[str, int] = field(default_factory=dict)
    results_sent: int = 0
    refused: int = 0
    dropped: int = 0
    last_ack_at: float | None = None
    last_acked_id: int | None = None
    last_refusal: str | None = None
    no_subscribers: int = 0
    """Rows the broker acknowledged with MQTT 5 reason 0x10 (nobody subscribed to their topic)."""


@dataclass
class _Pending:
    kind: str
    mids: set[int]
    wire: int
    results: int
    parts: int = 1
    nobody_subscribed: bool = False


Publish = Callable[[str, bytes, int, bool], "int | None"]


class Uplink:
    """Moves outbox rows to the broker within the in-flight window and the budgets."""

    def __init__(
        self,
        store: OutboxStore,
        config: SyncConfig,
        device_id: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.device_id = device_id
        self.counters = UplinkCounters()
        self._clock = clock
        self._v5 = config.protocol == "mqtt5"
        self._pending: dict[int, _Pending] = {}
        self._mid_item: dict[int, int] = {}
        self._done: list[int] = []
        self._queue: deque[OutboxLike] = deque()
        self.awaiting = AwaitingAcks(config.resend_after_s, clock=clock)
        """Rows the broker took and the controller has not acknowledged (sync.end_to_end_ack)."""
        self.window = config.max_inflight
        """Publishes in flight at most: sync.max_inflight, lowered to the broker's Receive Maximum."""
        self._last_flush = clock()
        self._failed: set[int] = set()
        self._last_progress = clock()
        self.bandwidth: TokenBucket | None = None
        if config.bandwidth_bytes_per_hour is not None:
            per_s = config.bandwidth_bytes_per_hour / 3600.0
            # One minute of budget (at least one full message) may go out in a burst.
            self.bandwidth = TokenBucket(
                per_s, max(per_s * 60.0, float(config.max_message_bytes)), clock=clock
            )
        self.rate: TokenBucket | None = None
        if config.max_messages_per_s is not None:
            self.rate = TokenBucket(
                config.max_messages_per_s, max(1.0, config.max_messages_per_s), clock=clock
            )

    @property
    def inflight(self) -> int:
        return len(self._mid_item)

    def waiting_since_progress(self) -> float:
        """Seconds since the last acknowledgement while something is in flight (0 when idle)."""
        if not self._mid_item:
            return 0.0
        return self._clock() - self._last_progress

    def reset(self) -> None:
        """The connection is gone: forget what was in flight; it will be peeked and sent again."""
        self._queue.clear()
        self._pending.clear()
        self._mid_item.clear()
        self._failed.clear()
        # A broker that went away may have lost what it acknowledged: send every unacknowledged
        # row again once connected (a duplicate costs bandwidth, never a double count).
        self.awaiting.clear()
        self.flush_acks()

    def on_ack(self, mid: int, accepted: bool, reason: str) -> None:
        item_id = self._mid_item.pop(mid, None)
        if item_id is None:
            return
        self._last_progress = self._clock()
        pending = self._pending.get(item_id)
        if pending is None:
            return
        if not accepted:
            # e.g. MQTT 5 "not authorized": the row stays stored; retried after reconnect.
            self._failed.add(item_id)
            self.counters.refused += 1
            self.counters.last_refusal = f"broker refused outbox row {item_id} ({pending.kind}): {reason}"
            log.warning("%s", self.counters.last_refusal)
        elif reason == NO_MATCHING_SUBSCRIBERS:
            pending.nobody_subscribed = True
        pending.mids.discard(mid)
        if pending.mids:
            return
        del self._pending[item_id]
        if item_id in self._failed:
            return
        kind = pending.kind
        end_to_end = self.config.end_to_end_ack and kind in ACKNOWLEDGED_KINDS
        if pending.nobody_subscribed:
            self.counters.no_subscribers += 1
            if end_to_end:
                # Nobody received it (the controller is reconnecting?): keep it, send again.
                self.awaiting.nobody_subscribed(item_id, pending.parts)
                return
            # Without end_to_end_ack the PUBACK is the acknowledgement, 0x10 included (a kind no
            # consumer subscribes to would otherwise stay in the store for ever): counted only.
        c = self.counters
        c.bytes_sent_by_kind[kind] = c.bytes_sent_by_kind.get(kind, 0) + pending.wire
        c.messages_sent_by_kind[kind] = c.messages_sent_by_kind.get(kind, 0) + 1
        c.results_sent += pending.results
        c.last_ack_at = time.time()
        c.last_acked_id = item_id
        if end_to_end and self.awaiting.sent(item_id, pending.parts):
            return
        self._done.append(item_id)

    def on_controller_ack(self, body: AckBody) -> int:
        """The controller stored these rows: they may leave the store. Returns rows now done."""
        done = self.awaiting.acknowledge(body.ranges, body.parts, self._pending)
        self._done.extend(done)
        return len(done)

    def flush_acks(self) -> int:
        """Remove fully acknowledged rows from the store; returns how many."""
        self._last_flush = self._clock()
        if not self._done:
            return 0
        done, self._done = self._done, []
        self.store.outbox_ack(done)
        return len(done)

    def budget_wait(self) -> float:
        """Seconds the budgets make us wait before the next message (0: may send now)."""
        waits = [0.0]
        if self.bandwidth is not None:
            waits.append(self.bandwidth.wait_time(wire_bytes("x" * 40, 1024, v5=self._v5)))
        if self.rate is not None:
            waits.append(self.rate.wait_time(1))
        return max(waits)

    def maybe_flush_acks(self) -> int:
        """Flush acknowledgements in batches: one store transaction per ack would dominate the drain."""
        if len(self._done) >= _ACK_BATCH or (
            self._done and self._clock() - self._last_flush >= _ACK_MAX_DELAY_S
        ):
            return self.flush_acks()
        return 0

    def pump(self, publish: Publish) -> int:
        """Publish what the window and budgets allow. Returns the number of messages published."""
        if self._failed:
            return 0
        window = self.window
        if not self._queue:
            if self._pending:
                return 0  # peeking now would re-read every in-flight row; wait for the window to clear
            self.awaiting.expire()
            if len(self.awaiting) >= self.config.max_awaiting_ack:
                return 0
            self.flush_acks()  # acknowledged rows must be gone before the next peek
            # Two windows per peek: the second is sent as the first one's acknowledgements arrive.
            # Rows awaiting the controller are still stored and come first: the store skips them
            # without reading their payload.
            waiting = len(self.awaiting)
            peeked = self.store.outbox_peek(
                2 * window + waiting, max_bytes=_PEEK_MAX_BYTES, skip=self.awaiting
            )
            self._queue.extend(item for item in peeked if item.id not in self.awaiting)
        sent = 0
        while self._queue and self.inflight < window and len(self.awaiting) < self.config.max_awaiting_ack:
            item = self._queue[0]
            if item.kind == "results" and item.payload == [] and not self.config.end_to_end_ack:
                # Retention evicted every row this item referenced: nothing left to send.
                self._queue.popleft()
                self._done.append(item.id)
                continue
            try:
                messages = build_messages(item, self.device_id, self.config)
            except ProtocolError as exc:
                self._queue.popleft()
                self._drop(item, exc)
                continue
            wire = sum(wire_bytes(t, len(p), v5=self._v5) for t, p in messages)
            if (self.bandwidth is not None and self.bandwidth.wait_time(wire) > 0) or (
                self.rate is not None and self.rate.wait_time(len(messages)) > 0
            ):
                # What does not fit the budget waits in the store. Forget the queue so that the
                # next peek sees newer, higher-priority rows (events) first.
                self._queue.clear()
                break
            self._queue.popleft()
            if self.bandwidth is not None:
                self.bandwidth.try_take(wire)
            if self.rate is not None:
                self.rate.try_take(len(messages))
            pending = _Pending(kind=item.kind, mids=set(), wire=wire, results=0, parts=len(messages))
            if isinstance(item.payload, list) and item.kind == "results":
                pending.results = len(item.payload)
            if not self._mid_item:
                self._last_progress = self._clock()
            self._pending[item.id] = pending
            for topic, payload in messages:
                mid = publish(topic, payload, self.config.qos, item.kind in _RETAINED_KINDS)
                if mid is None:
                    return sent
                pending.mids.add(mid)
                self._mid_item[mid] = item.id
                sent += 1
        return sent

    def _drop(self, item: OutboxLike, exc: ProtocolError) -> None:
        # A row that can never be encoded would block the outbox for ever. Its content is kept in
        # the event (which is itself synced), so nothing is silently lost.
        self.counters.dropped += 1
        log.error("dropping outbox row %d: %s", item.id, exc.message)
        self.store.outbox_ack([item.id])
        preview = repr(item.payload)[:2000]
        self.store.add_event(
            "sync.outbox_dropped",
            f"outbox row {item.id} ({item.kind}) cannot be sent and was dropped: {exc.message}",
            level="error",
            data={"outbox_id": item.id, "kind": item.kind, "reason": exc.reason, "payload_preview": preview},
        )
