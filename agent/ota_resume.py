"""What a restarted agent resumes an OTA transfer from: the offer and its state, on disk.

The one transfer in progress lives in ``<download_dir>/active``. Beside the chunks
(:class:`~edgefleet.agent.ota_transfer.PartialDownload`'s ``bundle.part`` and ``received.json``)
the client keeps ``offer.json``, the offer as it was accepted, and ``state.json``, the transfer's
last state; together they are enough to rebuild the chunk plan and carry on after a restart
(docs/ota.md, "Transfer"). What to do with what is found stays the client's decision
(agent/ota_client.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgefleet.agent.ota_transfer import ChunkPlan, write_json_atomic
from edgefleet.cloud_sync.protocol import OtaOfferBody

__all__ = ["active_dir", "offer_path", "plan_of", "read_unfinished", "write_offer", "write_state"]

_ACTIVE = "active"
_OFFER = "offer.json"
_STATE = "state.json"


def active_dir(directory: Path) -> Path:
    """The transfer in progress under the client's download directory (one at a time)."""
    return directory / _ACTIVE


def offer_path(active: Path) -> Path:
    return active / _OFFER


def plan_of(offer: OtaOfferBody) -> ChunkPlan:
    """The chunk plan an offer describes; a resumed offer must give the very plan it was opened with,
    or the chunks already received would not be recognised."""
    return ChunkPlan(
        sha256=offer.sha256,
        size_bytes=offer.size_bytes,
        chunk_bytes=offer.chunk_bytes,
        chunks=tuple(offer.chunk_sha256),
    )


def write_offer(active: Path, offer: OtaOfferBody) -> None:
    write_json_atomic(offer_path(active), offer.model_dump(mode="json"))


def write_state(active: Path, state: str, detail: str | None) -> None:
    write_json_atomic(active / _STATE, {"state": state, "detail": detail})


def read_unfinished(active: Path) -> tuple[OtaOfferBody, Any] | None:
    """The recorded offer and the ``state`` recorded for it, as written (not checked: the client
    decides what an unknown state means). None when either file is missing or unreadable: a
    transfer that cannot be read back is not resumed."""
    try:
        offer = OtaOfferBody.model_validate_json(offer_path(active).read_text(encoding="utf-8"))
        state = json.loads((active / _STATE).read_text(encoding="utf-8")).get("state")
    except (OSError, ValueError):
        return None
    return offer, state
