"""An invalid environment override is reported with its own value, not the file's it replaced."""

from __future__ import annotations

import pytest

from edgefleet.agent.config import parse_config
from edgefleet.errors import ConfigError

pytestmark = pytest.mark.unit

CONFIG = """
[device]
id = "dev-1"
[[sources]]
type = "synthetic"
name = "imu"
channels = 6
[model]
bundle = "/nowhere/bundle"
[batching]
max_batch_size = 16
"""


@pytest.mark.parametrize("name", ["EDGEFLEET_BATCHING__MAX_BATCH_SIZE", "edgefleet_batching__max_batch_size"])
def test_the_refused_environment_value_is_shown(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "abc")
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG)
    (issue,) = info.value.issues
    assert issue.key == "batching.max_batch_size"
    assert issue.value == "abc"
    assert "got 'abc'" in str(info.value)
    assert "got 16" not in str(info.value)
    assert "set by environment variable EDGEFLEET_BATCHING__MAX_BATCH_SIZE" in str(info.value)


def test_a_bad_file_value_is_still_shown_from_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.replace("max_batch_size = 16", 'max_batch_size = "many"'))
    assert "got 'many'" in str(info.value)
    assert "environment" not in str(info.value)
