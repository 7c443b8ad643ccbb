"""Ring group calls for the drift monitor: many sensors' windows at once, held and counted together.

A busy device pops its sensors of one shape together (:class:`~edgefleet.runtime.ring_group.
RingGroup`): every batch is one call of ``count`` windows of each stream, the streams' first
indices one array. :class:`GroupCalls` (a base of :class:`~edgefleet.agent.drift_monitor.
DriftMonitor`) counts such calls with nothing done per window or per stream when each stream
goes on where its last counted window ended, and holds them first: each batch reaches the
monitor in a writer thread that has been idle since the last one, where every line of Python and
every numpy call runs several times slower than in a loop (measured in the agent: about 240 us
for a call that takes 20 us in a loop). Held calls are counted one after another when
:data:`HOLD_CALLS` are held, when the report could close with them (checked as each arrives), or
before anything reads the counts: the same reports as counting each call as it comes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from edgefleet.agent.drift_hold import HeldWindows
from edgefleet.agent.drift_report import DriftReport, DriftSettings

__all__ = ["HOLD_CALLS", "GroupCall", "GroupCalls"]

HOLD_CALLS = 32
"""Group calls held at most before they are counted (their arrays are the pops' own: no copy)."""

_FOLD_CALLS = 256  # counted group calls whose ranges are kept before they are folded

IntArray = npt.NDArray[np.int64]
F64Array = npt.NDArray[np.float64]


class GroupCall(NamedTuple):
    """One held ring group call: the arguments of :meth:`GroupCalls.add_group`."""

    streams: tuple[str, ...]
    starts: IntArray
    per_stream: int  # windows of each stream
    hop: int
    data: npt.NDArray[Any]
    start_ts: F64Array | None
    end_ts: F64Array | None
    labels: Sequence[str | None] | None
    scores: Sequence[float | None] | None
    after_left_out: bool  # sampling left batches out just before this one


class GroupCalls:
    """The ring group path of the drift monitor (its state lives in the monitor)."""

    if TYPE_CHECKING:  # provided by DriftMonitor
        settings: DriftSettings
        window_length: int
        _pending_labels: list[str | None]
        _pending_scores: list[float | None]
        _pending_ts: list[tuple[F64Array, F64Array]]
        _last_end: dict[str, int]
        _span_windows: int
        _rate_known: bool
        _first_sample: int | None
        _last_sample: int
        _t0: float
        _t1: float
        sample_every: int
        _held: HeldWindows

        def _release(self) -> list[DriftReport]: ...
        def _add(
            self,
            stream: str | Sequence[str],
            start_index: npt.ArrayLike,
            data: npt.NDArray[Any],
            start_ts: npt.ArrayLike | None,
            end_ts: npt.ArrayLike | None,
            labels: Sequence[str | None] | None,
            scores: Sequence[float | None] | npt.NDArray[np.float64] | None,
        ) -> list[DriftReport]: ...
        def _closes_at(self, windows: int, *, seen: bool = False) -> bool: ...
        def _note_time(self, start_ts: F64Array, end_ts: F64Array) -> None: ...
        def _set_sampling(self) -> None: ...
        def _queue_rows(self, rows: npt.NDArray[Any]) -> None: ...
        def _close(self) -> DriftReport: ...

    def _init_group_calls(self) -> None:
        # Ring groups' stream positions, newer than _last_end for their streams, and the
        # (starts, skip, span) of their counted calls since the report opened (its sample range).
        self._group_ends: dict[tuple[str, ...], tuple[IntArray, bytes]] = {}
        self._group_spans: list[tuple[IntArray, int, int]] = []
        self._held_calls: list[GroupCall] = []
        self._left_out = False  # sampling left a batch out since the last group call
        self._held_call_windows = 0
        self._seen_t0 = float("inf")  # held windows' data time (these calls' or the monitor's
        self._seen_t1 = float("-inf")  # held small batches'), for deciding whether to hold more

    def add_group(
        self,
        streams: tuple[str, ...],
        starts: IntArray,
        count: int,
        hop: int,
        data: npt.NDArray[Any],
        *,
        start_ts: F64Array | None = None,
        end_ts: F64Array | None = None,
        labels: Sequence[str | None] | None = None,
        scores: Sequence[float | None] | None = None,
    ) -> list[DriftReport]:
        """Count ``count`` windows ``hop`` apart of each of ``streams``, stream after stream in
        ``data``, the first of stream ``i`` starting at sample ``starts[i]``: one ring group pop
        (:class:`~edgefleet.runtime.ring_group.GroupPop`). The same counts and reports as
        :meth:`add_windows` with every window named. ``data`` is kept until counted: pass an
        array nobody writes to afterwards (a pop's own)."""
        closed = self._release() if self._held else []  # held windows are older: counted first
        n = len(data)
        if start_ts is not None and end_ts is not None and n:
            self._seen(
                float(start_ts.min()) if self._seen_t0 == float("inf") else self._seen_t0, float(end_ts[-1])
            )
        after, self._left_out = self._left_out, False
        call = GroupCall(streams, starts, count, hop, data, start_ts, end_ts, labels, scores, after)
        self._held_calls.append(call)
        self._held_call_windows += n
        if len(self._held_calls) < HOLD_CALLS and not self._closes_at(
            self._span_windows + self._held_call_windows, seen=True
        ):
            return closed  # counted later with the next ones: nothing would close now
        return closed + self._release_groups()

    def _seen(self, first: float, last: float) -> None:
        """Note held windows' data time (from ``first`` to ``last``) for deciding to hold more."""
        self._seen_t0 = min(self._seen_t0, first)
        self._seen_t1 = max(self._seen_t1, last)

    def _release_groups(self) -> list[DriftReport]:
        """Count the held group calls, oldest first."""
        calls, self._held_calls, self._held_call_windows = self._held_calls, [], 0
        self._seen_t0, self._seen_t1 = float("inf"), float("-inf")
        closed: list[DriftReport] = []
        for call in calls:
            closed += self._add_group_now(call)
        return closed

    def _add_group_now(self, call: GroupCall) -> list[DriftReport]:
        streams, starts, count, hop, data, start_ts, end_ts, labels, scores, after_left_out = call
        n = len(data)
        length = self.window_length
        skip = length - hop
        known = self._group_ends.get(streams)
        if known is None:
            self._sync_groups()  # one tuple per group; another one's streams may be among these
            get = self._last_end.get
            ends = np.array([get(name, -1) for name in streams], dtype=np.int64)
            expected = (ends - skip).tobytes()
        else:
            expected = known[1]
        span_time = self._t0, self._t1
        if start_ts is not None and end_ts is not None:
            self._note_time(start_ts, end_ts)  # before deciding whether the report closes
        closes = self._closes_at(self._span_windows + n)
        room = self.settings.windows - self._span_windows
        if (
            not self._goes_on(starts, expected, after_left_out)
            or not 0 <= skip < length
            or n != len(streams) * count
            or (closes and 0 < room < n)
        ):
            # a stream's first windows, after a gap, or a report ending inside the call: window by window
            self._t0, self._t1 = span_time  # noted window by window there
            names = [name for name in streams for _ in range(count)]
            first = (starts[:, None] + np.arange(count, dtype=np.int64) * hop).ravel()
            return self._add(names, first, data, start_ts, end_ts, labels, scores)
        channels = data.shape[2]
        rows = data.reshape(len(streams), count, length, channels)[:, :, skip:, :]
        self._queue_rows(np.array(rows).reshape(-1, channels))  # np.array: a copy, ours to keep
        span = (count - 1) * hop + length
        ends = starts + span
        self._group_ends[streams] = (ends, (ends - skip).tobytes())
        self._group_spans.append((starts, skip, span))
        if labels is not None and scores is not None:
            self._pending_labels.extend(labels)
            self._pending_scores.extend(scores)
        if start_ts is not None and end_ts is not None:
            self._pending_ts.append((start_ts, end_ts))  # exact range at the close
        self._span_windows += n
        if self._span_windows >= self.settings.windows and not self._rate_known:
            self._set_sampling()
        if len(self._group_spans) >= _FOLD_CALLS:
            self._fold_group_ranges()
        return [self._close()] if closes else []

    @staticmethod
    def _goes_on(starts: IntArray, expected: bytes, after_left_out: bool) -> bool:
        """Whether each stream's first window follows its last counted one: straight on (the
        bytes compare: a tenth of the cost of np.array_equal here), or, right after batches that
        sampling left out, later (the rows in between were left out with them)."""
        if starts.tobytes() == expected:
            return True
        if not after_left_out:
            return False
        return bool((starts >= np.frombuffer(expected, dtype=np.int64)).all())

    def _fold_group_ranges(self) -> None:
        """The exact sample and time ranges of the group calls so far (kept per call until a
        report closes or a few hundred calls have come, so that memory stays bounded)."""
        if self._group_spans:
            spans = self._group_spans
            first = min(int(starts.min()) + skip for starts, skip, _ in spans)
            self._first_sample = first if self._first_sample is None else min(self._first_sample, first)
            last = max(int(starts.max()) + span for starts, _, span in spans)
            self._last_sample = max(self._last_sample, last)
            self._group_spans = []
        if self._pending_ts:
            self._t0 = min(self._t0, float(np.concatenate([t0 for t0, _ in self._pending_ts]).min()))
            self._t1 = max(self._t1, float(np.concatenate([t1 for _, t1 in self._pending_ts]).max()))
            self._pending_ts = []

    def _sync_groups(self) -> None:
        """Write the groups' stream positions back to ``_last_end`` (before anything reads it)."""
        for streams, (ends, _) in self._group_ends.items():
            self._last_end.update(zip(streams, ends.tolist(), strict=True))
        self._group_ends.clear()
