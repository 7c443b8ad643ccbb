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
import csv
import math
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from edgefleet.agent.sources.base import BaseSourceConfig, Sink, SourceError
from edgefleet.agent.sources.hub import HubSource, SourceHub
from edgefleet.errors import ConfigIssue
from edgefleet.types import FloatArray

__all__ = ["Recording", "ReplaySource", "ReplaySourceConfig", "load_recording"]

FORMATS = (".csv", ".npy", ".npz")
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


class Recording:
    """A loaded recording: samples (n, C) float32 (NaN where unreadable) and relative times (n,)."""

    def __init__(
        self,
        samples: FloatArray,
        offsets: npt.NDArray[np.float64],
        *,
        start: float,
        period: float,
        channel_names: list[str],
    ) -> None:
        self.samples = samples
        self.offsets = offsets
        self.start = start
        self.period = period
        self.channel_names = channel_names


def _issue(config: ReplaySourceConfig, key: str, value: object, expected: str) -> SourceError:
    return SourceError(
        f"replay source {config.name!r} cannot use {config.file}",
        issues=[ConfigIssue(f"{config.name}.{key}", value, expected)],
        hint="check the recording and the source's columns/timestamp_column/rate_hz keys",
    )


def _pick(config: ReplaySourceConfig, names: list[str], numeric: list[bool]) -> tuple[list[int], int | None]:
    """Indices of the channel columns and of the timestamp column (or None)."""
    ts_index: int | None = None
    explicit_ts = "timestamp_column" in config.model_fields_set and config.timestamp_column is not None
    if config.timestamp_column is not None and config.timestamp_column in names:
        ts_index = names.index(config.timestamp_column)
    elif explicit_ts:
        raise _issue(config, "timestamp_column", config.timestamp_column, f"one of {names}")
    if config.columns is not None:
        chosen: list[int] = []
        for col in config.columns:
            if isinstance(col, int):
                if not 0 <= col < len(names):
                    raise _issue(config, "columns", col, f"a position in 0..{len(names) - 1}")
                chosen.append(col)
            elif col in names:
                chosen.append(names.index(col))
            else:
                raise _issue(config, "columns", col, f"one of {names}")
    else:
        skip = set(config.ignore_columns)
        chosen = [i for i, n in enumerate(names) if i != ts_index and n not in skip and numeric[i]]
    if not chosen:
        raise _issue(config, "columns", config.columns, f"at least one numeric channel among {names}")
    return chosen, ts_index


