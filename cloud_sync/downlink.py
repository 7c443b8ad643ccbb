"""Downlink: decode ``cmd``/``config``/... messages and hand them to registered handlers.

A message that fails to decode (garbage, wrong schema, unknown version, oversize, wrong
device) is refused with a ``sync.downlink_refused`` event in the store; a handler that raises
gives a ``sync.downlink_failed`` event. Neither ever stops the agent.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import Envelope
from edgefleet.cloud_sync.topics import DOWNLINK_KINDS, device_subscriptions
from edgefleet.errors import ProtocolError

__all__ = ["Downlink", "DownlinkCounters", "EventSink", "Handler"]

log = logging.getLogger(__name__)

Handler = Callable[[Envelope], None]
_SEEN_CAPACITY = 4096


class EventSink(Protocol):
    def add_event(
        self, kind: str, message: str, *, level: str = ..., data: dict[str, Any] | None = ...
    ) -> Any: ...


@dataclass
class DownlinkCounters:
    received: int = 0
    handled: int = 0
    duplicates: int = 0
    refused: int = 0
    failed: int = 0
    unhandled: int = 0
    last_refusal: str | None = None


class Downlink:
    def __init__(self, events: EventSink, device_id: str, *, prefix: str, max_bytes: int) -> None:
        self.events = events
        self.device_id = device_id
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.counters = DownlinkCounters()
        self._handlers: dict[str, Handler] = {}
        self._seen: OrderedDict[int, None] = OrderedDict()

    def register(self, kind: str, handler: Handler) -> None:
        if kind not in DOWNLINK_KINDS:
            raise ValueError(f"cannot handle {kind!r}; downlink kinds are {', '.join(DOWNLINK_KINDS)}")
        self._handlers[kind] = handler

    def topics(self) -> list[str]:
        return device_subscriptions(self.device_id, prefix=self.prefix)

    def _event(self, kind: str, message: str, level: str, data: dict[str, Any]) -> None:
        try:
            self.events.add_event(kind, message, level=level, data=data)
        except Exception as exc:  # the store may be closing; the refusal is still logged
            log.warning("could not record %s event: %s", kind, exc)

    def _unmounted(self, topic: str) -> str:
        # Mosquitto 2.0.11 (Debian bookworm) leaves a listener's mount_point on the messages it
        # sends (fixed in 2.0.12); the shipped broker config mounts devices under "devices/".
        # Only this device's own subscriptions are mapped back, so nothing else gets through.
        for own in self.topics():
            if topic.endswith("/" + own):
                return own
        return topic

    def on_message(self, topic: str, payload: bytes) -> None:
        self.counters.received += 1
        topic = self._unmounted(topic)
        try:
            envelope = decode_message(topic, payload, max_bytes=self.max_bytes, prefix=self.prefix)
            if envelope.device_id != self.device_id or envelope.kind not in DOWNLINK_KINDS:
                raise ProtocolError(
                    f"message on {topic!r} is not a downlink message for device {self.device_id!r}",
                    topic=topic,
                    reason="wrong_topic",
                )
        except ProtocolError as exc:
            self.counters.refused += 1
            self.counters.last_refusal = exc.message
            log.warning("refused downlink message: %s", exc.message)
            self._event(
                "sync.downlink_refused",
                f"refused a downlink message: {exc.message}",
                "warning",
                {"topic": topic, "reason": exc.reason, "bytes": len(payload)},
            )
            return
        if envelope.message_id:
            if envelope.message_id in self._seen:
                self.counters.duplicates += 1
                return
            self._seen[envelope.message_id] = None
            if len(self._seen) > _SEEN_CAPACITY:
                self._seen.popitem(last=False)
        handler = self._handlers.get(envelope.kind)
        if handler is None:
            self.counters.unhandled += 1
            self._event(
                "sync.downlink_unhandled",
                f"no handler for downlink {envelope.kind!r} message {envelope.message_id}",
                "warning",
                {"topic": topic, "message_id": envelope.message_id},
            )
            return
        try:
            handler(envelope)
        except Exception as exc:  # a handler bug must not take the sync loop down
            self.counters.failed += 1
            log.exception("downlink handler for %s failed", envelope.kind)
            self._event(
                "sync.downlink_failed",
                f"handling downlink {envelope.kind!r} message {envelope.message_id} failed: {exc}",
                "error",
                {"topic": topic, "message_id": envelope.message_id, "error": type(exc).__name__},
            )
            return
        self.counters.handled += 1
