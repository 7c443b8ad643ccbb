"""The status file: atomic writes, and how `agent status` judges a snapshot."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from edgefleet.agent.status import (
    StatusUnavailableError,
    assess_status,
    read_status,
    status_json,
    write_status,
)

pytestmark = pytest.mark.unit


def _status(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "pid": os.getpid(),
        "updated_at": time.time(),
        "interval_s": 5.0,
        "state": "running",
        "healthy": True,
        "problems": [],
    }
    base.update(overrides)
    return base


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "agent-status.json"
    write_status(path, _status(model={"name": "m"}))
    data = read_status(path)
    assert data["model"] == {"name": "m"}
    assert data["schema"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["agent-status.json"]


def test_the_file_is_the_same_json_with_a_line_per_key_and_per_entry_of_an_object(tmp_path: Path) -> None:
    document = {
        "state": "running",
        "streams": {"imu-01": {"fill": 0.5, "last_error": None}, "imu-00": {"fill": 0.25}},
        "problems": ["a", "b"],
        "empty": {},
        "path": tmp_path,  # not JSON: written as its str()
        "model": {"name": "m", "labels": ["x", "y"]},
    }
    text = status_json(document)
    assert json.loads(text) == json.loads(json.dumps(document, default=str))
    lines = text.splitlines()
    assert lines[0] == "{"
    assert lines[-1] == "}"
    assert ' "empty": {},' in lines
    assert '  "imu-00": {"fill": 0.25},' in lines  # entries sorted, one per line
    assert '  "imu-01": {"fill": 0.5, "last_error": null}' in lines
    assert ' "state": "running",' in lines
    assert lines[-2] == " }"  # the last key's object: no comma
    # braces, a line per key, the two objects' entries and their closing braces
    assert len(lines) == 2 + len(document) + 2 * 2 + 2


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(StatusUnavailableError, match="no agent status file"):
        read_status(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StatusUnavailableError, match="not valid JSON"):
        read_status(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(StatusUnavailableError, match="expected an object"):
        read_status(bad)


def test_healthy_running_agent() -> None:
    verdict = assess_status(_status())
    assert verdict.ok
    assert verdict.problems == []


def test_stale_file_means_not_running() -> None:
    verdict = assess_status(_status(updated_at=time.time() - 3600))
    assert not verdict.running
    assert not verdict.ok
    assert any("old" in p for p in verdict.problems)


def test_dead_pid_means_not_running() -> None:
    verdict = assess_status(_status(pid=2**22 + 12345))
    assert not verdict.running


def test_unhealthy_agent_reports_its_problems() -> None:
    verdict = assess_status(_status(healthy=False, problems=["model not loaded: boom"]))
    assert verdict.running
    assert not verdict.ok
    assert verdict.problems == ["model not loaded: boom"]


def test_stopped_agent() -> None:
    assert not assess_status(_status(state="stopped")).running
