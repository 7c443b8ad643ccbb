"""Small batches' windows held as they came, so the drift monitor counts many batches at once.

At a realistic load the agent hands the monitor a batch of a few windows ten times a second
(16 sensors at 100 Hz, hop 10: 16 windows per batch). Counting one such batch costs tens of
microseconds of fixed per-call work (a dozen numpy calls, each far dearer than its few
values), and it runs in a writer thread that has been idle since the last batch, cold: together
more than the rest of the agent spends on those windows. Held here (one copy of each batch,
a few microseconds) and counted a few hundred windows at a time, the fixed work is paid once.

The monitor holds a batch only while that cannot change what it reports or when: never past the
window that closes a report, never once the report's interval has passed (both checked on
every call), and the held windows are counted before anything reads the counts (a report
closing, :meth:`~edgefleet.agent.drift_monitor.DriftMonitor.flush`, ``poll``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["HOLD_BELOW", "HOLD_MAX", "HeldBatch", "HeldWindows"]

HOLD_BELOW = 32
"""Calls with fewer windows than this are held; larger ones are counted at once (already cheap per window)."""

HOLD_MAX = 512
"""Windows held at most (about 600 kB of float32 windows of 50 x 6) before they are counted."""


class HeldBatch(NamedTuple):
    """Held windows, ready for one count: the arguments of ``DriftMonitor.add_windows`` (a tuple:
    one is built per held batch)."""

    stream: str | list[str]
    start_index: npt.NDArray[np.int64]
    data: npt.NDArray[Any]
    start_ts: npt.NDArray[np.float64] | None
    end_ts: npt.NDArray[np.float64] | None
    labels: list[str | None] | None
    scores: npt.NDArray[np.float64] | None


# Batches that can be counted together: with or without timestamps and outputs alike, and windows
# of one shape (one stream or several does not matter: held windows are counted per window).
Key = tuple[bool, bool, tuple[int, ...]]


def key_of(
    stream: str | Sequence[str],
    data: npt.NDArray[Any],
    start_ts: object,
    end_ts: object,
    labels: object,
    scores: object,
) -> Key:
    return (
        start_ts is not None and end_ts is not None,
        labels is not None and scores is not None,
        data.shape[1:],
    )


class HeldWindows:
    """The held batches, oldest first. Not thread-safe (the monitor's one feeding thread)."""

    def __init__(self) -> None:
        self._batches: list[HeldBatch] = []
        self._key: Key | None = None
        self.windows = 0

    def __bool__(self) -> bool:
        return self.windows > 0

    def accepts(self, key: Key, n: int) -> bool:
        """Whether a batch of ``n`` windows of this kind may join the held ones."""
        return (self._key is None or key == self._key) and self.windows + n <= HOLD_MAX

    def add(
        self,
        key: Key,
        stream: str | Sequence[str],
        start_index: npt.ArrayLike,
        data: npt.NDArray[Any],
        start_ts: npt.ArrayLike | None,
        end_ts: npt.ArrayLike | None,
        labels: Sequence[str | None] | None,
        scores: Sequence[float | None] | None,
    ) -> None:
        """Hold a copy of one batch (the caller's buffers may be reused once it returns)."""
        has_ts, has_outputs = key[0], key[1]
        self._batches.append(
            HeldBatch(
                stream=stream if isinstance(stream, str) else list(stream),
                start_index=np.array(start_index, dtype=np.int64),
                data=np.array(data),
                start_ts=np.array(start_ts, dtype=np.float64) if has_ts else None,
                end_ts=np.array(end_ts, dtype=np.float64) if has_ts else None,
                labels=list(labels) if has_outputs and labels is not None else None,
                scores=np.array(scores, dtype=np.float64) if has_outputs else None,  # None -> NaN
            )
        )
        self._key = key
        self.windows += len(data)

    def take(self) -> HeldBatch | None:
        """Every held window as one batch (each stream's windows still oldest first); none held after."""
        batches, self._batches, self._key, self.windows = self._batches, [], None, 0
        if len(batches) <= 1:
            return batches[0] if batches else None
        first = batches[0]
        # Always one stream name per window, even when every batch is of one stream: the per-window
        # rule notices a stream whose indices start again inside the held windows.
        stream = [
            name
            for b in batches
            for name in ([b.stream] * len(b.data) if isinstance(b.stream, str) else b.stream)
        ]
        has_ts, has_outputs = first.start_ts is not None, first.scores is not None
        return HeldBatch(
            stream=stream,
            start_index=np.concatenate([b.start_index for b in batches]),
            data=np.concatenate([b.data for b in batches]),
            start_ts=np.concatenate([b.start_ts for b in batches if b.start_ts is not None])
            if has_ts
            else None,
            end_ts=np.concatenate([b.end_ts for b in batches if b.end_ts is not None]) if has_ts else None,
            labels=[label for b in batches if b.labels is not None for label in b.labels]
            if has_outputs
            else None,
            scores=np.concatenate([b.scores for b in batches if b.scores is not None])
            if has_outputs
            else None,
        )
