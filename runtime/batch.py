"""A batch of windows as the model sees them: stacked data, and its windows' metadata as arrays.

Split from :mod:`edgefleet.runtime.batcher` (which decides when windows are released together):
a :class:`Batch` is what every consumer of a batch reads (the inference worker, result rows,
drift, the cloud fallback), built from the per-stream pops or the ring group pop it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from edgefleet.runtime.ring_group import GroupPop
from edgefleet.runtime.windows import Window, WindowBatch
from edgefleet.types import AnyArray, FloatArray

__all__ = ["Batch"]

_GROUP_META = frozenset({"seq", "start_ts", "end_ts", "ready_at"})


class Batch:
    """Windows released together; ``data`` stacks their data as ``(N, window_length, channels)`` float32.

    A batch from :meth:`Batcher.next_batch` is built from :class:`WindowBatch` parts (one per
    stream pop) and creates its :class:`Window` objects only when :attr:`windows` is read; the
    metadata is also available as arrays (:attr:`seq`, :attr:`start_ts`, ...), which is cheaper.
    """

    __slots__ = ("_group", "_parts", "_windows", "data")

    def __init__(self, windows: list[Window] | None = None, data: FloatArray | None = None) -> None:
        if windows is None or data is None:
            raise TypeError("Batch(windows, data) needs both; use Batch.of or Batch.of_parts")
        self._windows: list[Window] | None = windows
        self._parts: tuple[WindowBatch, ...] | None = ()
        self._group: GroupPop | None = None
        self.data = data

    @classmethod
    def of_part(cls, part: WindowBatch) -> Batch:
        """One pop's windows as a batch, zero-copy: the single-stream form of :meth:`of_parts`."""
        batch = cls.__new__(cls)
        batch._windows = None
        batch._parts = (part,)
        batch._group = None
        batch.data = part.data
        return batch

    @classmethod
    def of_group(cls, popped: GroupPop) -> Batch:
        """The windows of one :meth:`RingGroup.pop`, zero-copy, with its metadata arrays (its
        per-stream parts are built only if :attr:`parts`, :attr:`windows` & co. are read)."""
        batch = cls.__new__(cls)
        batch._windows = None
        batch._parts = None
        batch._group = popped
        batch.data = popped.data
        return batch

    @classmethod
    def of_parts(cls, parts: Sequence[WindowBatch]) -> Batch:
        """One batch of ``parts``' windows in order; zero-copy when there is one part."""
        batch = cls.__new__(cls)
        batch._windows = None
        batch._parts = tuple(parts)
        batch._group = None
        if len(parts) == 1:
            batch.data = parts[0].data
        else:
            batch.data = np.concatenate([p.data for p in parts])
        return batch

    def _all_parts(self) -> tuple[WindowBatch, ...]:
        parts = self._parts
        if parts is None:  # a group pop's, built on first use
            group = self._group
            parts = self._parts = () if group is None else tuple(group.parts)
        return parts

    @property
    def codes(self) -> AnyArray | None:
        """``data`` quantized by the streams' input encoders; None unless every part has codes."""
        if self._parts is None:
            return None  # a group pop: RingGroup.pop declines streams with an input encoder
        parts = self._parts
        if len(parts) == 1:
            return parts[0].codes
        if not parts or any(p.codes is None for p in parts):
            return None
        return np.concatenate([p.codes for p in parts if p.codes is not None])

    @property
    def windows(self) -> list[Window]:
        """One :class:`Window` per row of ``data``, built on first access for batches of parts."""
        if self._windows is None:
            parts = self._all_parts()
            self._windows = parts[0].windows if len(parts) == 1 else [w for p in parts for w in p.windows]
        return self._windows

    @property
    def parts(self) -> tuple[WindowBatch, ...]:
        """The per-stream pops the batch was built from (empty for a batch built from windows)."""
        return self._all_parts()

    @property
    def group(self) -> GroupPop | None:
        """The ring group pop the batch is (its windows stream after stream), else None."""
        return self._group

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def streams(self) -> list[str]:
        """The stream of every window, in order."""
        if self._windows is not None:
            return [w.stream for w in self._windows]
        if self._parts is None and self._group is not None:
            return self._group.window_streams
        return [p.stream for p in self._all_parts() for _ in range(len(p))]

    def _meta(self, name: str, dtype: type[np.generic]) -> AnyArray:
        group = self._group
        if group is not None and name in _GROUP_META:
            return cast(AnyArray, getattr(group, name))
        if self._windows is not None:
            return np.array([getattr(w, name) for w in self._windows], dtype=dtype)
        arrays = [getattr(p, name) for p in self._all_parts()]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    @property
    def seq(self) -> AnyArray:
        """Each window's ``seq`` (int64)."""
        return self._meta("seq", np.int64)

    @property
    def start_index(self) -> AnyArray:
        """Each window's ``start_index`` (int64)."""
        return self._meta("start_index", np.int64)

    @property
    def start_ts(self) -> AnyArray:
        """Each window's ``start_ts`` (float64 epoch seconds)."""
        return self._meta("start_ts", np.float64)

    @property
    def end_ts(self) -> AnyArray:
        """Each window's ``end_ts`` (float64 epoch seconds)."""
        return self._meta("end_ts", np.float64)

    @property
    def ready_at(self) -> AnyArray:
        """Each window's ``ready_at`` (float64 monotonic seconds)."""
        return self._meta("ready_at", np.float64)

    @property
    def gap_before(self) -> AnyArray:
        """Each window's ``gap_before`` (bool)."""
        return self._meta("gap_before", np.bool_)

    def __repr__(self) -> str:
        return f"Batch({len(self)} windows, data {self.data.shape})"

    @classmethod
    def of(cls, windows: list[Window]) -> Batch:
        """Stack the windows' data; zero-copy when they are exactly one cut of one buffer, in order.

        In that case ``data`` shares memory with the windows' ``data``: treat both as read-only.
        """
        first = windows[0]
        base = first.data.base
        if (
            isinstance(base, np.ndarray)
            and base.ndim == 3
            and base.shape[0] == len(windows)
            and base.flags.c_contiguous
            and base.dtype == np.float32
        ):
            seq = first.seq
            # rows of one cut have consecutive seq numbers; n of them in order are the whole cut
            for k, w in enumerate(windows):
                if w.data.base is not base or w.seq != seq + k:
                    break
            else:
                return cls(windows=windows, data=base)
        return cls(windows=windows, data=np.stack([w.data for w in windows]))
