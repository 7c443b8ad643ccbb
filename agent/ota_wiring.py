"""Connects the OTA client (agent/ota_client.py) to a running agent: its sync, store and model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgefleet.agent.config import AgentConfig
from edgefleet.agent.ota_client import Installer, OtaClient, Report
from edgefleet.cloud_sync.protocol import OtaOfferBody

__all__ = ["load_installer", "start_ota_client"]

log = logging.getLogger(__name__)


class _AgentInstaller:
    """Hands a downloaded archive to the agent's activation side (agent/ota_agent.py), looked up at
    each install so a reload's [ota]/[model] changes apply."""

    def __init__(self, agent_ota: Any) -> None:
        self._agent_ota = agent_ota

    def install(self, archive: Path, offer: OtaOfferBody, report: Report) -> None:
        self._agent_ota.installer().install(archive, offer, report)


def load_installer(agent: Any) -> Installer | None:
    """The agent's OTA activation (``agent.ota``, an :class:`edgefleet.agent.ota_agent.AgentOta`) when
    it has one, else None (downloads are then verified and kept, and reported ``downloaded``)."""
    agent_ota = getattr(agent, "ota", None)
    if agent_ota is None or not hasattr(agent_ota, "installer"):
        log.warning("OTA activation not available: offered bundles are downloaded and kept, not installed")
        return None
    return _AgentInstaller(agent_ota)


def start_ota_client(agent: Any, config: AgentConfig, sync: Any) -> OtaClient:
    """Build the client, register its downlink handlers on ``sync`` and start its thread."""
    store = agent.store
    ota = config.ota
    directory = ota.download_dir if ota.download_dir is not None else config.device.state_dir / "ota"

    def current_model() -> tuple[str | None, str | None]:
        pipeline = agent.pipeline
        info = pipeline.model_info() if pipeline is not None else {}
        return info.get("name"), info.get("version")

    def progress(body: dict[str, Any]) -> None:
        store.enqueue("ota/progress", body, priority=0)
        sync.wake()

    def event(kind: str, message: str, level: str, data: dict[str, Any]) -> None:
        store.add_event(kind, message, level=level, data=data)

    client = OtaClient(
        device_id=config.device.id,
        directory=directory,
        publish_live=sync.publish_live,
        progress_sink=progress,
        current_model=current_model,
        installer=load_installer(agent),
        event_sink=event,
        prefix=config.sync.topic_prefix,
        window=ota.chunk_window,
        chunk_timeout_s=ota.chunk_timeout_s,
        min_free_bytes=ota.min_free_bytes,
    )
    sync.register_handler("ota/offer", client.on_offer)
    sync.register_handler("ota/chunk", client.on_chunk)
    client.start()
    return client
