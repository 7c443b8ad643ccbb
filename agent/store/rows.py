"""How results map to SQL rows: column order, value conversion, validation and decoding."""

from __future__ import annotations

import functools
import math
import numbers
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

from edgefleet.agent.store.codec import decode_outputs, encode_outputs
from edgefleet.agent.store.records import ResultRecord

__all__ = [
    "FALLBACK_COLUMNS",
    "INSERT_RESULT",
    "RESULT_COLUMNS",
    "SELECT_RESULT",
    "SELECT_RESULT_READ",
    "check_record",
    "converted_rows",
    "insert_results_sql",
    "insert_results_statement",
    "record_from_row",
    "result_dict",
    "result_rows",
]

RESULT_COLUMNS = (
    "stream",
    "window_start",
    "window_end",
    "model_name",
    "model_version",
    "label",
    "score",
    "outputs",
    "latency_ms",
    "answered_by",
    "fallback_reason",
    "window_seq",
    "created_at",
)
INSERT_RESULT = (
    f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES ({', '.join('?' * len(RESULT_COLUMNS))})"
)
# Read-only columns (schema v7): the cloud's answer beside the edge one and how the fallback ended,
# from the side tables keyed by the result id. After synced_at, so the positions of the others in a
# row stay those of SELECT_RESULT.
FALLBACK_COLUMNS = (
    "cloud_label",
    "cloud_score",
    "cloud_outputs",
    "cloud_model_version",
    "late",
    "fallback_outcome",
)
SELECT_RESULT = f"SELECT id, {', '.join(RESULT_COLUMNS)}, synced_at FROM results"
"""What sync sends (the outbox's results rows): the wire's ResultItem has no fallback columns."""
_OUTCOME = (
    "CASE WHEN results.answered_by = 'cloud' THEN 'cloud' WHEN c.late THEN 'late' "
    "WHEN EXISTS (SELECT 1 FROM deferred_windows d WHERE d.result_id = results.id) THEN 'deferred' "
    "WHEN instr(results.fallback_reason, ':') "
    "THEN substr(results.fallback_reason, instr(results.fallback_reason, ':') + 1) "
    "ELSE 'edge' END"
)
SELECT_RESULT_READ = (
    f"SELECT results.id, {', '.join(f'results.{c}' for c in RESULT_COLUMNS)}, synced_at, "
    f"c.label, c.score, c.outputs, c.model_version, coalesce(c.late, 0), {_OUTCOME} "
    "FROM results LEFT JOIN cloud_answers c ON c.result_id = results.id"
)
"""What readers see (``Store.query_results``, ``edgefleet results``): with the cloud's answer and
``fallback_outcome`` (``cloud``, ``late``, ``deferred``, the live request's outcome, or ``edge``).
Its WHERE clauses name ``results.`` columns."""
_WIDTH = len(RESULT_COLUMNS)
_OUTPUTS = RESULT_COLUMNS.index("outputs")
# Columns that may be None: where a chunk has None in every row, the statement says NULL.
_NULLABLE = tuple(
    RESULT_COLUMNS.index(c) for c in ("label", "score", "outputs", "fallback_reason", "window_seq")
)
# Columns that usually hold one value for a whole batch: the stream (of a single-stream agent),
# the model, who answered and why. Where a chunk's rows agree, the value is bound once.
_SHAREABLE = tuple(
    RESULT_COLUMNS.index(c)
    for c in ("stream", "model_name", "model_version", "answered_by", "fallback_reason")
)


@functools.lru_cache(maxsize=256)
def insert_results_sql(
    rows: int, shared: tuple[int, ...] = (), own: tuple[int, ...] = tuple(range(_WIDTH))
) -> str:
    """One INSERT of ``rows`` results (multi-row VALUES) with numbered parameters.

    The parameters are the ``shared`` columns' values (one each, used by every row), then the
    ``own`` columns' values column by column (``rows`` each). Columns in neither are NULL.

    Why not executemany: it steps SQLite once per row, releasing and re-taking the GIL each
    time; with the inference and source threads busy, every re-take can wait for the GIL's
    switch interval. One statement per chunk steps once, and costs less CPU per row too. Why
    shared parameters: each bound value costs the binding (GIL held; sqlite3 looks for an adapter
    for all but int/float/str) and SQLite a copy; a pipeline batch repeats 5 of its 13 values in
    every row, 2 of them None. Figures: docs/store.md, "Row binding costs".
    """

    def mark(column: int, row: int) -> str:
        if column in shared:
            return f"?{shared.index(column) + 1}"
        if column in own:
            return f"?{len(shared) + own.index(column) * rows + row + 1}"
        return "NULL"

    values = ", ".join(f"({', '.join(mark(c, r) for c in range(_WIDTH))})" for r in range(rows))
    return f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) VALUES {values}"


def _one_value(column: tuple[Any, ...]) -> bool:
    # Only str/None are shared: for those, equal (what count() tests) means the same stored value.
    first = column[0]
    return (first is None or type(first) is str) and column.count(first) == len(column)


