"""Turning an inferred batch into results: rows for the store (the hot path) or records.

The hot path (:func:`result_rows_of`) makes one plain tuple per window in the store's
``RESULT_COLUMNS`` order and nothing else: no Window, Prediction or ResultRecord object. The
per-window metadata is read from the batch's arrays when the batch carries them
(``Batch.start_ts`` & co.), else from its windows. The values are plain ``str``/``float``/``int``
by construction (``tolist()``), which is what lets ``Store.write_result_rows`` skip the
per-record validation of ``Store.write_results``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.store import ResultRecord
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle, Interpretation, Prediction
from edgefleet.types import FloatArray

__all__ = ["packed_outputs", "result_records_of", "result_rows_of"]


def packed_outputs(values: FloatArray) -> list[bytes]:
    """Each row of ``values`` (N, K) packed as ``encode_outputs`` packs it: little-endian float64."""
    return [row.tobytes() for row in np.ascontiguousarray(values, dtype="<f8")]


def _columns(
    batch: Batch, done: float
) -> tuple[Sequence[str], list[float], list[float], list[float], list[int]]:
    """streams, start_ts, end_ts, latency_ms (window complete -> answer), seq; one entry per window."""
    if hasattr(batch, "ready_at"):
        ready: npt.NDArray[np.float64] = np.asarray(batch.ready_at, dtype=np.float64)
        latency = np.maximum((done - ready) * 1000.0, 0.0)
        return (
            batch.streams,
            batch.start_ts.tolist(),
            batch.end_ts.tolist(),
            latency.tolist(),
            batch.seq.tolist(),
        )
    windows = batch.windows
    return (
        [w.stream for w in windows],
        [w.start_ts for w in windows],
        [w.end_ts for w in windows],
        [max((done - w.ready_at) * 1000.0, 0.0) for w in windows],
        [w.seq for w in windows],
    )


def result_rows_of(
    bundle: Bundle, batch: Batch, answers: Interpretation, done: float, *, keep_outputs: bool
) -> list[tuple[Any, ...]]:
    """One store row per window of ``batch``, answered by the edge model of ``bundle``."""
    streams, starts, ends, latencies, seqs = _columns(batch, done)
    outputs = packed_outputs(answers.values) if keep_outputs else repeat(None)
    return list(
        zip(
            streams,
            starts,
            ends,
            repeat(bundle.manifest.name),
            repeat(str(bundle.manifest.version)),
            answers.labels,
            answers.scores,
            outputs,
            latencies,
            repeat("edge"),
            repeat(None),
            seqs,
            repeat(time.time()),
        )
    )


def result_records_of(
    bundle: Bundle, batch: Batch, predictions: Sequence[Prediction], done: float, *, keep_outputs: bool
) -> list[ResultRecord]:
    """One ResultRecord per window (the fallback router's path: it hands records on)."""
    name = bundle.manifest.name
    version = str(bundle.manifest.version)
    created = time.time()
    records = []
    for window, prediction in zip(batch.windows, predictions, strict=True):
        score = prediction.score
        latency = (done - window.ready_at) * 1000.0
        records.append(
            ResultRecord(
                window.stream,
                window.start_ts,
                window.end_ts,
                name,
                version,
                prediction.label,
                None if score is None else float(score),
                prediction.values.tolist() if keep_outputs else None,
                latency if latency > 0.0 else 0.0,
                "edge",
                None,
                window.seq,
                created,
            )
        )
    return records
