"""Hard examples: the windows devices sent to the cloud, with the edge's and the cloud's answers.

The inference workers hand every answered request to a :class:`HardExampleRecorder`, which writes
them to the controller database from its own thread (a slow database never delays an answer; when
its queue is full the example is dropped and counted, never the answer). Retention deletes them
after ``retention.hard_examples_s``. They are read back through ``GET /api/hard-examples`` and
exported for retraining with :func:`export_npz` (``edgefleet controller export-hard-examples``).

The ``.npz`` layout (``numpy.load(path)`` without ``allow_pickle``), ``n`` examples, oldest first:

==================  ==============  ===============================================================
key                 dtype, shape    meaning
==================  ==============  ===============================================================
``windows``         float32 (n,L,C) the raw window as the device sent it (before normalization)
``cloud_labels``    str (n,)        the cloud model's answer
``cloud_scores``    float64 (n,)    its score (NaN: none)
``edge_labels``     str (n,)        the edge model's answer ("" when the device had none)
``edge_scores``     float64 (n,)    its score (NaN: none)
``device_ids``      str (n,)        who sent it
``request_ids``     str (n,)        the request's id
``streams``         str (n,)        the device's stream
``reasons``         str (n,)        why the device asked (``fallback_reason``)
``window_start``    float64 (n,)    the window's first and last sample times (device clock, s)
``window_end``      float64 (n,)
``answered_at``     float64 (n,)    when the worker answered (epoch s)
``model_names``     str (n,)        the cloud bundle that answered
``model_versions``  str (n,)
==================  ==============  ===============================================================
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgefleet.errors import EdgefleetError

if TYPE_CHECKING:
    from edgefleet.controller.dal import Database

__all__ = ["HardExample", "HardExampleRecorder", "export_npz"]

log = logging.getLogger(__name__)

_QUEUE_MAX = 10_000  # examples waiting for the database; past it new ones are dropped and counted
_WRITE_BATCH = 500


@dataclass(frozen=True)
class HardExample:
    device_id: str
    request_id: str
    answered_at: float
    stream: str
    window_start: float
    window_end: float
    fallback_reason: str
    edge_label: str | None
    edge_score: float | None
    cloud_label: str
    cloud_score: float | None
    model_name: str
    model_version: str
    shape: tuple[int, ...]
    data: bytes | None = None
    """Little-endian float32 samples; None when read without windows."""
    id: int | None = None

    def window(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        if self.data is None:
            raise ValueError(f"hard example {self.id} was read without its window")
        return np.frombuffer(self.data, dtype="<f4").reshape(self.shape).astype(np.float32)


class HardExampleRecorder:
    """Writes hard examples to the database from one background thread."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.stored = 0
        self.dropped = 0
        self.failed = 0
        self._queue: queue.Queue[HardExample | None] = queue.Queue(_QUEUE_MAX)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(self, examples: Sequence[HardExample]) -> None:
        """Queue examples for writing; never blocks (a full queue drops and counts them)."""
        for example in examples:
            try:
                self._queue.put_nowait(example)
            except queue.Full:
                with self._lock:
                    self.dropped += 1

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="edgefleet-hard-examples", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch: list[HardExample] = []
            if item is None:
                stopping = True
            else:
                batch.append(item)
            while len(batch) < _WRITE_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                else:
                    batch.append(more)
            if batch:
                self._write(batch)

    def _write(self, batch: list[HardExample]) -> None:
        try:
            self.database.store_hard_examples(batch)
        except Exception:  # a database outage loses these examples, never the worker
            log.exception("could not store %d hard examples", len(batch))
            with self._lock:
                self.failed += len(batch)
            return
        with self._lock:
            self.stored += len(batch)


def export_npz(examples: Sequence[HardExample], out: Path) -> int:
    """Write ``examples`` (read with their windows) to ``out`` in the layout of the module docstring."""
    shapes = {e.shape for e in examples}
    if len(shapes) > 1:
        raise EdgefleetError(
            f"the hard examples hold windows of {len(shapes)} shapes {sorted(shapes)};"
            " one array cannot hold them",
            hint="export one cloud bundle's examples at a time"
            " (--since after the bundle changed, or --device-id)",
        )
    windows = np.stack([e.window() for e in examples]) if examples else np.zeros((0, 0, 0), dtype=np.float32)

    def text(values: list[str]) -> np.ndarray[Any, Any]:
        return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")

    def number(values: list[float | None]) -> np.ndarray[Any, Any]:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        np.savez_compressed(
            handle,
            windows=windows,
            cloud_labels=text([e.cloud_label for e in examples]),
            cloud_scores=number([e.cloud_score for e in examples]),
            edge_labels=text([e.edge_label or "" for e in examples]),
            edge_scores=number([e.edge_score for e in examples]),
            device_ids=text([e.device_id for e in examples]),
            request_ids=text([e.request_id for e in examples]),
            streams=text([e.stream for e in examples]),
            reasons=text([e.fallback_reason for e in examples]),
            window_start=number([e.window_start for e in examples]),
            window_end=number([e.window_end for e in examples]),
            answered_at=number([e.answered_at for e in examples]),
            model_names=text([e.model_name for e in examples]),
            model_versions=text([e.model_version for e in examples]),
        )
    return len(examples)
