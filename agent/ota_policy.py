"""Whether the device takes an OTA offer at all (before any byte is fetched): pure checks."""

from __future__ import annotations

import re

from edgefleet.cloud_sync.protocol import OtaOfferBody

__all__ = ["refusal", "version_key"]


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Orders ``1.2.10`` after ``1.2.9``: numeric parts as numbers, others as text after them."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[^0-9A-Za-z]+", version) if p)


def refusal(
    offer: OtaOfferBody, *, device_id: str, now: float, serving: tuple[str | None, str | None]
) -> tuple[str, str] | None:
    """``(reason, detail)`` when the offer must be refused: another device's, expired, or a
    downgrade of the model being served (``serving`` = its name and version) without
    ``allow_downgrade``; None when it may be taken."""
    if offer.device_id != device_id:
        return "wrong_device", f"the offer is for device {offer.device_id!r}; this is {device_id!r}"
    if offer.expires_at is not None and now > offer.expires_at:
        return "expired", f"the offer expired at {offer.expires_at:.0f} (now {now:.0f})"
    name, version = serving
    if (
        not offer.allow_downgrade
        and version is not None
        and name == offer.bundle_name
        and version_key(offer.bundle_version) < version_key(version)
    ):
        return "downgrade", (
            f"{offer.bundle_name} {offer.bundle_version} is older than the {version} being served;"
            " offer it with allow_downgrade to install it anyway"
        )
    return None
