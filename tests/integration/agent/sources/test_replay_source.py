"""replay of real recordings (the shipped BasicMotions stream as CSV and npz, plus npy), and bad files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.sources import ReplaySource, ReplaySourceConfig, SourceError, create_source
from tests.conftest import MODELS_DIR
from tests.integration.agent.sources.helpers import Collector
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

STREAM_CSV = MODELS_DIR / "data" / "basicmotions_test_stream.csv"
STREAM_NPZ = MODELS_DIR / "data" / "basicmotions_test_stream.npz"
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]


def replay(file: Path, sink: Collector, **extra: Any) -> ReplaySource:
    source = create_source(ReplaySourceConfig(name="rep", file=file, **extra), sink)
    assert isinstance(source, ReplaySource)
    return source


def run_to_end(source: ReplaySource) -> None:
    with source:
        assert source.wait_finished(60), "replay did not finish"


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.skipif(not STREAM_CSV.exists(), reason="demo stream not built")
def test_demo_csv_replays_every_sample_with_label_ignored() -> None:
    sink = Collector()
    source = replay(STREAM_CSV, sink, realtime=False, timestamps="recorded")
    assert source.channels == 6
    assert source.channel_names == CHANNELS
    run_to_end(source)
    samples, times = sink.arrays(6)
    expected_rows = len(STREAM_CSV.read_text().splitlines()) - 1
    assert samples.shape == (expected_rows, 6)
    assert source.stats.samples == expected_rows
    assert source.stats.bad_samples == 0
    assert sink.blocks > 1  # emitted in blocks, not one sample per call
    assert np.all(np.diff(times) > 0)
    first = STREAM_CSV.read_text().splitlines()[1].split(",")
    np.testing.assert_allclose(samples[0], [float(v) for v in first[1:7]], rtol=1e-6)
    assert times[0] == float(first[0])


@pytest.mark.skipif(not STREAM_NPZ.exists() or not STREAM_CSV.exists(), reason="demo stream not built")
def test_demo_npz_matches_the_csv() -> None:
    from_csv, from_npz = Collector(), Collector()
    run_to_end(replay(STREAM_CSV, from_csv, realtime=False, timestamps="recorded"))
    source = replay(STREAM_NPZ, from_npz, realtime=False, timestamps="recorded")
    assert source.channel_names == CHANNELS
    run_to_end(source)
    csv_samples, csv_times = from_csv.arrays(6)
    npz_samples, npz_times = from_npz.arrays(6)
    np.testing.assert_allclose(npz_samples, csv_samples, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(npz_times, csv_times)


def test_wall_timestamps_keep_the_recorded_spacing(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "r.csv", "timestamp,a,b\n" + "".join(f"{i * 0.5},{i},{-i}\n" for i in range(6))
    )
    sink = Collector()
    before = time.time()
    run_to_end(replay(path, sink, realtime=False))
    _, times = sink.arrays(2)
    assert times[0] >= before
    np.testing.assert_allclose(np.diff(times), 0.5, atol=1e-6)


def test_realtime_playback_with_speed_delivers_everything(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", "timestamp,a\n" + "".join(f"{i * 0.1},{i}\n" for i in range(40)))
    sink = Collector()
    run_to_end(replay(path, sink, speed=20.0))
    samples, times = sink.arrays(1)
    assert samples[:, 0].tolist() == list(range(40))
    # Wall stamps follow the sped-up playback clock: never in the future, spacing divided by speed.
    np.testing.assert_allclose(np.diff(times), 0.1 / 20.0, atol=1e-6)
    assert times[-1] <= time.time()


def test_recorded_timestamps_keep_the_recorded_spacing_at_any_speed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", "timestamp,a\n" + "".join(f"{i * 0.1},{i}\n" for i in range(40)))
    sink = Collector()
    run_to_end(replay(path, sink, speed=20.0, timestamps="recorded"))
    _, times = sink.arrays(1)
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-6)


def test_stop_interrupts_a_slow_realtime_replay(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", "a\n1\n2\n3\n")
    sink = Collector()
    source = replay(path, sink, rate_hz=0.01)  # one sample per 100 s
    source.start()
    wait_until(lambda: sink.count == 1, what="first sample")
    source.stop()
    assert not source.running
    assert not source.finished
    assert sink.count == 1


def test_loop_keeps_timestamps_increasing(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", "timestamp,a\n0,1\n1,2\n2,3\n")
    sink = Collector()
    source = replay(path, sink, realtime=False, loop=True, timestamps="recorded", block_size=2)
    source.start()
    wait_until(lambda: sink.count >= 10, what="several loops")
    source.stop()
    samples, times = sink.arrays(1)
    assert samples[:9, 0].tolist() == [1, 2, 3] * 3
    np.testing.assert_allclose(times[:9], np.arange(9.0))
    assert not source.finished


def test_stamps_computed_ahead_match_row_by_row_across_runs_and_loops(tmp_path: Path) -> None:
    """Emitted times come from runs of stamps computed ahead (``STAMPS_AHEAD`` rows at once): with
    runs shorter than a block, than the recording and not dividing it, every time is still the
    recorded offset plus the loop's shift."""
    path = write_csv(tmp_path / "r.csv", "timestamp,a\n" + "".join(f"{i * 0.25},{i}\n" for i in range(7)))
    sink = Collector()
    source = replay(path, sink, realtime=False, loop=True, timestamps="recorded", block_size=2)
    source.STAMPS_AHEAD = 3
    source.start()
    wait_until(lambda: sink.count >= 40, what="several loops")
    source.stop()
    samples, times = sink.arrays(1)
    assert samples[:35, 0].tolist() == list(range(7)) * 5
    np.testing.assert_array_equal(times[:35], np.arange(35) * 0.25)


