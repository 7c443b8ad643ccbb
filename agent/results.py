"""Turning an inferred batch into results: rows for the store, the one way from a batch to results.

The hot path (:func:`result_rows_of`) makes one plain tuple per window in the store's
``RESULT_COLUMNS`` order and nothing else: no Window, Prediction or ResultRecord object. The
per-window metadata comes from the batch's arrays (``Batch.start_ts`` & co., no Window objects
built) and the answers' columns, zipped in C. The values are plain ``str``/``float``/``int`` by
construction (``tolist()``), which is what lets ``Store.write_result_rows`` skip the per-record
validation of ``Store.write_results``. Where records are needed (the fallback router hands them
on), :func:`result_records_of` derives them from these rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from edgefleet.agent.store import ResultRecord
from edgefleet.agent.store.rows import record_from_row
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle, Interpretation
from edgefleet.types import FloatArray

__all__ = ["packed_outputs", "result_records_of", "result_rows_of"]


def packed_outputs(values: FloatArray) -> list[bytes]:
    """Each row of ``values`` (N, K) packed as ``encode_outputs`` packs it: little-endian float64."""
    return [row.tobytes() for row in np.ascontiguousarray(values, dtype="<f8")]


def result_rows_of(
    bundle: Bundle,
    batch: Batch,
    answers: Interpretation,
    done: float,
    *,
    keep_outputs: bool,
    created_at: float | None = None,
) -> list[tuple[Any, ...]]:
    """One store row per window of ``batch``, answered by the edge model of ``bundle``;
    ``created_at`` (epoch seconds) defaults to now."""
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
            repeat(time.time() if created_at is None else created_at),
        )
    )


def result_records_of(rows: Sequence[tuple[Any, ...]]) -> list[ResultRecord]:
    """The records ``rows`` stand for (outputs unpacked): the fallback router hands records on,
    and deriving them from the rows keeps one way from a batch to its results."""
    return [record_from_row(row) for row in rows]
