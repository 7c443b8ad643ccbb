"""`edgefleet results` argument parsing and rendering (pure parts)."""

from __future__ import annotations

import pytest

from edgefleet.cli.results import _table, parse_since
from edgefleet.errors import ConfigError

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", NOW - 30), ("10m", NOW - 600), ("2h", NOW - 7200), ("1d", NOW - 86400), ("1.5h", NOW - 5400)],
)
def test_durations(text: str, expected: float) -> None:
    assert parse_since(text, now=NOW) == expected


def test_epoch_and_iso() -> None:
    assert parse_since("1699999000", now=NOW) == 1_699_999_000.0
    assert parse_since("2023-11-14T22:13:20Z", now=NOW) == NOW


@pytest.mark.parametrize("text", ["yesterday", "10 minutes", "-5m", ""])
def test_bad_since_names_what_was_expected(text: str) -> None:
    with pytest.raises(ConfigError, match="--since") as info:
        parse_since(text, now=NOW)
    assert "duration like 30s" in str(info.value)
    assert info.value.hint


def test_table_rendering() -> None:
    rows = [
        {
            "stream": "imu",
            "window_end": NOW,
            "label": "Walking",
            "score": 0.98765,
            "latency_ms": 3.21,
            "answered_by": "cloud",
            "fallback_reason": "low_confidence",
            "model_name": "m",
            "model_version": "1.0.0",
        }
    ]
    text = _table(rows)
    assert "Walking" in text
    assert "0.988" in text
    assert "3.2 ms" in text
    assert "cloud (low_confidence)" in text
    assert _table([]) == "(no results)"
