"""``replay``: plays a recording (CSV, ``.npy`` or ``.npz``) back as a live stream.

Channels are chosen by name (CSV header, or the ``channel_names`` array of an ``.npz``)
or by position; by default every numeric column except the timestamp column and
``ignore_columns`` (``["label"]``) is a channel. Samples are paced at the recorded
rate - from the timestamp column, or ``rate_hz`` when set - divided by ``speed``, or
sent as fast as possible (``realtime = false``). Emitted timestamps start at the current
wall-clock time and follow the playback clock (``timestamps = "wall"``) or keep the
recorded values (``"recorded"``); when looping they keep increasing.

Values that do not parse as numbers, NaN and infinity are counted as bad samples and
skipped. Without ``loop`` the source marks itself :attr:`~Source.finished` at the end.
"""

from __future__ import annotations

import bisect
import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from edgefleet.agent.sources.base import BaseSourceConfig, Sink
from edgefleet.agent.sources.hub import HubSource, SourceHub
from edgefleet.agent.sources.recording import FORMATS, Recording, load_recording, shared_recording

__all__ = ["Recording", "ReplaySource", "ReplaySourceConfig", "load_recording"]

_NO_OVERFLOW = 1e307  # two finite numbers below this add up to a finite one


class ReplaySourceConfig(BaseSourceConfig):
    type: Literal["replay"] = "replay"
    file: Path = Field(description="recording: .csv (with header), .npy (n, channels) or .npz")
    columns: list[str | int] | None = Field(
        default=None, description="channel columns by name or 0-based position; default: all numeric"
    )
    ignore_columns: list[str] = Field(
        default_factory=lambda: ["label"], description="never channels (labels, ids, ...)"
    )
    timestamp_column: str | None = Field(
        default="timestamp",
        description="epoch or relative seconds; CSV column or .npz array. Used when present "
        "(an explicitly named one must exist); none = pace by rate_hz",
    )
    samples_key: str = Field(default="samples", description=".npz array holding (n, channels) samples")
    rate_hz: float | None = Field(default=None, gt=0, description="sample rate; overrides file timestamps")
    speed: float = Field(
        default=1.0, gt=0, le=10_000, description="playback speed factor (2 = twice as fast)"
    )
    realtime: bool = Field(default=True, description="false: send as fast as possible")
    loop: bool = Field(default=False, description="start over at the end instead of finishing")
    block_size: int = Field(default=64, ge=1, le=100_000, description="samples per sink call at most")
    timestamps: Literal["wall", "recorded"] = Field(
        default="wall", description="emit times starting now ('wall') or the file's own ('recorded')"
    )

    @model_validator(mode="after")
    def _known_format(self) -> ReplaySourceConfig:
        if self.file.suffix.lower() not in FORMATS:
            raise ValueError(f"file {str(self.file)!r} must end in one of {', '.join(FORMATS)}")
        return self


