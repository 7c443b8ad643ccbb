"""End-to-end acknowledgements: tell each device which uplink messages this controller stored.

The ingest writer hands over every message it committed (or found already stored) after the
transaction; this publisher batches them per device and publishes one ``ack`` downlink per
device at most every ``_INTERVAL_S``, the ids as compact ranges. Whichever controller of a
shared-subscription group stored a message acknowledges it. An ack that cannot go out (broker
down) is kept and sent on reconnect; one that is lost on the way only means the device sends
that row again and this controller de-duplicates it and acknowledges it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edgefleet.cloud_sync.acks import to_ranges
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import AckBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic

__all__ = ["AckPublisher", "AckRef"]

log = logging.getLogger(__name__)

_INTERVAL_S = 0.2
_RANGES_PER_MESSAGE = 50  # one ack stays under 1 KiB, the smallest sync.max_message_bytes allowed
_MAX_PENDING_PER_DEVICE = 100_000  # beyond this (broker down for long) the oldest are forgotten


@dataclass(frozen=True)
class AckRef:
    """One stored uplink message: device, outbox id, part and the row's number of parts."""

    device_id: str
    message_id: int
    part: int = 0
    parts: int = 1


Publish = Callable[[str, bytes], bool]
"""Queue a QoS 1 publish without waiting; False when it could not be queued (not connected)."""


class AckPublisher:
    def __init__(self, publish: Publish, *, prefix: str) -> None:
        self._publish = publish
        self._prefix = prefix
        self._lock = threading.Lock()
        self._whole: dict[str, set[int]] = {}
        self._parts: dict[str, set[tuple[int, int]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.publish_failures = 0

    def add(self, refs: Iterable[AckRef]) -> None:
        with self._lock:
            for ref in refs:
                if ref.parts <= 1:
                    ids = self._whole.setdefault(ref.device_id, set())
                    if len(ids) < _MAX_PENDING_PER_DEVICE:
                        ids.add(ref.message_id)
                else:
                    self._parts.setdefault(ref.device_id, set()).add((ref.message_id, ref.part))

    def _keep(self, device_id: str, body: AckBody) -> None:
        """An ack that could not be published waits for the next flush."""
        with self._lock:
            ids = self._whole.setdefault(device_id, set())
            for first, last in body.ranges:
                ids.update(range(first, min(last + 1, first + _MAX_PENDING_PER_DEVICE)))
            self._parts.setdefault(device_id, set()).update(body.parts)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="edgefleet-ack-publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is pending once more, then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(_INTERVAL_S):
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Publish one ack per device with something pending; returns the messages published."""
        with self._lock:
            whole, self._whole = self._whole, {}
            parts, self._parts = self._parts, {}
        sent = 0
        for device_id in sorted(set(whole) | set(parts)):
            ids = whole.get(device_id, set())
            pairs = sorted(parts.get(device_id, set()))
            ranges = to_ranges(ids)
            chunks = [ranges[i : i + _RANGES_PER_MESSAGE] for i in range(0, len(ranges), _RANGES_PER_MESSAGE)]
            bodies = [AckBody(ranges=chunk) for chunk in chunks]
            bodies += [
                AckBody(parts=pairs[i : i + _RANGES_PER_MESSAGE])
                for i in range(0, len(pairs), _RANGES_PER_MESSAGE)
            ]
            topic = device_topic(device_id, "ack", prefix=self._prefix)
            for body in bodies:
                payload = encode_message(make_envelope(device_id, "ack", body))
                if self._publish(topic, payload):
                    sent += 1
                    continue
                self.publish_failures += 1
                self._keep(device_id, body)
        self.published += sent
        return sent