def insert_results_statement(rows: Sequence[tuple[Any, ...]], *, raw_outputs: bool) -> tuple[str, list[Any]]:
    """The INSERT (see :func:`insert_results_sql`) and its parameters for ``rows``.

    Raises ValueError when the rows are not all ``RESULT_COLUMNS`` wide. Without
    ``raw_outputs`` the outputs column is stored as NULL whatever the rows hold.
    """
    if list(map(len, rows)).count(_WIDTH) != len(rows):
        raise ValueError(f"rows must have {_WIDTH} values each")
    columns = list(zip(*rows, strict=False))  # widths checked above; transposed in C, not per row in Python
    # A column that is None in every row is written as the literal NULL: sqlite3 looks for an
    # adapter for every bound value that is not an int, float or str, so a None costs many floats.
    nulls = {c for c in _NULLABLE if columns[c][0] is None and columns[c].count(None) == len(rows)}
    shared = tuple(c for c in _SHAREABLE if c not in nulls and _one_value(columns[c]))
    own = tuple(
        c for c in range(_WIDTH) if c not in shared and c not in nulls and (raw_outputs or c != _OUTPUTS)
    )
    if _OUTPUTS in own:
        # bytearray binds without the adapter lookup that bytes pay, which costs more than the copy.
        # Only exact bytes: anything else is bound as it is and refused or stored as before.
        columns[_OUTPUTS] = tuple(bytearray(v) if type(v) is bytes else v for v in columns[_OUTPUTS])
    params = [columns[c][0] for c in shared]
    params.extend(chain.from_iterable(columns[c] for c in own))
    return insert_results_sql(len(rows), shared, own), params


def result_dict(row: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    keys = ("id", *RESULT_COLUMNS, "synced_at", *FALLBACK_COLUMNS)
    record = dict(zip(keys, row, strict=False))
    record["outputs"] = decode_outputs(record["outputs"])
    if "cloud_outputs" in record:
        record["cloud_outputs"] = decode_outputs(record["cloud_outputs"])
        record["late"] = bool(record["late"])
    return record


def _is_finite_number(value: object) -> bool:
    if type(value) is bool or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(float(value))


def check_record(record: object) -> str | None:
    """Why a result record cannot be stored, or None. Only run when a batch was refused."""
    if not isinstance(record, ResultRecord):
        return f"expected a ResultRecord, got {type(record).__name__}"
    for name in ("stream", "model_name", "model_version"):
        if not isinstance(getattr(record, name), str) or not getattr(record, name):
            return f"{name} must be a non-empty string, got {getattr(record, name)!r}"
    for name in ("window_start", "window_end", "latency_ms", "created_at", "score"):
        value = getattr(record, name)
        if value is None and name == "score":
            continue
        if not _is_finite_number(value):
            return f"{name} must be a finite number, got {value!r}"
    for name in ("label", "fallback_reason"):
        value = getattr(record, name)
        if value is not None and not isinstance(value, str):
            return f"{name} must be a string or None, got {value!r}"
    if record.answered_by not in ("edge", "cloud"):
        return f"answered_by must be 'edge' or 'cloud', got {record.answered_by!r}"
    seq: object = record.window_seq
    if seq is not None and not isinstance(seq, numbers.Integral):
        return f"window_seq must be an integer or None, got {record.window_seq!r}"
    if record.outputs is not None:
        try:
            encode_outputs(record.outputs)
        except (TypeError, ValueError):
            return f"outputs must be a list of numbers or None, got {record.outputs!r:.80}"
    return None


def result_rows(records: Sequence[ResultRecord], *, raw_outputs: bool) -> list[tuple[Any, ...]]:
    # The fast path binds the values as they are; the schema's CHECKs reject wrong types.
    return [
        (
            r.stream,
            r.window_start,
            r.window_end,
            r.model_name,
            r.model_version,
            r.label,
            r.score,
            encode_outputs(r.outputs) if raw_outputs and r.outputs is not None else None,
            r.latency_ms,
            r.answered_by,
            r.fallback_reason,
            r.window_seq,
            r.created_at,
        )
        for r in records
    ]


def converted_rows(records: Sequence[ResultRecord], *, raw_outputs: bool) -> list[tuple[Any, ...]]:
    # float()/int(): numpy scalars are welcome, but sqlite3 cannot bind numpy.float32 & co.
    return [
        (
            r.stream,
            float(r.window_start),
            float(r.window_end),
            r.model_name,
            r.model_version,
            r.label,
            None if r.score is None else float(r.score),
            encode_outputs(r.outputs) if raw_outputs and r.outputs is not None else None,
            float(r.latency_ms),
            r.answered_by,
            r.fallback_reason,
            None if r.window_seq is None else int(r.window_seq),
            float(r.created_at),
        )
        for r in records
    ]


def record_from_row(row: tuple[Any, ...]) -> ResultRecord:
    """The record a ``RESULT_COLUMNS`` row stands for (outputs unpacked), to validate it."""
    return ResultRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], decode_outputs(row[7]),
        row[8], row[9], row[10], row[11], row[12],
    )  # fmt: skip