def test_npy_needs_a_rate_and_replays_by_position(tmp_path: Path) -> None:
    path = tmp_path / "rec.npy"
    np.save(path, np.arange(30, dtype=np.float64).reshape(10, 3))
    with pytest.raises(SourceError) as info:
        replay(path, Collector(), realtime=False)
    assert info.value.issues[0].key == "rep.rate_hz"
    sink = Collector()
    run_to_end(replay(path, sink, realtime=False, rate_hz=4.0, columns=[2, 0]))
    samples, times = sink.arrays(2)
    np.testing.assert_array_equal(samples[:2], [[2, 0], [5, 3]])
    np.testing.assert_allclose(np.diff(times), 0.25, atol=1e-6)


def test_bad_values_are_counted_and_skipped(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "r.csv",
        "timestamp,a,b,label\n0,1,1,x\n1,oops,2,x\n2,nan,3,x\n3,4,,x\n4,inf,5,x\nbad,6,6,x\n6,1e39,7,x\n7,8,8,x\n",
    )
    sink = Collector()
    source = replay(path, sink, realtime=False)
    run_to_end(source)
    samples, _ = sink.arrays(2)
    np.testing.assert_array_equal(samples, [[1, 1], [8, 8]])
    assert source.stats.bad_samples == 6
    assert source.stats.samples == 2


def test_clean_blocks_and_bad_rows_in_one_recording_are_counted_alike(tmp_path: Path) -> None:
    # Blocks known clean when the recording was loaded skip the bad-sample gate; a block holding a
    # bad row goes through it. Both count their frames and samples the same way.
    rows = [f"{t},{t},{-t}" for t in range(40)]
    rows[13] = "13,nan,-13"
    rows[27] = "27,2,inf"
    path = write_csv(tmp_path / "mixed.csv", "timestamp,a,b\n" + "\n".join(rows) + "\n")
    sink = Collector()
    source = replay(path, sink, realtime=False, block_size=8, timestamps="recorded")
    run_to_end(source)
    samples, times = sink.arrays(2)
    kept = [t for t in range(40) if t not in (13, 27)]
    np.testing.assert_array_equal(samples[:, 0], kept)
    np.testing.assert_array_equal(times, kept)
    assert source.stats.bad_samples == 2
    assert source.stats.samples == 38
    assert source.stats.frames == 5  # 40 rows in blocks of 8, clean or not


def test_bad_values_in_a_realtime_replay_do_not_stall_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "r.csv", "timestamp,a\n0,1\nx,2\n0.02,3\n")
    sink = Collector()
    source = replay(path, sink, speed=10.0)
    run_to_end(source)
    samples, _ = sink.arrays(1)
    assert samples[:, 0].tolist() == [1, 3]
    assert source.stats.bad_samples == 1


@pytest.mark.parametrize(
    ("text", "extra", "key", "expected"),
    [
        ("a,b\n1,2\n", {"columns": ["a", "c"]}, "rep.columns", "one of ['a', 'b']"),
        ("a,b\n1,2\n", {"columns": [5]}, "rep.columns", "a position in 0..1"),
        ("a,b\n1,2\n", {"timestamp_column": "time"}, "rep.timestamp_column", "one of ['a', 'b']"),
        ("a,b\n1,2\n", {}, "rep.rate_hz", "a sample rate"),
        ("label\nx\n", {"rate_hz": 1.0}, "rep.columns", "at least one numeric channel"),
        ("", {"rate_hz": 1.0}, "rep.file", "a CSV file with a header row"),
        ("a\n", {"rate_hz": 1.0}, "rep.file", "at least one sample"),
    ],
)
def test_unusable_csv_is_refused_naming_the_key(
    tmp_path: Path, text: str, extra: dict[str, Any], key: str, expected: str
) -> None:
    path = write_csv(tmp_path / "r.csv", text)
    with pytest.raises(SourceError) as info:
        replay(path, Collector(), **extra)
    issue = info.value.issues[0]
    assert issue.key == key
    assert expected in issue.expected
    assert info.value.hint


def test_missing_and_malformed_array_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"rep\.file"):
        replay(tmp_path / "none.csv", Collector())
    cube = tmp_path / "cube.npy"
    np.save(cube, np.zeros((2, 3, 4)))
    with pytest.raises(SourceError) as info:
        replay(cube, Collector(), rate_hz=1.0)
    assert "2-D" in info.value.issues[0].expected
    npz = tmp_path / "rec.npz"
    np.savez(npz, data=np.zeros((5, 2)))
    with pytest.raises(SourceError) as info:
        replay(npz, Collector(), rate_hz=1.0)
    assert info.value.issues[0].key == "rep.samples_key"
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SourceError, match=r"rep\.file"):
        replay(corrupt, Collector(), rate_hz=1.0)
