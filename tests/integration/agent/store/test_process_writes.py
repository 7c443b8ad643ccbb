"""``ProcessWrites``: the agent process's own device writes, from ``/proc/self/io``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgefleet.agent.store.wear import ProcessWrites, process_write_bytes

pytestmark = pytest.mark.integration


def test_a_file_written_and_fsynced_by_this_process_is_counted(tmp_path: Path) -> None:
    if process_write_bytes() is None:
        pytest.skip("no /proc/self/io write accounting on this system")
    meter = ProcessWrites()
    assert meter.available
    with (tmp_path / "blob").open("wb") as handle:
        handle.write(os.urandom(1 << 20))
        handle.flush()
        os.fsync(handle.fileno())
    per_hour = meter.sample()
    if meter.total == 0:
        pytest.skip(f"{tmp_path} is not backed by a block device (tmpfs): nothing reaches a device")
    assert meter.total >= 1 << 20
    assert per_hour is not None
    assert per_hour >= meter.total  # at most an hour old: extrapolated up to a full hour


def test_another_process_can_be_read_and_a_missing_one_is_none() -> None:
    assert isinstance(process_write_bytes(os.getpid()), int)
    assert process_write_bytes(2**22 + 12345) is None
