"""set_config's validation and the overrides file (pure logic over AgentConfig)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.agent.config import AgentConfig, parse_config
from edgefleet.agent.remote_config import (
    OVERRIDES_FILENAME,
    apply_overrides,
    apply_setting,
    is_live,
    read_overrides,
    write_overrides,
)
from edgefleet.errors import ConfigError

TEXT = """
[device]
id = "dev-1"

[[sources]]
type = "synthetic"
name = "imu"

[model]
bundle = "bundles/demo"
"""


def config() -> AgentConfig:
    return parse_config(TEXT, base_dir=Path("/srv/edge"))


def test_a_valid_key_is_applied_and_the_rest_kept() -> None:
    new = apply_setting(config(), "batching.max_batch_size", 4)
    assert new.batching.max_batch_size == 4
    assert new.device.id == "dev-1"
    assert new.model.bundle == Path("/srv/edge/bundles/demo")
    assert apply_setting(config(), "sources.0.rate_hz", 25.0).sources[0].model_dump()["rate_hz"] == 25.0


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("batching.max_batch_size", -1, "batching.max_batch_size"),
        ("batching.max_batch_size", "many", "batching.max_batch_size"),
        ("batching.nope", 1, "batching.nope"),
        ("nosection.key", 1, "nosection"),
        ("batching.max_batch_size.deeper", 1, "batching.max_batch_size"),
        ("sources.7.rate_hz", 1, "sources.7"),
        ("device.id", "other", "device.id"),
        ("sync.host", "evil.example", "sync.host"),
        ("ota.trusted_keys", [], "ota.trusted_keys"),
        ("sync", {}, "sync"),
        ("", 1, "''"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_key(key: str, value: object, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        apply_setting(config(), key, value)
    assert named in str(caught.value)
    assert caught.value.hint


def test_live_keys() -> None:
    assert is_live("logging.level")
    assert not is_live("batching.max_batch_size")


def test_overrides_round_trip_and_a_stale_one_is_reported(tmp_path: Path) -> None:
    assert read_overrides(tmp_path) == {}
    write_overrides(tmp_path, {"batching.max_batch_size": 4, "logging.level": "DEBUG"})
    overrides = read_overrides(tmp_path)
    applied = apply_overrides(config(), overrides)
    assert (applied.batching.max_batch_size, applied.logging.level) == (4, "DEBUG")
    with pytest.raises(ConfigError, match=r"batching\.max_batch_size"):
        apply_overrides(config(), {"batching.max_batch_size": 0})
    (tmp_path / OVERRIDES_FILENAME).write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        read_overrides(tmp_path)
    (tmp_path / OVERRIDES_FILENAME).write_text("{half")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_overrides(tmp_path)
