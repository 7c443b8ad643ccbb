"""Pure helpers of the store: output packing, record checks, the write meter's arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.agent.store import ResultRecord
from edgefleet.agent.store.codec import decode_outputs, encode_outputs
from edgefleet.agent.store.rows import check_record as _check_record
from edgefleet.agent.store.wear import WriteMeter

pytestmark = pytest.mark.unit


@given(st.lists(st.floats(allow_nan=False), max_size=64))
def test_outputs_round_trip_exactly(values: list[float]) -> None:
    blob = encode_outputs(values)
    assert blob is not None
    assert len(blob) == 8 * len(values)
    assert decode_outputs(blob) == values


def test_outputs_none_and_numpy() -> None:
    assert encode_outputs(None) is None
    assert decode_outputs(None) is None
    assert decode_outputs(encode_outputs(np.array([0.5, 1.5], dtype=np.float32).tolist())) == [0.5, 1.5]
    assert encode_outputs([1.0]) == b"\x00\x00\x00\x00\x00\x00\xf0?"  # little-endian on every host


def _record(**changes: object) -> ResultRecord:
    record = ResultRecord("imu", 1.0, 2.0, "m", "1", "walk", 0.5, [0.5], 1.0)
    for name, value in changes.items():
        setattr(record, name, value)
    return record


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"stream": ""}, "stream must be a non-empty string"),
        ({"model_version": 1}, "model_version must be a non-empty string"),
        ({"window_start": math.inf}, "window_start must be a finite number"),
        ({"window_end": "later"}, "window_end must be a finite number"),
        ({"latency_ms": True}, "latency_ms must be a finite number"),
        ({"score": "high"}, "score must be a finite number"),
        ({"label": 3}, "label must be a string or None"),
        ({"answered_by": "both"}, "answered_by must be 'edge' or 'cloud'"),
        ({"window_seq": 1.5}, "window_seq must be an integer or None"),
        ({"outputs": ["a"]}, "outputs must be a list of numbers"),
    ],
)
def test_check_record_names_the_bad_field(changes: dict[str, object], expected: str) -> None:
    assert expected in (_check_record(_record(**changes)) or "")


def test_check_record_accepts_good_and_numpy_values() -> None:
    assert _check_record(_record()) is None
    assert _check_record(_record(score=None, outputs=None, label=None)) is None
    assert _check_record(_record(window_start=np.float32(1.0), window_seq=np.int64(3))) is None
    assert _check_record("not a record") == "expected a ResultRecord, got str"


def test_write_meter_rate_is_extrapolated_to_an_hour() -> None:
    meter = WriteMeter()
    meter.add(1000)
    meter.add(500)
    assert meter.total == 1500
    assert meter.per_hour() >= 1500  # opened < 1 s ago: at least the bytes written, scaled up
    assert meter.source in ("thread-io", "process-io", "unavailable")


def test_write_meter_measures_this_threads_writes(tmp_path: Path) -> None:
    meter = WriteMeter()
    if meter.source != "thread-io":
        pytest.skip("no per-thread I/O accounting on this system")
    with meter.measure(), open(tmp_path / "f", "wb") as handle:
        handle.write(b"x" * 65536)
        handle.flush()
    assert meter.total >= 65536
