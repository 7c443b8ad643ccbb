"""The README speaks to users: no development-log wording; the first-run facts are there."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("phrase", ["This session", "this session", "once cloud fallback lands"])
def test_no_development_log_wording(phrase: str) -> None:
    assert phrase not in README


def test_the_first_run_is_explained() -> None:
    assert "pip install 'edgefleet[controller]'" in README
    assert "edgefleet config example --demo" in README
    assert "--password-stdin" in README