class ReplaySource(HubSource[ReplaySourceConfig]):
    type_key = "replay"
    config_model = ReplaySourceConfig

    BLOCKS_PER_TURN = 16  # unpaced or catching up: blocks sent before the hub serves the others
    STAMPS_AHEAD = 4096  # rows whose emitted times are computed at once (see _stamps)

    def __init__(self, config: ReplaySourceConfig, sink: Sink) -> None:
        super().__init__(config, sink)
        # one copy of a file, however many streams replay it (see shared_recording)
        # Bad rows (NaN or infinity in a value or its time) are known once loaded
        # (Recording.bad_before): a block with none skips the bad-sample gate, and one with any
        # goes through it (see _emit_clean).
        self.recording = shared_recording(config)
        self._position = 0
        self._cycle = 0
        self._scale = 1.0
        self._base = 0.0
        self._mono0 = 0.0
        self._scaled_offsets = self.recording.offsets
        self._offset_bound = math.inf  # set by _open
        # stamps computed ahead (see _stamps): rows from _held_from on, at shift _held_shift
        self._held_stamps: npt.NDArray[np.float64] = np.empty(0, np.float64)
        self._held_from = 0
        self._held_shift = math.nan

    @property
    def channels(self) -> int:
        return int(self.recording.samples.shape[1])

    @property
    def channel_names(self) -> list[str]:
        return list(self.recording.channel_names)

    def _open(self, hub: SourceHub, now: float) -> float | None:
        cfg, rec = self.config, self.recording
        wall = cfg.timestamps == "wall"
        # Real-time wall stamps follow the playback clock, so a sped-up replay never stamps the future.
        self._scale = 1.0 / cfg.speed if wall and cfg.realtime else 1.0
        # wall mode: the next sample is stamped "now", also when resuming after stop()/start()
        self._base = time.time() - self._stream_time() * self._scale if wall else rec.start
        # pacing clock: stream time t is due at mono0 + t / speed (playback resumes in place)
        self._mono0 = now - self._stream_time() / cfg.speed
        # at scale 1 the recording's own (shared) offsets: nothing to copy, less to keep in cache
        self._scaled_offsets = rec.offsets if self._scale == 1.0 else rec.offsets * self._scale
        self._held_shift = math.nan  # base and scale are new: stamps computed before are stale
        self._offset_bound = float(np.nanmax(np.abs(self._scaled_offsets), initial=0.0))
        return now

    def _turn(self, now: float) -> float | None:
        """Emit every sample due by ``now`` (in blocks of ``block_size``); return the next due time.

        The usual paced turn (real time, a clean recording, the rows due fit one block, their stamps
        already computed) is written out here in full: on a core woken for the tick each Python call
        costs microseconds, and with many streams the hub makes this turn many times a tick.
        Everything else, and any doubt, takes :meth:`_turn_blocks`, which gives the same result.
        """
        cfg, rec = self.config, self.recording
        position = self._position
        n = rec.samples.shape[0]
        if not (cfg.realtime and rec.finite_times and rec.all_clean and position < n):
            return self._turn_blocks(now)
        end = min(n, position + cfg.block_size)
        speed = cfg.speed
        now_t = (now - self._mono0) * speed - self._cycle * rec.period
        offsets = rec.offset_view
        due_end = bisect.bisect_right(offsets, now_t, position, end)
        if due_end == position:  # not due yet (a finite time, so strictly later)
            return now + (offsets[position] - now_t) / speed
        shift = self._base + self._cycle * rec.period * self._scale
        held, first = self._held_stamps, self._held_from
        if not (
            shift == self._held_shift
            and first <= position
            and due_end - first <= held.shape[0]
            and abs(shift) < _NO_OVERFLOW > self._offset_bound
        ):
            return self._turn_blocks(now)  # stamps to compute, or times near the float64 limit
        self._position = due_end
        try:  # Source._emit_clean, written out
            self._sink(rec.samples[position:due_end], held[position - first : due_end - first])
        except Exception as exc:  # a broken consumer must not kill the reader
            self._count_frame()
            self._record_error(f"sink raised {type(exc).__name__}: {exc}")
        else:
            self._frames += 1
            self._samples += due_end - position
        if due_end < end:  # the next row is not due: say when it is
            return now + (offsets[due_end] - now_t) / speed
        return self._turn_blocks(now, self.BLOCKS_PER_TURN - 1)  # a whole block was due: catching up

    def _turn_blocks(self, now: float, blocks: int | None = None) -> float | None:
        """:meth:`_turn` for every case, clean or not, paced or not: up to ``blocks`` blocks
        (``BLOCKS_PER_TURN`` when not given) before the hub serves the others."""
        cfg, rec = self.config, self.recording
        n = rec.samples.shape[0]
        for _ in range(self.BLOCKS_PER_TURN if blocks is None else blocks):
            if self._position >= n:
                if not cfg.loop:
                    self._mark_finished()
                    return None
                self._position = 0
                self._cycle += 1
            block_end = end = min(n, self._position + cfg.block_size)
            if cfg.realtime:
                # recording time due now; bisect, unlike numpy, never lets go of the GIL mid-turn
                now_t = (now - self._mono0) * cfg.speed - self._cycle * rec.period
                if rec.finite_times:
                    due = bisect.bisect_right(rec.offset_view, now_t, self._position, end) - self._position
                else:
                    due = int(np.searchsorted(rec.offsets[self._position : end], now_t, side="right"))
                if due == 0:
                    wait = self._wait_for(self._position, now_t)
                    if wait > 0:
                        return now + wait
                    due = 1  # a NaN time: let it through to be counted as bad
                end = self._position + due
            chunk = slice(self._position, end)
            shift = self._base + self._cycle * rec.period * self._scale
            times = self._stamps(self._position, end, shift)
            start, self._position = self._position, end
            bad_before = rec.bad_before
            if (rec.all_clean or bad_before[end] == bad_before[start]) and abs(
                shift
            ) < _NO_OVERFLOW > self._offset_bound:
                # clean rows; their times (finite offset + shift, both far below the float64
                # maximum) are finite too
                self._emit_clean(rec.samples[chunk], times)
            else:
                self._count_frame()
                self._emit(rec.samples[chunk], times)
            if cfg.realtime and end < block_end:
                # the next sample is not due yet: say when it is, without another search
                wait = self._wait_for(end, now_t)
                if wait > 0:
                    return now + wait
        return now  # more is due (or unpaced): another turn on the hub's next pass

    def _stamps(self, start: int, end: int, shift: float) -> npt.NDArray[np.float64]:
        """The emitted times of rows ``[start, end)``: a slice of a run of stamps computed ahead.

        A paced turn hands over a few rows; computing their stamps with an add of their own costs
        a numpy call per turn, and on a core that was idle since the last tick each distinct numpy
        call costs tens of microseconds. The stamps of ``STAMPS_AHEAD`` rows are computed at once.
        """
        held = self._held_stamps
        first = self._held_from
        if shift == self._held_shift and first <= start and end - first <= held.shape[0]:
            return held[start - first : end - first]
        stop = max(end, min(self.recording.samples.shape[0], start + self.STAMPS_AHEAD))
        self._held_stamps = held = self._scaled_offsets[start:stop] + shift
        self._held_from, self._held_shift = start, shift
        return held[: end - start]

    def _wait_for(self, index: int, now_t: float) -> float:
        """Wall seconds until sample ``index`` is due (recording time ``now_t`` is now); 0 for a NaN time."""
        at = self.recording.offset_view[index]
        return (at - now_t) / self.config.speed if math.isfinite(at) else 0.0

    def _stream_time(self) -> float:
        rec = self.recording
        if self._position == 0:
            return self._cycle * rec.period
        last = rec.offsets[self._position - 1]
        return float(last if np.isfinite(last) else 0.0) + self._cycle * rec.period
