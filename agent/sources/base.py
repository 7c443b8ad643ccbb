"""What every sensor source shares: its config base, a thread, stats, and the bad-sample gate.

A source reads samples from somewhere (a file, a socket, a broker), and hands clean
blocks to ``sink(samples (n, channels) float32, timestamps (n,) float64)``. Rows that
are not finite or have the wrong width are counted and logged here, in one place, so
no source can let a bad sample into a window by forgetting a check.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.errors import ConfigError
from edgefleet.types import FloatArray

__all__ = [
    "STREAM_NAME_PATTERN",
    "BaseSourceConfig",
    "RateLimitedLog",
    "Sink",
    "Source",
    "SourceError",
    "SourceStats",
]

log = logging.getLogger(__name__)

STREAM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Sink = Callable[[FloatArray, npt.NDArray[np.float64]], object]
"""Receives ``samples`` (n, channels) float32 and ``timestamps`` (n,) float64 epoch seconds; what it
returns is ignored (a ring buffer's ``push_block``, which returns the count it kept, is a sink)."""


class SourceError(ConfigError):
    """A source cannot be built from its config (unreadable recording, bad column, ...)."""


class BaseSourceConfig(BaseModel):
    """Keys every ``[[sources]]`` table has; each source type adds its own."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        pattern=STREAM_NAME_PATTERN,
        description="stream name: letters, digits, '_', '.', '-' (max 64); results and logs carry it",
    )
    restart_delay_s: float = Field(
        default=1.0, gt=0, le=300, description="pause before a failed source loop is run again"
    )
    if TYPE_CHECKING:
        # Each subclass's ``type: Literal[...]`` field; the config union is built at run time.
        type: str


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of one source's counters."""

    samples: int = 0
    """Samples handed to the sink."""
    bad_samples: int = 0
    """Samples (or whole frames, when nothing in them could be read) refused."""
    frames: int = 0
    """Datagrams, messages or blocks read, good or bad."""
    last_error: str | None = None


class RateLimitedLog:
    """Logs at most one warning per ``interval_s``, telling how many were suppressed in between."""

    def __init__(self, logger: logging.Logger, interval_s: float = 5.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last = -float("inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            self._logger.warning(message + " (%d similar messages suppressed)", *args, suppressed)
        else:
            self._logger.warning(message, *args)


C = TypeVar("C", bound=BaseSourceConfig)


class Source(ABC, Generic[C]):
    """One stream. Subclasses set ``type_key`` and ``config_model`` and implement :meth:`_run`.

    ``_run`` loops until :attr:`_stopping` is set. If it raises, the error is recorded in
    ``stats.last_error`` and logged, and it is run again after ``restart_delay_s``: a source
    thread never dies of an exception. Sources that come to a natural end (a replay without
    ``loop``) call :meth:`_mark_finished` and return.
    """

    type_key: ClassVar[str]
    config_model: ClassVar[type[BaseSourceConfig]]

    def __init__(self, config: C, sink: Sink) -> None:
        self.config = config
        self._sink = sink
        self._lock = threading.Lock()
        # Samples and frames are counted without the lock: only the thread that reads the source
        # (its own, the hub's or its client's network loop) writes them, and a stats reader may see
        # one block's frame before its samples. A lock per block cost more than the block's copy.
        self._samples = 0
        self._frames = 0
        self._bad = 0  # with _last_error, under the lock: a snapshot shows the two together
        self._last_error: str | None = None
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = logging.getLogger(f"edgefleet.agent.sources.{self.type_key}")
        self._bad_log = RateLimitedLog(self._log)
        self._error_log = RateLimitedLog(self._log)

    # -- public surface ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name

    @property
    @abstractmethod
    def channels(self) -> int:
        """Values per sample this source emits."""

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(self._samples, self._bad, self._frames, self._last_error)

    @property
    def finished(self) -> bool:
        """True once a finite source (replay without loop, synthetic with a duration) has emitted all."""
        return self._finished.is_set()

    def wait_finished(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._thread_main, name=f"source-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._interrupt()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning("source %r did not stop within %.1fs", self.name, timeout)
        self._close()

    def __enter__(self) -> Source[C]:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for subclasses ------------------------------------------------------------------------
    @abstractmethod
    def _run(self) -> None:
        """Read until ``self._stopping`` is set (or the data ends)."""

    def _interrupt(self) -> None:
        """Wake a blocking read so that ``_run`` sees ``_stopping``; sources with sockets override it."""

    def _close(self) -> None:
        """Release resources after the thread has ended."""

    def _mark_finished(self) -> None:
        self._finished.set()

    def _count_frame(self, n: int = 1) -> None:
        self._frames += n

    def _reject(self, count: int, reason: str) -> None:
        """Count ``count`` bad samples and log why, at most every few seconds per source."""
        if count <= 0:
            return
        with self._lock:
            self._bad += count
            self._last_error = reason
        self._bad_log.warning("stream %r: dropped %d bad sample(s): %s", self.name, count, reason)

    def _emit(self, samples: npt.ArrayLike, timestamps: npt.ArrayLike) -> int:
        """Pass the good rows of a block to the sink; returns how many went through."""
        if (
            isinstance(samples, np.ndarray)
            and samples.dtype == np.float32
            and isinstance(timestamps, np.ndarray)
            and timestamps.dtype == np.float64
        ):
            data, times = samples, timestamps  # already what the sink takes: no conversion
        else:  # out-of-range values become inf: refused below
            with np.errstate(over="ignore", invalid="ignore"):
                data = np.asarray(samples, dtype=np.float32)
                times = np.asarray(timestamps, dtype=np.float64)
        if data.ndim == 1:
            data = data.reshape(1, -1)
        times = times.reshape(-1)
        if data.ndim != 2 or data.shape[1] != self.channels or data.shape[0] != times.shape[0]:
            self._reject(
                max(1, times.shape[0]),
                f"block of shape {data.shape} with {times.shape[0]} timestamps; "
                f"expected (n, {self.channels}) with n timestamps",
            )
            return 0
        # One sum per array tells a clean block (the usual case) from one with NaN or infinity;
        # a sum that overflows only sends a clean block down the exact row-by-row check.
        with np.errstate(over="ignore", invalid="ignore"):
            clean = math.isfinite(float(data.sum()) + float(times.sum()))
        if not clean:
            good = np.isfinite(data).all(axis=1) & np.isfinite(times)
            n_bad = int(good.size - np.count_nonzero(good))
            if n_bad:
                self._reject(n_bad, "NaN or infinite value or timestamp")
                data, times = data[good], times[good]
        if data.shape[0] == 0:
            return 0
        try:
            self._sink(np.ascontiguousarray(data), np.ascontiguousarray(times))
        except Exception as exc:  # a broken consumer must not kill the reader
            self._record_error(f"sink raised {type(exc).__name__}: {exc}")
            return 0
        self._samples += data.shape[0]
        return int(data.shape[0])

    def _emit_clean(self, samples: FloatArray, timestamps: npt.NDArray[np.float64]) -> None:
        """Hand over one block (counted as one frame) that the caller has proven clean.

        Only for a source that knows, before emitting, that every row is finite and of the right
        width: a recording checked once when loaded (``replay``). It skips :meth:`_emit`'s gate,
        whose two passes over the block cost more than the rest of a small block's hand-over.
        """
        try:
            self._sink(samples, timestamps)
        except Exception as exc:  # a broken consumer must not kill the reader
            self._count_frame()
            self._record_error(f"sink raised {type(exc).__name__}: {exc}")
            return
        self._frames += 1
        self._samples += samples.shape[0]

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._last_error = message
        self._error_log.warning("stream %r: %s", self.name, message)

    def _thread_main(self) -> None:
        while not self._stopping.is_set():
            try:
                self._run()
            except Exception as exc:
                self._record_error(
                    f"{type(exc).__name__}: {exc}; restarting in {self.config.restart_delay_s}s"
                )
                self._stopping.wait(self.config.restart_delay_s)
                continue
            if self._finished.is_set():
                return
            if not self._stopping.is_set():
                # _run returned without finishing or being stopped: treat like a failure, avoid a hot loop
                self._stopping.wait(self.config.restart_delay_s)
