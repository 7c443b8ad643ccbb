"""The systemd notification protocol (``sd_notify``) without libsystemd.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: a path to a Unix
datagram socket, or ``@name`` for one in the abstract namespace. Each datagram is
newline-separated ``KEY=value`` lines (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``STOPPING=1``). Without the variable every call is a no-op, so the agent runs the
same way under systemd, in a container, or from a shell.

``WATCHDOG_USEC`` (and ``WATCHDOG_PID``, when set) say how often systemd expects
``WATCHDOG=1``; :meth:`Notifier.watchdog_interval` returns half of it, the cadence
systemd's own documentation recommends.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


def _socket_address(raw: str) -> str | bytes | None:
    if not raw:
        return None
    if raw.startswith("@"):
        # Abstract namespace: a leading NUL byte instead of the '@'.
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # vsock:// and other transports are not supported; treat as absent rather than fail.
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an abstract '@' name; sd_notify disabled", raw)
    return None


class Notifier:
    """Sends sd_notify datagrams. Thread-safe; never raises on a send failure."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = self._parse_watchdog(env)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str]) -> int | None:
        raw = env.get("WATCHDOG_USEC")
        if not raw:
            return None
        pid = env.get("WATCHDOG_PID")
        if pid and pid.strip() != str(os.getpid()):
            return None  # the watchdog is meant for another process (e.g. our parent)
        try:
            usec = int(raw)
        except ValueError:
            log.warning("WATCHDOG_USEC=%r is not an integer; watchdog pings disabled", raw)
            return None
        return usec if usec > 0 else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when off."""
        if self._watchdog_usec is None or not self.enabled:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines; returns False when disabled or the send failed."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                log.debug("sd_notify to %r failed: %s", self._address, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        # STATUS is one line; a newline would start a new (bogus) assignment.
        return self.notify(STATUS=text.replace("\n", " "))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd (>= 253) match the reload to this request.
        return self.notify(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
