"""Where the agent's main loop waits between its ticks: a timeout, cut short by a signal or a request.

The main loop polls (OTA install requests, the status file's marks, limits) and acts on the flags
its signal handlers and :meth:`~edgefleet.agent.service.AgentService.request_stop` set. A plain
``time.sleep`` only notices them at the end of the tick, so the tick had to be short (0.25 s),
and every wake-up of a sleeping thread costs CPU (far more than the poll itself on a busy,
cold core). :class:`MainWait` lets the loop sleep longer once the agent runs: a signal (through
``signal.set_wakeup_fd``) or :meth:`MainWait.wake` ends the wait at once.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket

__all__ = ["MainWait"]


class MainWait:
    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous_fd: int | None = None

    def wake_on_signals(self) -> None:
        """Make every signal end the current :meth:`wait` (main thread only, like signal handlers)."""
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)

    def wake(self) -> None:
        """End the current (or the next) :meth:`wait` now; any thread."""
        with contextlib.suppress(OSError):  # a full buffer: a wake-up is already pending
            self._write.send(b"\0")

    def wait(self, timeout: float) -> None:
        """Up to ``timeout`` seconds, less when woken; what woke it is consumed."""
        ready, _, _ = select.select([self._read], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(OSError):
                while self._read.recv(4096):
                    pass

    def close(self) -> None:
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        self._read.close()
        self._write.close()
