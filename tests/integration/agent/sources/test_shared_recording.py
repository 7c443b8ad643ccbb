"""Replay sources that read the same file the same way share one read-only copy of it."""

from __future__ import annotations

import gc
import os
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgefleet.agent.sources import ReplaySource, ReplaySourceConfig
from tests.integration.agent.sources.helpers import Collector

pytestmark = pytest.mark.integration

HEADER = "timestamp,a,b,label\n"


def write_recording(path: Path, rows: int, scale: float = 1.0) -> Path:
    lines = [f"{i * 0.01:.2f},{i * scale},{-i * scale},x" for i in range(rows)]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def source(path: Path, name: str, sink: Collector | None = None, **extra: Any) -> ReplaySource:
    config = ReplaySourceConfig(name=name, file=path, realtime=False, timestamps="recorded", **extra)
    return ReplaySource(config, sink or Collector())


def test_sources_of_one_file_share_one_read_only_recording(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.csv", 50)
    first, second = source(path, "one"), source(path, "two")
    assert first.recording is second.recording
    assert not first.recording.samples.flags.writeable
    assert not first.recording.offsets.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first.recording.samples[0, 0] = 1.0


def test_a_different_selection_or_rate_reads_the_file_again(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.csv", 50)
    both = source(path, "both")
    only_a = source(path, "only-a", columns=["a"])
    paced = source(path, "paced", rate_hz=50.0)
    assert both.recording is not only_a.recording
    assert both.recording is not paced.recording
    assert (both.channels, only_a.channels) == (2, 1)
    assert paced.recording.offsets[1] == pytest.approx(0.02)
    assert both.recording.offsets[1] == pytest.approx(0.01)


def test_a_file_changed_on_disk_is_read_again_and_the_older_copy_stays(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.csv", 50)
    before = source(path, "before")
    write_recording(path, 60, scale=2.0)
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 10**9))  # a newer time even on a coarse clock
    after = source(path, "after")
    assert after.recording is not before.recording
    assert after.recording.samples.shape == (60, 2)
    assert before.recording.samples.shape == (50, 2)
    assert after.recording.samples[3, 0] == 6.0
    assert before.recording.samples[3, 0] == 3.0


def test_streams_sharing_a_recording_each_replay_all_of_it_from_their_own_start(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.csv", 300)
    sinks = [Collector(), Collector()]
    sources = [source(path, f"s{i}", sink, block_size=7) for i, sink in enumerate(sinks)]
    assert sources[0].recording is sources[1].recording
    with sources[0]:
        assert sources[0].wait_finished(30)
        with sources[1]:  # started while the other is half-way: no shared position
            assert sources[1].wait_finished(30)
    expected = np.arange(300, dtype=np.float32)
    for sink in sinks:
        samples, times = sink.arrays(2)
        np.testing.assert_array_equal(samples[:, 0], expected)
        np.testing.assert_array_equal(samples[:, 1], -expected)
        np.testing.assert_allclose(times, np.round(expected * 0.01, 2))


def test_a_recording_lives_only_while_a_source_holds_it(tmp_path: Path) -> None:
    path = write_recording(tmp_path / "rec.csv", 50)
    held = source(path, "held")
    ref = weakref.ref(held.recording)
    del held
    gc.collect()
    assert ref() is None
    assert source(path, "again").recording.samples.shape == (50, 2)
