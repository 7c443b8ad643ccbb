"""Outbox rows the broker took but the controller has not yet acknowledged (end-to-end ack).

Kept in memory only: after an agent restart every row still in the outbox is simply sent again,
and the controller's de-duplication by ``(device_id, message_id, part)`` makes that harmless.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edgefleet.cloud_sync.acks import Range

__all__ = ["NO_MATCHING_SUBSCRIBERS", "AwaitingAcks"]

NO_MATCHING_SUBSCRIBERS = "no matching subscribers"
"""Reason text the link passes for an MQTT 5 PUBACK with reason code 0x10: nobody received it."""

_EXPAND_MAX = 65_536  # a wider ack range is matched against the rows we know of, not expanded
_RETRY_MIN_S = 0.5


@dataclass
class _Row:
    parts: int
    deadline: float
    acked_parts: set[int] = field(default_factory=set)


class AwaitingAcks:
    """Row ids waiting for the controller, each with the moment it is due to be sent again."""

    def __init__(self, resend_after_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.resend_after_s = resend_after_s
        self._clock = clock
        self._rows: dict[int, _Row] = {}
        self._early: dict[int, set[int] | None] = {}  # None: every part
        self._retry_s = _RETRY_MIN_S
        self.resent = 0
        """Rows sent again because no acknowledgement came within resend_after_s."""
        self.retried_no_subscribers = 0
        """Rows sent again because the broker said nobody subscribed (MQTT 5 reason 0x10)."""
        self.acks_received = 0
        self.rows_acknowledged = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def clear(self) -> None:
        """Forget what waits: the rows are still in the outbox and go out with the next peek."""
        self._rows.clear()

    def sent(self, item_id: int, parts: int) -> bool:
        """The broker took every part. False when the controller acknowledged it already."""
        early = self._early.pop(item_id, set())
        if early is None or len(early) >= parts:
            return False
        row = _Row(parts=parts, deadline=self._clock() + self.resend_after_s)
        row.acked_parts |= early
        self._rows[item_id] = row
        return True

    def nobody_subscribed(self, item_id: int, parts: int) -> None:
        """Broker reason 0x10: send again after a growing back-off (the controller may be reconnecting)."""
        self.retried_no_subscribers += 1
        self._rows[item_id] = _Row(parts=parts, deadline=self._clock() + self._retry_s)
        self._retry_s = min(self._retry_s * 2, max(_RETRY_MIN_S, self.resend_after_s))

    def expire(self) -> int:
        """Stop waiting for rows past their deadline (the next peek sends them again)."""
        now = self._clock()
        due = [i for i, row in self._rows.items() if row.deadline <= now]
        for item_id in due:
            del self._rows[item_id]
        self.resent += len(due)
        return len(due)

    def acknowledge(
        self, ranges: Iterable[Range], parts: Iterable[tuple[int, int]], in_flight: Iterable[int]
    ) -> list[int]:
        """Apply one ``ack`` body; returns the row ids that are now fully acknowledged.

        ``in_flight``: rows published whose PUBACK has not come yet; an acknowledgement for one of
        them is remembered so that its PUBACK does not start waiting again.
        """
        self.acks_received += 1
        self._retry_s = _RETRY_MIN_S
        flying = set(in_flight)
        done: list[int] = []
        for first, last in ranges:
            if last - first < _EXPAND_MAX:
                ids: Iterable[int] = range(first, last + 1)
            else:
                ids = [i for i in (*self._rows, *flying) if first <= i <= last]
            for item_id in ids:
                self._rows.pop(item_id, None)
                if item_id in flying:
                    self._early[item_id] = None
                done.append(item_id)
        for item_id, part in parts:
            row = self._rows.get(item_id)
            if row is None:
                early = self._early.setdefault(item_id, set()) if item_id in flying else None
                if early is not None:
                    early.add(part)
                continue
            row.acked_parts.add(part)
            if len(row.acked_parts) >= row.parts:
                del self._rows[item_id]
                done.append(item_id)
        self.rows_acknowledged += len(done)
        return done
