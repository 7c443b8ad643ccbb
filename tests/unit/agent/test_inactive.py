"""Configured but inert sections ([fallback] without [sync], on_drift without [drift],
model.cloud_bundle) are named, not silent."""

from __future__ import annotations

import pytest

from edgefleet.agent.config import parse_config
from edgefleet.agent.inactive import inactive_settings

pytestmark = pytest.mark.unit

BASE = """
[device]
id = "edge-001"
[[sources]]
type = "synthetic"
name = "imu"
[model]
bundle = "b"
"""


def test_drift_on_by_default_is_active_so_it_is_not_named() -> None:
    config = parse_config(BASE)
    assert config.drift.enabled
    assert inactive_settings(config) == []


def test_a_quiet_config_has_nothing_inactive() -> None:
    assert inactive_settings(parse_config(BASE + "[drift]\nenabled = false\n")) == []


def test_fallback_without_sync_and_the_cloud_bundle_are_named() -> None:
    text = BASE.replace('bundle = "b"', 'bundle = "b"\ncloud_bundle = "/srv/cloud"')
    text += "[drift]\nenabled = false\n[fallback]\nenabled = true\non_drift = true\n[sync]\nenabled = false\n"
    found = inactive_settings(parse_config(text))
    assert [line.split(" ")[0] for line in found] == ["[fallback]", "fallback.on_drift", "model.cloud_bundle"]
    assert "[sync] is not" in found[0]
    assert "/srv/cloud" in found[2]


def test_fallback_with_sync_is_active_and_not_named() -> None:
    quiet = BASE + "[drift]\nenabled = false\n[fallback]\nenabled = true\nmin_confidence = 0.8\n"
    assert inactive_settings(parse_config(quiet)) == []


def test_on_drift_is_active_with_drift_and_named_without_it() -> None:
    on = BASE + "[fallback]\nenabled = true\non_drift = true\n"
    assert inactive_settings(parse_config(on)) == []  # [drift] is on by default
    found = inactive_settings(parse_config(on + "[drift]\nenabled = false\n"))
    assert len(found) == 1
    assert found[0].startswith("fallback.on_drift needs [drift]")


def test_thresholds_replaced_by_the_share_target_and_share_keys_without_it_are_named() -> None:
    sync = '[sync]\nenabled = true\nhost = "localhost"\n'
    both = (
        BASE
        + sync
        + "[fallback]\nenabled = true\ntarget_share = 0.25\nmin_confidence = 0.7\nmin_margin = 0.1\n"
    )
    (line,) = inactive_settings(parse_config(both))
    assert line.startswith("fallback.target_share replaces")
    assert "min_confidence, min_margin" in line
    alone = BASE + sync + '[fallback]\nenabled = true\nscore = "margin"\n'
    (line,) = inactive_settings(parse_config(alone))
    assert line.startswith("fallback.score only rank")
    assert "not set" in line
    chosen = BASE + sync + '[fallback]\nenabled = true\ntarget_share = 0.25\nscore = "margin"\n'
    assert inactive_settings(parse_config(chosen)) == []
