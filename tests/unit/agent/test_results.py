"""Batch -> result rows (the pipeline's one way to results) and the records derived from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.agent import store
from edgefleet.agent.results import packed_outputs, result_records_of, result_rows_of
from edgefleet.agent.store.codec import encode_outputs
from edgefleet.agent.store.rows import RESULT_COLUMNS, result_rows
from edgefleet.runtime.batcher import Batch
from edgefleet.runtime.bundle import Bundle, Prediction, load_bundle
from edgefleet.runtime.ringbuffer import StreamBuffer, Window

pytestmark = pytest.mark.unit

BUNDLE = Path(__file__).resolve().parents[3] / "models" / "bundles" / "basicmotions-edge-tflite"


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(BUNDLE)


def _windows(n: int) -> list[Window]:
    data = np.zeros((n, 50, 6), np.float32)
    return [
        Window(("imu", "arm")[i % 2], 100 + i, 10.0 + i, 12.5 + i, data[i], 50.0 + i * 0.001, i * 10)
        for i in range(n)
    ]


def _records_window_by_window(
    bundle: Bundle, batch: Batch, predictions: list[Prediction], done: float, *, keep_outputs: bool
) -> list[store.ResultRecord]:
    """The reference: one ResultRecord per window, built from Window and Prediction objects."""
    records = []
    for window, prediction in zip(batch.windows, predictions, strict=True):
        score = prediction.score
        latency = (done - window.ready_at) * 1000.0
        records.append(
            store.ResultRecord(
                window.stream,
                window.start_ts,
                window.end_ts,
                bundle.manifest.name,
                str(bundle.manifest.version),
                prediction.label,
                None if score is None else float(score),
                prediction.values.tolist() if keep_outputs else None,
                latency if latency > 0.0 else 0.0,
                "edge",
                None,
                window.seq,
            )
        )
    return records


def _popped_batch() -> Batch:
    """7 windows as the batcher makes them: per-stream pops, arrays, no Window objects yet."""
    parts = []
    for name, count in (("imu", 4), ("arm", 3)):
        buffer = StreamBuffer(name, 6, 512, window_length=50, hop=10)
        buffer.push_block(np.ones((120, 6), np.float32), 1000.0 + np.arange(120) * 0.01)
        part = buffer.pop_batch(count)
        assert part is not None
        parts.append(part)
    return Batch.of_parts(parts)


@pytest.mark.parametrize("keep_outputs", [False, True])
def test_rows_equal_the_rows_of_the_records(bundle: Bundle, keep_outputs: bool) -> None:
    windows = _windows(7)
    probs = np.random.default_rng(0).random((7, 4)).astype(np.float32)
    answers = bundle.interpret_batch({"probabilities": probs})
    done = 50.2
    for batch in (Batch.of(windows), _popped_batch()):
        rows = result_rows_of(bundle, batch, answers, done, keep_outputs=keep_outputs)
        records = _records_window_by_window(
            bundle,
            batch,
            answers.predictions(),
            done,
            keep_outputs=keep_outputs,
        )
        expected = result_rows(records, raw_outputs=True)
        assert len(rows) == 7
        for row, want in zip(rows, expected, strict=True):
            assert len(row) == len(RESULT_COLUMNS)
            assert row[:8] == want[:8]  # stream .. outputs
            assert row[8] == pytest.approx(want[8])  # latency_ms: float arithmetic order differs
            assert row[9:12] == want[9:12]
            assert abs(row[12] - want[12]) < 60  # created_at: time.time() of each call
        assert {type(v) for row in rows for v in (row[1], row[2], row[6], row[8], row[12])} == {float}
        assert {type(row[11]) for row in rows} == {int}
        assert rows[0][9] == "edge"
        assert rows[0][10] is None
        assert rows[0][3] == "basicmotions-edge-tflite"
        derived = result_records_of(rows)
        for got, record in zip(derived, records, strict=True):
            assert (got.stream, got.window_start, got.window_end, got.window_seq) == (
                record.stream,
                record.window_start,
                record.window_end,
                record.window_seq,
            )
            assert (got.model_name, got.model_version, got.label, got.score, got.outputs) == (
                record.model_name,
                record.model_version,
                record.label,
                record.score,
                record.outputs,
            )
            assert got.latency_ms == pytest.approx(record.latency_ms)
            assert (got.answered_by, got.fallback_reason) == ("edge", None)


def test_latency_is_never_negative(bundle: Bundle) -> None:
    windows = _windows(2)
    answers = bundle.interpret_batch({"probabilities": np.full((2, 4), 0.25, np.float32)})
    rows = result_rows_of(bundle, Batch.of(windows), answers, 0.0, keep_outputs=False)
    assert [row[8] for row in rows] == [0.0, 0.0]


def test_packed_outputs_match_encode_outputs() -> None:
    values = np.array([[0.1, 0.2, 0.3], [1e30, -2.5, 0.0]], np.float32)
    assert packed_outputs(values) == [encode_outputs(row.tolist()) for row in values]
    assert packed_outputs(np.zeros((0, 3), np.float32)) == []


def test_rows_carry_the_given_creation_time(bundle: Bundle) -> None:
    windows = _windows(3)
    probs = np.random.default_rng(1).random((3, 4)).astype(np.float32)
    answers = bundle.interpret_batch({"probabilities": probs})
    rows = result_rows_of(bundle, Batch.of(windows), answers, 0.0, keep_outputs=False, created_at=1234.5)
    assert [row[-1] for row in rows] == [1234.5] * 3
