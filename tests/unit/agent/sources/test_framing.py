"""Frame decoding: the good formats, and every kind of bad frame counted, never passed on."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.agent.sources import FrameDecoder

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.5


def packed(values: list[list[float]], ts: list[float] | None = None) -> bytes:
    out = b""
    for i, row in enumerate(values):
        if ts is not None:
            out += struct.pack("<d", ts[i])
        out += struct.pack(f"<{len(row)}f", *row)
    return out


def test_json_object_and_bare_list_lines() -> None:
    payload = b'{"ts": 12.5, "values": [1, 2, 3]}\n[4.0, 5.0, 6.0]\n\n'
    decoded = FrameDecoder(3).decode(payload, NOW)
    assert decoded.bad == 0
    np.testing.assert_array_equal(decoded.samples, [[1, 2, 3], [4, 5, 6]])
    assert decoded.samples.dtype == np.float32
    np.testing.assert_array_equal(decoded.timestamps, [12.5, NOW])
    assert decoded.timestamps.dtype == np.float64


def test_json_object_without_ts_gets_receive_time() -> None:
    decoded = FrameDecoder(2).decode(b'{"values": [1, 2]}', NOW)
    assert decoded.timestamps.tolist() == [NOW]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "2 values; expected 3"),
        (b"[1, 2, 3, 4]", "4 values; expected 3"),
        (b'[1, "2", 3]', "finite numbers"),
        (b"[1, true, 3]", "finite numbers"),
        (b"[1, null, 3]", "finite numbers"),
        (b"[1, NaN, 3]", "finite numbers"),
        (b"[1, Infinity, 3]", "finite numbers"),
        (b"[1, -Infinity, 3]", "finite numbers"),
        (b'{"ts": "noon", "values": [1, 2, 3]}', "ts must be a finite number"),
        (b'{"ts": NaN, "values": [1, 2, 3]}', "ts must be a finite number"),
        (b'{"ts": true, "values": [1, 2, 3]}', "ts must be a finite number"),
        (b'{"ts": 1.0}', "expected"),
        (b'{"ts": 1.0, "values": [1, 2, 3], "extra": 1}', "expected"),
        (b'{"values": {"a": 1}}', "no list of values"),
        (b"42", "expected"),
        (b'"text"', "expected"),
        (b"[1e300, 2, 3]", "out of float32 range"),
        (b"[1, -1e39, 3]", "out of float32 range"),
    ],
)
def test_json_bad_lines_are_counted_not_passed(line: bytes, reason: str) -> None:
    decoder = FrameDecoder(3)
    decoded = decoder.decode(b"[0, 0, 0]\n" + line + b"\n[9, 9, 9]", NOW)
    assert decoded.bad == 1
    assert reason in "; ".join(decoded.reasons)
    np.testing.assert_array_equal(decoded.samples, [[0, 0, 0], [9, 9, 9]])
    assert np.isfinite(decoded.samples).all()


def test_json_not_utf8_and_empty_payloads_are_bad() -> None:
    decoder = FrameDecoder(3)
    not_text = decoder.decode(b"\xff\xfe[1,2,3]", NOW)
    assert not_text.bad == 1
    assert "not UTF-8" in not_text.reasons[0]
    assert not_text.samples.shape == (0, 3)
    empty = decoder.decode(b"  \n", NOW)
    assert empty.bad == 1
    assert "empty payload" in empty.reasons[0]


def test_json_reasons_are_bounded_for_a_flood_of_garbage() -> None:
    decoded = FrameDecoder(3).decode(b"x\n" * 500, NOW)
    assert decoded.bad == 500
    assert len(decoded.reasons) <= FrameDecoder.MAX_REASONS


def test_long_bad_lines_are_shortened_in_reasons() -> None:
    decoded = FrameDecoder(3).decode(json.dumps(list(range(100))).encode(), NOW)
    assert decoded.bad == 1
    assert len(decoded.reasons[0]) < 200


def test_packed_records_with_and_without_timestamps() -> None:
    plain = FrameDecoder(2, "packed")
    assert plain.record_size == 8
    decoded = plain.decode(packed([[1, 2], [3, 4]]), NOW)
    np.testing.assert_array_equal(decoded.samples, [[1, 2], [3, 4]])
    assert decoded.timestamps.tolist() == [NOW, NOW]
    stamped = FrameDecoder(2, "packed", timestamped=True)
    assert stamped.record_size == 16
    decoded = stamped.decode(packed([[1, 2], [3, 4]], ts=[10.0, 10.5]), NOW)
    np.testing.assert_array_equal(decoded.samples, [[1, 2], [3, 4]])
    assert decoded.timestamps.tolist() == [10.0, 10.5]
    assert decoded.bad == 0


@pytest.mark.parametrize("timestamped", [False, True])
@pytest.mark.parametrize("extra", [1, 3, 7])
def test_packed_wrong_length_is_refused_whole(timestamped: bool, extra: int) -> None:
    decoder = FrameDecoder(3, "packed", timestamped=timestamped)
    ts = [1.0, 2.0] if timestamped else None
    decoded = decoder.decode(packed([[1, 2, 3], [4, 5, 6]], ts=ts) + b"\x00" * extra, NOW)
    assert decoded.samples.shape == (0, 3)
    assert decoded.bad >= 1
    assert "not a whole number" in decoded.reasons[0]


def test_packed_wrong_channel_count_is_refused() -> None:
    # 2 channels sent to a 3-channel stream: 2 records of 8 bytes = 16 bytes, not a multiple of 12
    decoded = FrameDecoder(3, "packed").decode(packed([[1, 2], [3, 4]]), NOW)
    assert decoded.samples.shape == (0, 3)
    assert decoded.bad == 1


def test_packed_empty_payload_is_bad() -> None:
    decoded = FrameDecoder(3, "packed").decode(b"", NOW)
    assert decoded.bad == 1
    assert decoded.samples.shape == (0, 3)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_packed_non_finite_values_and_timestamps_are_dropped(bad: float) -> None:
    decoder = FrameDecoder(2, "packed", timestamped=True)
    payload = packed([[1, 2], [bad, 0], [5, 6], [7, 8]], ts=[1.0, 2.0, 3.0, bad])
    decoded = decoder.decode(payload, NOW)
    assert decoded.bad == 2
    np.testing.assert_array_equal(decoded.samples, [[1, 2], [5, 6]])
    assert decoded.timestamps.tolist() == [1.0, 3.0]


def test_channels_must_be_positive() -> None:
    with pytest.raises(ValueError, match="channels"):
        FrameDecoder(0)


@given(payload=st.binary(max_size=512), channels=st.integers(1, 8), fmt=st.sampled_from(["json", "packed"]))
@settings(max_examples=300, deadline=None)
def test_any_bytes_decode_to_clean_samples_or_counted_bad(payload: bytes, channels: int, fmt: str) -> None:
    for timestamped in (False, True):
        decoded = FrameDecoder(channels, fmt, timestamped=timestamped).decode(payload, NOW)  # type: ignore[arg-type]
        assert decoded.samples.shape == (decoded.timestamps.shape[0], channels)
        assert np.isfinite(decoded.samples).all()
        assert np.isfinite(decoded.timestamps).all()
        assert decoded.bad >= 0
        assert decoded.bad > 0 or decoded.samples.shape[0] > 0  # nothing vanishes uncounted


@given(
    rows=st.lists(
        st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=3, max_size=3),
        min_size=1,
        max_size=20,
    )
)
@settings(max_examples=200, deadline=None)
def test_json_lines_of_any_floats_split_into_good_and_bad(rows: list[list[float]]) -> None:
    payload = "\n".join(json.dumps(r) for r in rows).encode()
    decoded = FrameDecoder(3).decode(payload, NOW)
    finite = [r for r in rows if all(np.isfinite(r))]
    assert decoded.samples.shape[0] == len(finite)
    assert decoded.bad == len(rows) - len(finite)
