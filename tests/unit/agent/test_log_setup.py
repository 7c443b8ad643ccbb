"""The three log formats, and journald priority prefixes."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from edgefleet.agent.log_setup import configure_logging, make_formatter, writes_to_journal

pytestmark = pytest.mark.unit


def _record(msg: str = "stored %d results", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "edgefleet.agent.pipeline", logging.WARNING, __file__, 1, msg, args or (3,), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_extras() -> None:
    line = make_formatter("json").format(_record(stream="imu", batch=4))
    entry = json.loads(line)
    assert entry["msg"] == "stored 3 results"
    assert entry["level"] == "warning"
    assert entry["logger"] == "edgefleet.agent.pipeline"
    assert entry["stream"] == "imu"
    assert entry["batch"] == 4
    assert entry["ts"].endswith("Z")


def test_logfmt_quotes_values_with_spaces() -> None:
    line = make_formatter("logfmt").format(_record(stream="imu left"))
    assert 'msg="stored 3 results"' in line
    assert 'stream="imu left"' in line
    assert "level=warning" in line


def test_text_under_journald_has_priority_prefix() -> None:
    line = make_formatter("text", journald=True).format(_record())
    assert line.startswith("<4>WARNING edgefleet.agent.pipeline: stored 3 results")
    plain = make_formatter("text", journald=False).format(_record())
    assert not plain.startswith("<")


def test_json_under_journald_is_prefixed_json() -> None:
    line = make_formatter("json", journald=True).format(_record())
    assert line.startswith("<4>{")
    assert json.loads(line[3:])["msg"] == "stored 3 results"


def test_journal_stream_must_be_the_stream_written_to(tmp_path: Path) -> None:
    with (tmp_path / "out.log").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert writes_to_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        # Inherited from a parent whose stdout was the journal, but ours is a file: no prefixes.
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"})
        assert not writes_to_journal(stream, {})
    assert not writes_to_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_configure_replaces_handlers() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        out = io.StringIO()
        configure_logging("json", "info", stream=out)
        configure_logging("json", "info", stream=out)
        logging.getLogger("edgefleet.test").info("hello", extra={"k": 1})
        lines = out.getvalue().splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["k"] == 1
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
