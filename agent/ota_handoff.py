"""The hand-over between the OTA transfer (agent/ota_client.py) and activation
(agent/ota_install.py): what the client calls once a bundle archive is downloaded and checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from edgefleet.cloud_sync.protocol import OtaOfferBody

__all__ = ["Installer", "Report"]


class Report(Protocol):
    """Publishes one ``ota/progress`` state (docs/protocol.md lists the states)."""

    def __call__(
        self,
        state: str,
        progress: float = 0.0,
        detail: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None: ...


class Installer(Protocol):
    """Validates and activates a downloaded, sha256-checked bundle archive (edgefleet/agent/ota_install.py).
    ``install`` runs on a thread of its own; ``report`` publishes ``ota/progress``."""

    def install(self, archive: Path, offer: OtaOfferBody, report: Report) -> None: ...
