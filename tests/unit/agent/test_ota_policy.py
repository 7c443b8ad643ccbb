"""The OTA client's offer checks: another device's, expired, downgrade; how versions order."""

from __future__ import annotations

import pytest

from edgefleet.agent.ota_policy import refusal, version_key
from edgefleet.cloud_sync.protocol import OtaOfferBody

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("older", "newer"),
    [("1.0.0", "1.0.1"), ("1.2.9", "1.2.10"), ("0.9.0", "1.0.0"), ("1.0", "1.0.1")],
)
def test_versions_order_numerically(older: str, newer: str) -> None:
    assert version_key(older) < version_key(newer)


def test_separators_do_not_matter() -> None:
    assert version_key("1.2.3") == version_key("1-2-3")


def _offer(**changes: object) -> OtaOfferBody:
    fields: dict[str, object] = {
        "offer_id": "o-1",
        "device_id": "dev-1",
        "bundle_name": "m",
        "bundle_version": "1.1.0",
        "sha256": "a" * 64,
        "size_bytes": 1,
        "chunk_bytes": 1,
        "chunk_count": 1,
        "chunk_sha256": ["a" * 64],
        "expires_at": 100.0,
    }
    fields.update(changes)
    return OtaOfferBody.model_validate(fields)


@pytest.mark.parametrize(
    ("offer", "serving", "reason"),
    [
        (_offer(), ("m", "1.0.0"), None),
        (_offer(device_id="dev-2"), ("m", "1.0.0"), "wrong_device"),
        (_offer(expires_at=99.0), ("m", "1.0.0"), "expired"),
        (_offer(bundle_version="0.9.0"), ("m", "1.0.0"), "downgrade"),
        (_offer(bundle_version="0.9.0", allow_downgrade=True), ("m", "1.0.0"), None),
        (_offer(bundle_version="0.9.0"), ("other-model", "1.0.0"), None),  # another model: no order
        (_offer(bundle_version="1.0.0"), ("m", "1.0.0"), None),  # the same version again
        (_offer(), (None, None), None),  # nothing loaded yet
    ],
)
def test_an_offer_is_refused_for_the_first_reason_that_applies(
    offer: OtaOfferBody, serving: tuple[str | None, str | None], reason: str | None
) -> None:
    found = refusal(offer, device_id="dev-1", now=99.5, serving=serving)
    assert (found[0] if found else None) == reason
    if found:
        assert found[1]  # a sentence saying why
