"""Recordings for the ``replay`` source: reading CSV, ``.npy`` and ``.npz`` files, and sharing them.

Channels are chosen by name (CSV header, or the ``channel_names`` array of an ``.npz``) or by
position; by default every numeric column except the timestamp column and ``ignore_columns`` is a
channel. Cells that do not parse as numbers become NaN and are refused as bad samples when
emitted. Every problem is a :class:`~edgefleet.agent.sources.base.SourceError` naming the key.
"""

from __future__ import annotations

import csv
import threading
import warnings
import weakref
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from edgefleet.agent.sources.base import SourceError
from edgefleet.errors import ConfigIssue
from edgefleet.types import FloatArray

if TYPE_CHECKING:
    from edgefleet.agent.sources.replay import ReplaySourceConfig

__all__ = ["FORMATS", "Recording", "load_recording", "shared_recording"]

FORMATS = (".csv", ".npy", ".npz")


class Recording:
    """A loaded recording: samples (n, C) float32 (NaN where unreadable) and relative times (n,).

    Read-only once built, so that every replay source reading the same file the same way can
    share one (:func:`shared_recording`). What a source needs to know about the rows before
    emitting them is worked out here, once: whether every time is finite, and how many bad rows
    (NaN or infinity in a value or its time) lie before each row.
    """

    def __init__(
        self,
        samples: FloatArray,
        offsets: npt.NDArray[np.float64],
        *,
        start: float,
        period: float,
        channel_names: list[str],
    ) -> None:
        samples.flags.writeable = False
        offsets = np.ascontiguousarray(offsets)
        offsets.flags.writeable = False
        self.samples = samples
        self.offsets = offsets
        self.start = start
        self.period = period
        self.channel_names = channel_names
        self.finite_times = bool(np.isfinite(offsets).all())
        bad = ~(np.isfinite(samples).all(axis=1) & np.isfinite(offsets))
        self.bad_before: list[int] = [0, *np.cumsum(bad).tolist()]
        """``bad_before[i]``: bad rows before row ``i`` (so a block's count is one subtraction)."""
        self.all_clean = self.bad_before[-1] == 0
        # the offsets as the Python floats they compare as, without a copy: bisect on a memoryview
        # neither boxes a numpy scalar per probe nor takes half as long
        self.offset_view = cast(Sequence[float], memoryview(offsets))  # type: ignore[arg-type]


_shared: weakref.WeakValueDictionary[tuple[object, ...], Recording] = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


def shared_recording(config: ReplaySourceConfig) -> Recording:
    """:func:`load_recording`, loaded once for every source that reads the same file the same way.

    Sixteen streams replaying one file then hold one copy of it, not sixteen, and their turns
    read the same memory (on a core that slept since the last tick, each distinct array a turn
    touches costs a cache miss of its own). The file's size and modification time are part of
    the key, so a file changed on disk is read again; a recording lives while a source holds it.
    """
    try:
        stat = config.file.stat()
        path = config.file.resolve()
    except OSError:
        return load_recording(config)  # reports the missing or unreadable file
    key = (
        str(path),
        stat.st_size,
        stat.st_mtime_ns,
        None if config.columns is None else tuple(config.columns),
        tuple(config.ignore_columns),
        config.timestamp_column,
        "timestamp_column" in config.model_fields_set,
        config.samples_key,
        config.rate_hz,
    )
    with _shared_lock:
        recording = _shared.get(key)
        if recording is None:
            recording = _shared[key] = load_recording(config)
        return recording


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
