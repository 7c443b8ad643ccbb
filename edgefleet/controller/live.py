"""Fleet changes for the live stream: the ingest writer publishes, HTTP streams poll by version."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from edgefleet.controller.dal import IngestOutcome

__all__ = ["ChangeSet", "FleetChanges"]

_HISTORY = 10_000


@dataclass
class ChangeSet:
    """What changed after a version: devices touched, online/offline flips, commands acked."""

    version: int
    devices: list[str] = field(default_factory=list)
    status: dict[str, bool] = field(default_factory=dict)
    new_devices: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    truncated: bool = False

    def __bool__(self) -> bool:
        return bool(self.devices or self.status or self.new_devices or self.commands or self.truncated)


class FleetChanges:
    """A version counter plus a bounded history of changes; cheap to poll from many streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self._history: deque[tuple[int, str, str, object]] = deque(maxlen=_HISTORY)

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def publish(self, outcome: IngestOutcome) -> None:
        with self._lock:
            self._version += 1
            v = self._version
            for device in sorted(outcome.changed_devices):
                self._history.append((v, "device", device, None))
            for device in outcome.new_devices:
                self._history.append((v, "new", device, None))
            for device, online in outcome.status_changes.items():
                self._history.append((v, "status", device, online))
            for command_id in outcome.acked_commands:
                self._history.append((v, "command", command_id, None))

    def command_changed(self, command_id: str) -> None:
        with self._lock:
            self._version += 1
            self._history.append((self._version, "command", command_id, None))

    def since(self, version: int) -> ChangeSet:
        with self._lock:
            current = self._version
            oldest = self._history[0][0] if self._history else current + 1
            entries = [e for e in self._history if e[0] > version]
        changes = ChangeSet(version=current, truncated=version < oldest - 1 and version < current)
        devices: dict[str, None] = {}
        for _, kind, key, value in entries:
            if kind == "device":
                devices[key] = None
            elif kind == "new":
                changes.new_devices.append(key)
            elif kind == "status":
                changes.status[key] = bool(value)
            else:
                changes.commands.append(key)
        changes.devices = list(devices)
        return changes
