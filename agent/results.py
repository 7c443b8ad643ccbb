"""Turning an inferred batch into results: rows for the store (the hot path) or records.

The hot path (:func:`result_rows_of`) makes one plain tuple per window in the store's
``RESULT_COLUMNS`` order and nothing else: no Window, Prediction or ResultRecord object. The
per-window metadata comes from the batch's arrays (``Batch.start_ts`` & co., no Window objects
built) and the answers' columns, zipped in C. The values are plain ``str``/``float``/``int`` by
construction (``tolist()``), which is what lets ``Store.write_result_rows`` skip the per-record
validation of ``Store.write_results``.
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


def result_rows_of(
    bundle: Bundle, batch: Batch, answers: Interpretation, done: float, *, keep_outputs: bool
) -> list[tuple[Any, ...]]:
    """One store row per window of ``batch``, answered by the edge model of ``bundle``."""
    # Edge latency: window complete -> answer (queueing + batching + inference).
    ready: npt.NDArray[np.float64] = np.asarray(batch.ready_at, dtype=np.float64)
    latencies = np.maximum((done - ready) * 1000.0, 0.0).tolist()
    outputs = packed_outputs(answers.values) if keep_outputs else repeat(None)
    return list(
        zip(
            batch.streams,
            batch.start_ts.tolist(),
            batch.end_ts.tolist(),
            repeat(bundle.manifest.name),
            repeat(str(bundle.manifest.version)),
            answers.labels,
            answers.scores,
            outputs,
            latencies,
            repeat("edge"),
            repeat(None),
            batch.seq.tolist(),
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
