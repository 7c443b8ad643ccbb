"""The drift monitor: live windows -> per-sample bin counts -> reports -> alerts with hysteresis.

Shared by the agent (:mod:`edgefleet.agent.drift_observer` feeds it every inferred batch) and
``edgefleet drift check`` (which feeds it a recording cut into the same windows), so both count,
report and alert identically.

* **Every sample once.** Windows overlap (``hop < window_length``), so only the samples of a
  window that no earlier window of its stream covered are counted: per stream the monitor keeps
  the end of the last counted window and counts each window's rows from there on. In the usual
  case (consecutive windows) that is the last ``hop`` rows of every window, one slice per batch.
* **Reports** close after ``windows`` windows or ``interval_s`` seconds, whichever comes first,
  but not on windows alone sooner than ``min_interval_s`` after the previous report (at high
  window rates a report then holds more windows); they are scored with
  :func:`edgefleet.runtime.drift_stats.score_counts`.
* **Hysteresis.** A channel is *over* in a report when any of its PSI / JS / KS / scale / swap
  scores is over its threshold; it is flagged after ``alert_after`` consecutive reports over and cleared after
  ``clear_after`` consecutive reports under every threshold. Reports with fewer than
  ``min_samples`` samples on a channel are scored and sent but leave its state alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.drift_group_calls import GroupCalls
from edgefleet.agent.drift_hold import HOLD_BELOW, HeldWindows, key_of
from edgefleet.agent.drift_report import METRICS, ChannelState, DriftAlert, DriftReport, DriftSettings
from edgefleet.runtime.drift_stats import BinCounter, ReferenceArrays, score_counts
from edgefleet.runtime.profile import ReferenceProfile

__all__ = [
    "ChannelState",
    "DriftAlert",
    "DriftMonitor",
    "DriftReport",
    "DriftSettings",
]


COUNT_ROWS = 4096  # pending rows counted at once (numpy's cost per call dwarfs its cost per value)


class DriftMonitor(GroupCalls):
    """Counts live windows against ``profile`` and closes a :class:`DriftReport` when one is due.

    Single-threaded: call :meth:`add_windows` / :meth:`flush` from one thread. :meth:`state`
    returns a copy and may be read from others.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        *,
        window_length: int,
        labels: Sequence[str] = (),
        settings: DriftSettings | None = None,
        on_report: Callable[[DriftReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.settings = settings or DriftSettings()
        self.window_length = window_length
        self.labels = list(labels)
        self.channel_names = [c.name for c in profile.channels]
        self._counter = BinCounter(profile, self.labels)
        self._reference = ReferenceArrays(profile, self.labels)  # derived once, not per report
        # Rows and outputs waiting to be counted: numpy's cost per call dwarfs its cost per value
        # on the few rows one batch adds (16 slow sensors: 10 new rows each), so they are counted
        # a few thousand at a time, and always before a report closes.
        self._pending: list[npt.NDArray[Any]] = []
        self._pending_rows = 0
        self._pending_labels: list[str | None] = []
        self._pending_scores: list[float | None] = []  # flat: one np.array per count
        self._pending_ts: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        self._held = HeldWindows()  # small batches, counted together
        self._on_report = on_report
        self._clock = clock
        self._last_end: dict[str, int] = {}
        self._init_group_calls()  # ring group calls: agent/drift_group_calls.py
        self.states = {name: ChannelState() for name in self.channel_names}
        self.reports = 0
        self.last_report: DriftReport | None = None
        self.sample_every = 1  # 1 call in this many is counted (sampling, set at each report's close)
        self._sample_phase = 0
        self._reset_span()

    def _reset_span(self) -> None:
        self._span_windows = 0
        self._span_skipped = 0
        self._span_started = self._clock()
        self._rate_known = False  # the window rate is measured once a report holds `windows`
        self._first_sample: int | None = None
        self._last_sample = 0
        self._t0 = float("inf")
        self._t1 = float("-inf")

    # -- feeding ------------------------------------------------------------------------------

    def skip(self, windows: int) -> None:
        """Note ``windows`` that were inferred but not counted (reported as ``skipped_windows``)."""
        self._span_skipped += windows

    def add_windows(
        self,
        stream: str | Sequence[str],
        start_index: npt.ArrayLike,
        data: npt.NDArray[Any],
        *,
        start_ts: npt.ArrayLike | None = None,
        end_ts: npt.ArrayLike | None = None,
        labels: Sequence[str | None] | None = None,
        scores: Sequence[float | None] | None = None,
    ) -> list[DriftReport]:
        """Count windows ``data`` (``(N, window_length, C)``, oldest first) of ``stream`` whose
        first samples have indices ``start_index``; returns the reports this closed.

        ``stream`` may also name each window's stream (a batch of several streams, each one's
        windows oldest first): one call then counts them all, far cheaper than one per stream
        when each stream adds a window or two per batch (many slow sensors). Small calls are held
        and counted together (:mod:`edgefleet.agent.drift_hold`), never past a report's end."""
        n = len(data)
        closed = self._release_groups() if self._held_calls else []  # older: counted first
        if 0 < n < HOLD_BELOW:
            key = key_of(stream, data, start_ts, end_ts, labels, scores)
            if self._held.accepts(key, n):
                self._held.add(key, stream, start_index, data, start_ts, end_ts, labels, scores)
                if start_ts is not None and end_ts is not None:
                    self._seen(float(np.min(start_ts)), float(np.max(end_ts)))
                if not self._closes_at(self._span_windows + self._held.windows, seen=True):
                    return closed  # counted later with the next ones: nothing would close now
                return closed + self._release()
        closed += self._release()  # the held windows are older: counted first
        return closed + self._add(stream, start_index, data, start_ts, end_ts, labels, scores)

    def pass_over(self, windows: int) -> bool:
        """Sampling (``[drift] sample``): call before counting a call's ``windows``; True means
        leave them out (they are reported as skipped): all calls but one in ``sample_every``.
        Nothing else is done for them, so a left-out batch costs next to nothing; the next
        counted window of each stream counts its new rows only (:meth:`_goes_on`)."""
        self._sample_phase += 1
        if self._sample_phase < self.sample_every:
            self._span_skipped += windows
            self._left_out = True
            return True
        self._sample_phase = 0
        return False

    def _note_time(self, start_ts: npt.NDArray[np.float64], end_ts: npt.NDArray[np.float64]) -> None:
        # The report's data time, for min_interval_s: the first call's earliest start and the
        # latest call's last end (streams keep pace; the exact range is taken at the close).
        if self._t0 == float("inf"):
            self._t0 = float(start_ts.min())
        last = float(end_ts[-1])
        if last > self._t1:
            self._t1 = last

    def _release(self) -> list[DriftReport]:
        held = self._held.take()
        if held is None:
            return []
        self._seen_t0, self._seen_t1 = float("inf"), float("-inf")
        return self._add(
            held.stream, held.start_index, held.data, held.start_ts, held.end_ts, held.labels, held.scores
        )

    def _add(
        self,
        stream: str | Sequence[str],
        start_index: npt.ArrayLike,
        data: npt.NDArray[Any],
        start_ts: npt.ArrayLike | None,
        end_ts: npt.ArrayLike | None,
        labels: Sequence[str | None] | None,
        scores: Sequence[float | None] | npt.NDArray[np.float64] | None,
    ) -> list[DriftReport]:
        self._sync_groups()
        starts = np.asarray(start_index, dtype=np.int64)
        n = len(starts)
        t0 = None if start_ts is None else np.asarray(start_ts, dtype=np.float64)
        t1 = None if end_ts is None else np.asarray(end_ts, dtype=np.float64)
        closed: list[DriftReport] = []
        at = 0
        while at < n:
            room = self.settings.windows - self._span_windows
            # Split at the report's window count; past it (min_interval_s holding the report
            # open) the report takes whole calls.
            take = n - at if room <= 0 else min(n - at, room)
            part = slice(at, at + take)
            if isinstance(stream, str):
                self._count(stream, starts[part], data[part])
            else:
                self._count_mixed(stream[at : at + take], starts[part], data[part])
            if labels is not None and scores is not None:
                self._pending_labels.extend(labels[part])
                self._pending_scores.extend(scores[part])
            if t0 is not None and t1 is not None:
                self._t0 = min(self._t0, float(t0[part].min()))
                self._t1 = max(self._t1, float(t1[part].max()))
            self._span_windows += take
            at += take
            if self._span_windows >= self.settings.windows and not self._rate_known:
                self._set_sampling()
            if self._due():
                closed.append(self._close())
        return closed

    def _count(self, stream: str, starts: npt.NDArray[np.int64], data: npt.NDArray[Any]) -> None:
        length = self.window_length
        last_end = self._last_end.get(stream, -1)
        if last_end >= 0 and starts[0] + length < last_end:
            last_end = -1  # the stream's indices started again (a new source or buffer)
        ends = starts + length
        previous = np.maximum.accumulate(np.concatenate(([last_end], ends[:-1])))
        skip = np.clip(previous - starts, 0, length)
        channels = data.shape[2]
        if np.all(skip == skip[0]):
            block = data[:, int(skip[0]) :, :].reshape(-1, channels)
        elif len(skip) > 1 and np.all(skip[1:] == skip[1]):
            # the usual batch after a gap or at a stream's start: only its first window differs
            rest = data[1:, int(skip[1]) :, :].reshape(-1, channels)
            block = np.concatenate([data[0, int(skip[0]) :, :], rest])
        else:
            block = np.concatenate([data[i, int(k) :, :] for i, k in enumerate(skip)])
        self._defer(block, data)
        new_first = int(starts[0] + skip[0])
        self._first_sample = new_first if self._first_sample is None else min(self._first_sample, new_first)
        self._last_sample = max(self._last_sample, int(ends[-1]))
        self._last_end[stream] = max(last_end, int(ends[-1]))

    def _count_mixed(
        self, streams: Sequence[str], starts: npt.NDArray[np.int64], data: npt.NDArray[Any]
    ) -> None:
        # The same rule as _count, window by window: a plain loop over a batch's few dozen
        # windows costs less than one numpy pass per stream.
        length = self.window_length
        last = self._last_end
        get = last.get
        skips: list[int] = []
        first = starts.tolist()
        new_first = first[0] + length  # no window counts a row past its own end
        for name, start in zip(streams, first, strict=True):
            end = get(name, -1)
            stop = start + length
            if end >= 0 and stop < end:
                end = -1  # the stream's indices started again (a new source or buffer)
            k = end - start
            k = 0 if k <= 0 else k if k < length else length
            skips.append(k)
            last[name] = stop if stop > end else end
            if start + k < new_first:
                new_first = start + k
        channels = data.shape[2]
        if skips.count(skips[0]) == len(skips):
            block = data[:, skips[0] :, :].reshape(-1, channels)
        else:
            block = np.concatenate([data[i, k:, :] for i, k in enumerate(skips)])
        self._defer(block, data)
        self._first_sample = new_first if self._first_sample is None else min(self._first_sample, new_first)
        self._last_sample = max(self._last_sample, max(first) + length)

    def _defer(self, block: npt.NDArray[Any], data: npt.NDArray[Any]) -> None:
        # A copy when the block is a view: the batch's buffer may be reused once we return.
        self._queue_rows(block.copy() if np.shares_memory(block, data) else block)

    def _queue_rows(self, rows: npt.NDArray[Any]) -> None:
        """Keep ``rows`` (owned, ``(n, channels)``) for counting; count once enough are queued."""
        self._pending.append(rows)
        self._pending_rows += len(rows)
        if self._pending_rows >= COUNT_ROWS:
            self._count_pending()

    def _count_pending(self) -> None:
        if self._pending:
            pending = self._pending
            self._counter.add_samples(pending[0] if len(pending) == 1 else np.concatenate(pending))
            self._pending, self._pending_rows = [], 0
        if self._pending_scores:
            scores = np.array(self._pending_scores, dtype=np.float64)  # None -> NaN
            self._counter.add_outputs(self._pending_labels, scores)
            self._pending_labels, self._pending_scores = [], []

    def _closes_at(self, windows: int, *, seen: bool = False) -> bool:
        """Whether the open report closes now if it holds ``windows`` windows: after
        ``interval_s`` of wall time, or after ``windows`` windows once it spans ``min_interval_s``
        of data time (of the windows' timestamps, else wall time: a recording replayed fast
        gets the reports it would get in real time). ``seen``: with the held group calls' time."""
        if windows <= 0:
            return False
        settings = self.settings
        elapsed = self._clock() - self._span_started
        if elapsed >= settings.interval_s:
            return True
        if windows < settings.windows:
            return False
        return settings.min_interval_s <= 0 or self._span_seconds(elapsed, seen) >= settings.min_interval_s

    def _span_seconds(self, elapsed: float, seen: bool = False) -> float:
        """Data time the open report spans (``elapsed`` wall time when windows have no timestamps)."""
        t0, t1 = self._t0, self._t1
        if seen:
            t0, t1 = min(t0, self._seen_t0), max(t1, self._seen_t1)
        return t1 - t0 if t1 > t0 else elapsed

    def _due(self) -> bool:
        return self._closes_at(self._span_windows)

    def poll(self) -> DriftReport | None:
        """Close the report if it is due (call when no windows come)."""
        held = self._held.windows + self._held_call_windows
        closed = []
        if held and self._closes_at(self._span_windows + held, seen=True):
            closed = self._release_groups() + self._release()  # only one of the two holds any
        if not closed and self._due():
            closed.append(self._close())
        return closed[-1] if closed else None

    def flush(self) -> DriftReport | None:
        """Close the report now if it counted anything (end of a recording, shutdown)."""
        # held windows are counted (their interval may close a report)
        closed = self._release_groups() + self._release()
        if self._span_windows > 0:
            closed.append(self._close())
        return closed[-1] if closed else None

    # -- reports ------------------------------------------------------------------------------

    def _close(self) -> DriftReport:
        self._count_pending()
        self._fold_group_ranges()
        counts = self._counter.take()
        scores = score_counts(self.profile, counts, self.labels, reference=self._reference)
        thresholds = self.settings.thresholds()
        index = self.reports
        alerts: list[DriftAlert] = []
        over_by_channel: dict[str, list[str]] = {}
        for score in scores.channels:
            values = {m: getattr(score, m) for m in METRICS}
            over = {m: v for m, v in values.items() if v is not None and v > thresholds[m]}
            over_by_channel[score.name] = sorted(over)
            if score.samples < self.settings.min_samples:
                continue  # too few samples to judge: sent, but the state stays
            ratios = {m: v / thresholds[m] for m, v in over.items()}
            change = self.states[score.name].update(index, score.name, over, ratios, self.settings)
            if change is not None:
                alerts.append(change)
        first = self._first_sample if self._first_sample is not None else self._last_sample
        report = DriftReport(
            index=index,
            start_sample=first,
            end_sample=self._last_sample,
            window_start=self._t0 if np.isfinite(self._t0) else float(first),
            window_end=self._t1 if np.isfinite(self._t1) else float(self._last_sample),
            windows=self._span_windows,
            skipped_windows=self._span_skipped,
            scores=scores,
            counts=counts,
            over=over_by_channel,
            drifted={name: state.drifted for name, state in self.states.items()},
            alerts=alerts,
        )
        self.reports += 1
        self.last_report = report
        self._set_sampling()
        self._reset_span()
        if self._on_report is not None:
            self._on_report(report)
        return report

    def _set_sampling(self) -> None:
        """Calls per counted call from the open report's window rate (measured once it holds
        ``windows`` windows, and again at its close): at rates where a report held open for
        ``min_interval_s`` would count more than ``windows`` windows, only a systematic sample of
        the calls is counted (``[drift] sample``), about ``windows`` windows per report (a report
        never closes on windows before it has counted that many)."""
        self._rate_known = True
        settings = self.settings
        seconds = self._span_seconds(self._clock() - self._span_started)
        if not settings.sample or settings.min_interval_s <= 0 or seconds <= 0:
            self.sample_every = 1
            return
        per_report = (self._span_windows + self._span_skipped) / seconds * settings.min_interval_s
        self.sample_every = max(1, int(per_report // settings.windows))

    def drifted_channels(self) -> frozenset[str]:
        """The input channels whose drift alert is active now (the fallback's ``on_drift``)."""
        return frozenset(name for name, state in self.states.items() if state.drifted)

    def state(self) -> dict[str, Any]:
        """Per channel: alert state and the latest scores (what ``agent status`` shows)."""
        last = self.last_report
        channels: dict[str, Any] = {}
        for name, state in self.states.items():
            score = last.channel(name) if last is not None else None
            channels[name] = {
                "drifted": state.drifted,
                "metric": state.metric if state.drifted else None,
                "since_report": state.since_report,
                "psi": None if score is None else score.psi,
                "js": None if score is None else score.js,
                "ks": None if score is None else score.ks,
                "scale": None if score is None else score.scale,
                "swap": None if score is None else score.swap,
                "swap_with": None if score is None else score.swap_with,
            }
        outputs = last.scores.outputs if last is not None else None
        return {
            "reports": self.reports,
            "sample_every": self.sample_every,
            "drifted": any(s.drifted for s in self.states.values()),
            "channels": channels,
            "outputs": None
            if outputs is None
            else {"class_psi": outputs.class_psi, "confidence_psi": outputs.confidence_psi},
        }
