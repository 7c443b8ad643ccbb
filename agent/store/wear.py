"""How many bytes the store writes to the device: the flash-wear figure in ``StoreStats``.

Source: Linux per-thread I/O accounting (``write_bytes`` in ``/proc/thread-self/io``), read
just before and just after each write transaction and checkpoint the store runs, in the thread
that runs it. That is what the kernel sends to the block device on the store's behalf: WAL
frames, checkpoint copies into the main file, vacuum moves, page-granular, fsync included.
Counting WAL frames x page size instead would miss the checkpoint copy (each page is written
twice in WAL mode), and the process-wide psutil counter would also count logs and model
downloads from other threads. Where the per-thread file is unreadable (non-Linux), the
process-wide counter from psutil is used and the source says so.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Literal

import psutil

__all__ = ["ProcessWrites", "WriteMeter", "WriteSource", "process_write_bytes"]

WriteSource = Literal["thread-io", "process-io", "unavailable"]

_THREAD_IO = "/proc/thread-self/io"
_HOUR_S = 3600.0
_SAMPLE_EVERY_S = 30.0


class _ThreadIoFile:
    """One open handle on this thread's io file; pread on it costs a few microseconds."""

    def __init__(self) -> None:
        self.fd = os.open(_THREAD_IO, os.O_RDONLY | os.O_CLOEXEC)

    def write_bytes(self) -> int:
        # Read twice per transaction: find the line instead of splitting the whole file.
        text = os.pread(self.fd, 512, 0)
        start = text.find(b"\nwrite_bytes:")
        if start < 0:
            raise OSError(f"no write_bytes line in {_THREAD_IO}")
        start += 13
        end = text.find(b"\n", start)
        return int(text[start:] if end < 0 else text[start:end])

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # _close is bound at definition: at interpreter exit the os module may already be gone.
        with suppress(OSError):
            _close(self.fd)


class WriteMeter:
    """Accumulates the bytes written inside ``measure()`` blocks; thread-safe."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._total = 0
        self._opened_at = time.monotonic()
        # (monotonic time, cumulative total) samples, to report the rate over the last hour.
        self._samples: deque[tuple[float, int]] = deque([(self._opened_at, 0)])
        self.source: WriteSource = self._probe_source()

    @staticmethod
    def _probe_source() -> WriteSource:
        try:
            _ThreadIoFile().write_bytes()
        except (OSError, ValueError):
            try:
                psutil.Process().io_counters()
            except (AttributeError, psutil.Error, OSError):
                return "unavailable"
            return "process-io"
        return "thread-io"

    def _read(self) -> int:
        if self.source == "thread-io":
            handle: _ThreadIoFile | None = getattr(self._local, "handle", None)
            if handle is None:
                handle = _ThreadIoFile()
                self._local.handle = handle
            return handle.write_bytes()
        if self.source == "process-io":
            return int(psutil.Process().io_counters().write_bytes)
        return 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        before = self._read()
        try:
            yield
        finally:
            self.add(max(0, self._read() - before))

    def add(self, nbytes: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._total += nbytes
            if now - self._samples[-1][0] >= _SAMPLE_EVERY_S:
                self._samples.append((now, self._total))
            while len(self._samples) > 2 and now - self._samples[1][0] >= _HOUR_S:
                self._samples.popleft()

    @property
    def total(self) -> int:
        return self._total

    def per_hour(self) -> float:
        """Bytes written over the last hour; extrapolated to an hour while open for less."""
        now = time.monotonic()
        with self._lock:
            # samples[0] is the newest sample at least an hour old (or the opening one).
            start_t, start_total = self._samples[0]
            written = self._total - start_total
        return float(written) * _HOUR_S / max(now - start_t, 1.0)


def process_write_bytes(pid: int | str = "self") -> int | None:
    """``write_bytes`` of ``/proc/<pid>/io``: what the process sent (or will send) to storage
    devices, every thread and file included; None where the kernel does not account it."""
    try:
        with open(f"/proc/{pid}/io", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    start = text.find(b"\nwrite_bytes:")
    if start < 0:
        return None
    start += 13
    end = text.find(b"\n", start)
    return int(text[start:] if end < 0 else text[start:end])


class ProcessWrites:
    """The whole agent process's device writes per hour, from ``/proc/self/io`` samples.

    The store's :class:`WriteMeter` sees only the store's transactions; this also counts the
    status and sync state files, logs written to disk and model downloads - what the SD card
    actually takes. Sample it periodically (the health monitor does, every metrics interval).
    """

    def __init__(self) -> None:
        first = process_write_bytes()
        self.available = first is not None
        now = time.monotonic()
        self._base = first or 0
        self._samples: deque[tuple[float, int]] = deque([(now, self._base)])
        self.total = 0
        """Bytes written since this meter was made (the agent's start)."""

    def sample(self) -> float | None:
        """Take a sample; bytes per hour over the last hour (extrapolated while younger), or None."""
        current = process_write_bytes()
        if current is None:
            return None
        now = time.monotonic()
        self.total = current - self._base
        self._samples.append((now, current))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _HOUR_S:
            self._samples.popleft()
        start_t, start_bytes = self._samples[0]
        return float(current - start_bytes) * _HOUR_S / max(now - start_t, 1.0)
