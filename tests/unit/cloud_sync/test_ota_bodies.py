"""OTA bodies: the offer's chunk plan must add up; chunks keep their bytes through the codec."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from edgefleet.cloud_sync.codec import decode_message, encode_message
from edgefleet.cloud_sync.protocol import OtaChunkBody, OtaOfferBody, OtaProgressBody, make_envelope

pytestmark = pytest.mark.unit

H = "a" * 64


def offer(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "offer_id": "o-1",
        "device_id": "dev-1",
        "bundle_name": "m",
        "bundle_version": "1.1.0",
        "sha256": H,
        "size_bytes": 10,
        "chunk_bytes": 4,
        "chunk_count": 3,
        "chunk_sha256": [H, H, H],
    }
    fields.update(changes)
    return fields


def test_a_consistent_offer_validates_with_its_defaults() -> None:
    body = OtaOfferBody.model_validate(offer())
    assert (body.url, body.allow_downgrade, body.shadow_s, body.expires_at) == (None, False, 0.0, None)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"chunk_count": 4}, "make 3 chunks"),
        ({"chunk_sha256": [H, H]}, "make 3 chunks"),
        ({"chunk_sha256": [H, H, "xyz"]}, "String should match pattern"),
        ({"url": "ftp://host/b.tar"}, "url must be http:// or https://"),
        ({"size_bytes": 0}, "greater than or equal to 1"),
        ({"offer_id": ""}, "at least 1 character"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
    ],
)
def test_an_offer_that_does_not_add_up_is_refused_naming_why(
    changes: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        OtaOfferBody.model_validate(offer(**changes))


def test_progress_states_are_exactly_the_interface_ones() -> None:
    for state in ("received", "downloaded", "shadow", "probation", "refused", "rolled_back"):
        assert OtaProgressBody(offer_id="o", state=state).state == state
    with pytest.raises(ValidationError):
        OtaProgressBody(offer_id="o", state="installing")  # type: ignore[arg-type]


def test_a_chunk_keeps_its_bytes_through_the_codec() -> None:
    data = bytes(range(256)) * 16
    body = OtaChunkBody(offer_id="o-1", index=2, data=data, sha256=hashlib.sha256(data).hexdigest())
    topic = "edgefleet/v1/dev-1/ota/chunk"
    decoded = decode_message(topic, encode_message(make_envelope("dev-1", "ota/chunk", body))).body
    assert decoded == body