def _read_csv(config: ReplaySourceConfig) -> tuple[list[str], npt.NDArray[np.float64], list[bool]]:
    """Header names, the table as float64 (NaN where a cell is not a number), and numeric columns."""
    with config.file.open(newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise _issue(config, "file", str(config.file), "a CSV file with a header row")
    names = [h.strip() for h in header]
    wanted = set(config.columns or []) | {config.timestamp_column}
    # labels and the like are never parsed, never channels
    parse = [
        c
        for c, n in enumerate(names)
        if not (n in config.ignore_columns and n not in wanted and c not in wanted)
    ]
    fast = _read_clean_csv(config.file, parse)
    if fast is not None:
        values = np.full((fast.shape[0], len(names)), np.nan, np.float64)
        values[:, parse] = fast
        numeric = [c in parse for c in range(len(names))]
    else:
        values, numeric = _read_dirty_csv(config.file, names, parse)
    if values.shape[0] == 0:
        raise _issue(config, "file", str(config.file), "at least one sample")
    return names, values, numeric


def _read_clean_csv(path: Path, columns: list[int]) -> npt.NDArray[np.float64] | None:
    """numpy's fast reader, for the usual file where every parsed cell is a number; None otherwise."""
    if not columns:
        return None
    try:
        with path.open(encoding="utf-8") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": reported as our own error
            table = np.loadtxt(fh, delimiter=",", skiprows=1, usecols=columns, ndmin=2, dtype=np.float64)
    except (ValueError, IndexError):
        return None
    return table if table.size else np.empty((0, len(columns)), np.float64)


def _read_dirty_csv(
    path: Path, names: list[str], columns: list[int]
) -> tuple[npt.NDArray[np.float64], list[bool]]:
    """Cell by cell: text, empty cells and short rows become NaN, refused later as bad samples."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    values = np.full((len(rows), len(names)), np.nan, np.float64)
    numeric = [False] * len(names)
    for c in columns:
        for r, row in enumerate(rows):
            try:
                values[r, c] = float(row[c])
            except (ValueError, IndexError):
                continue
            numeric[c] = True
    return values, numeric


def load_recording(config: ReplaySourceConfig) -> Recording:
    """Read and select the recording's channels; raises :class:`SourceError` naming the bad key."""
    path = config.file
    if not path.is_file():
        raise _issue(config, "file", str(path), "an existing .csv/.npy/.npz file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            names, table, numeric = _read_csv(config)
            chosen, ts_index = _pick(config, names, numeric)
            data = table[:, chosen]
            stamps = table[:, ts_index] if ts_index is not None else None
        else:
            stamps = None
            if suffix == ".npy":
                with path.open("rb") as fh:
                    array = np.load(fh, allow_pickle=False)
                names = [str(i) for i in range(array.shape[1])] if array.ndim == 2 else []
            else:
                # our own file handle: np.load leaks its own when the zip is corrupt
                with path.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
                    if config.samples_key not in npz.files:
                        raise _issue(config, "samples_key", config.samples_key, f"one of {npz.files}")
                    array = npz[config.samples_key]
                    names = (
                        [str(n) for n in npz["channel_names"]]
                        if "channel_names" in npz.files and array.ndim == 2
                        else [str(i) for i in range(array.shape[-1])]
                    )
                    if config.timestamp_column is not None and config.timestamp_column in npz.files:
                        stamps = np.asarray(npz[config.timestamp_column], np.float64)
                    elif "timestamp_column" in config.model_fields_set and config.timestamp_column:
                        raise _issue(
                            config, "timestamp_column", config.timestamp_column, f"one of {npz.files}"
                        )
            if array.ndim != 2:
                raise _issue(
                    config, "file", f"array of shape {array.shape}", "a 2-D (samples, channels) array"
                )
            chosen, _ = _pick(
                config.model_copy(update={"timestamp_column": None}), names, [True] * len(names)
            )
            data = np.asarray(array, np.float64)[:, chosen]
            if stamps is not None and stamps.shape != (data.shape[0],):
                raise _issue(
                    config,
                    "timestamp_column",
                    f"shape {stamps.shape}",
                    f"one time per sample ({data.shape[0]},)",
                )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise _issue(config, "file", str(path), f"a readable {suffix} recording ({exc})") from exc
    if data.shape[0] == 0:
        raise _issue(config, "file", str(path), "at least one sample")
    return _timed(config, data, stamps, [names[i] for i in chosen])


def _timed(
    config: ReplaySourceConfig,
    data: npt.NDArray[np.float64],
    stamps: npt.NDArray[np.float64] | None,
    channel_names: list[str],
) -> Recording:
    n = data.shape[0]
    if config.rate_hz is not None or stamps is None:
        if config.rate_hz is None:
            raise _issue(config, "rate_hz", None, "a sample rate, since the recording has no timestamps")
        offsets = np.arange(n, dtype=np.float64) / config.rate_hz
        start = float(stamps[0]) if stamps is not None and np.isfinite(stamps[0]) else 0.0
        step = 1.0 / config.rate_hz
    else:
        finite = np.isfinite(stamps)
        if not finite.any():
            raise _issue(config, "timestamp_column", config.timestamp_column, "finite timestamps")
        start = float(stamps[finite][0])
        # a NaN time stays NaN so that row is refused as a bad sample when emitted
        offsets = stamps - start
        diffs = np.diff(stamps[finite])
        positive = diffs[diffs > 0]
        step = float(np.median(positive)) if positive.size else 1.0
    period = float(np.nanmax(offsets)) + step
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused as a bad sample when emitted
        samples = data.astype(np.float32)
    return Recording(samples, offsets, start=start, period=period, channel_names=channel_names)


class ReplaySource(HubSource[ReplaySourceConfig]):
    type_key = "replay"
    config_model = ReplaySourceConfig

    BLOCKS_PER_TURN = 16  # unpaced or catching up: blocks sent before the hub serves the others
    STAMPS_AHEAD = 4096  # rows whose emitted times are computed at once (see _stamps)

    def __init__(self, config: ReplaySourceConfig, sink: Sink) -> None:
        super().__init__(config, sink)
        self.recording = load_recording(config)
        self._finite_times = bool(np.isfinite(self.recording.offsets).all())
        # Bad rows (NaN or infinity in a value or its time) are known once loaded: a block with
        # none skips the bad-sample gate, and one with any goes through it (see _emit_clean).
        rec = self.recording
        bad = ~(np.isfinite(rec.samples).all(axis=1) & np.isfinite(rec.offsets))
        self._bad_before: list[int] = [0, *np.cumsum(bad).tolist()]
        self._all_clean = self._bad_before[-1] == 0  # then no turn looks the counts up
        # the offsets as the Python floats they compare as, without a copy: bisect on a memoryview
        # neither boxes a numpy scalar per probe nor takes half as long
        self._offset_view = cast(Sequence[float], memoryview(np.ascontiguousarray(rec.offsets)))  # type: ignore[arg-type]
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
        self._scaled_offsets = rec.offsets * self._scale
        self._held_shift = math.nan  # base and scale are new: stamps computed before are stale
        self._offset_bound = float(np.nanmax(np.abs(self._scaled_offsets), initial=0.0))
        return now

    def _turn(self, now: float) -> float | None:
        """Emit every sample due by ``now`` (in blocks of ``block_size``); return the next due time."""
        cfg, rec = self.config, self.recording
        n = rec.samples.shape[0]
        for _ in range(self.BLOCKS_PER_TURN):
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
                if self._finite_times:
                    due = bisect.bisect_right(self._offset_view, now_t, self._position, end) - self._position
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
            bad_before = self._bad_before
            if (self._all_clean or bad_before[end] == bad_before[start]) and abs(
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
        at = self._offset_view[index]
        return (at - now_t) / self.config.speed if math.isfinite(at) else 0.0

    def _stream_time(self) -> float:
        rec = self.recording
        if self._position == 0:
            return self._cycle * rec.period
        last = rec.offsets[self._position - 1]
        return float(last if np.isfinite(last) else 0.0) + self._cycle * rec.period
