"""How the OTA client orders versions when it decides whether an offer is a downgrade."""

from __future__ import annotations

import pytest

from edgefleet.agent.ota_policy import version_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.0.0", "1.0.1"), ("1.2.9", "1.2.10"), ("0.9.0", "1.0.0"), ("1.0", "1.0.1")],
)
def test_versions_order_numerically(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)


def test_separators_do_not_matter() -> None:
    assert version_key("1.2.3") == version_key("1-2-3")
