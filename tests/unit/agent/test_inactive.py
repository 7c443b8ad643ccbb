"""Configured but inert sections ([drift], [fallback], model.cloud_bundle) are named, not silent."""

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


def test_drift_is_on_by_default_so_it_is_named() -> None:
    [only] = inactive_settings(parse_config(BASE))
    assert only.startswith("[drift] is not active yet")
    assert "drift.enabled = false" in only  # how to silence it


def test_a_quiet_config_has_nothing_inactive() -> None:
    assert inactive_settings(parse_config(BASE + "[drift]\nenabled = false\n")) == []


def test_fallback_and_the_cloud_bundle_are_named_when_configured() -> None:
    text = BASE.replace('bundle = "b"', 'bundle = "b"\ncloud_bundle = "/srv/cloud"')
    text += "[drift]\nenabled = false\n[fallback]\nenabled = true\n"
    found = inactive_settings(parse_config(text))
    assert [line.split(" ")[0] for line in found] == ["[fallback]", "model.cloud_bundle"]
    assert "enabled but not active yet" in found[0]
    assert "/srv/cloud" in found[1]


def test_a_fallback_section_left_disabled_is_still_named() -> None:
    found = inactive_settings(
        parse_config(BASE + "[drift]\nenabled = false\n[fallback]\nmin_confidence = 0.8\n")
    )
    assert found == [
        "[fallback] is configured but not active yet: no window is sent to the cloud in this "
        "version; every window is answered by the edge model"
    ]
