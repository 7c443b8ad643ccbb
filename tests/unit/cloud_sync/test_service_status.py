"""The status a SyncService publishes, built from the agent's status snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefleet.cloud_sync import SyncConfig, SyncService
from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import StatusBody
from tests.support.sync_fixtures import fill_results, open_store

pytestmark = pytest.mark.unit


def test_status_payload_maps_the_agent_snapshot(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store.db")
    fill_results(store, 20, batch=10)
    snapshot = {
        "pid": 1,
        "hostname": "edge-box",
        "version": "0.1.0",
        "uptime_s": 12.5,
        "model": {"state": "loaded", "name": "har", "version": "2.0.0"},
        "sync": {"connected": False},
    }
    service = SyncService(store, SyncConfig(), "dev-status", status_provider=lambda: snapshot)
    try:
        service._refresh_state()
        body = decode_message("edgefleet/v1/dev-status/status", service._status_payload("online")).body
        assert isinstance(body, StatusBody)
        assert (body.state, body.agent_version, body.model_name, body.model_version) == (
            "online",
            "0.1.0",
            "har",
            "2.0.0",
        )
        assert body.hardware == {"hostname": "edge-box"}
        assert body.backlog == {"results": 20}
        offline = decode_message("edgefleet/v1/dev-status/status", service._status_payload("offline")).body
        assert isinstance(offline, StatusBody)
        assert offline.state == "offline"
        state = service.state()
        assert not state.connected
        assert state.backlog == {"results": 20}
        assert service.state_path == tmp_path / "store.db.sync.json"
    finally:
        store.close()


def test_a_broken_status_provider_does_not_stop_the_status(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store.db")

    def broken() -> dict[str, object]:
        raise RuntimeError("agent busy")

    try:
        service = SyncService(store, SyncConfig(), "dev-status", status_provider=broken)
        body = decode_message("edgefleet/v1/dev-status/status", service._status_payload("online")).body
        assert isinstance(body, StatusBody)
        assert body.state == "online"
    finally:
        store.close()


def test_missing_tls_files_fail_at_construction(tmp_path: Path) -> None:
    from edgefleet.cloud_sync import TlsConfig
    from edgefleet.errors import ConfigError

    store = open_store(tmp_path / "store.db")
    try:
        config = SyncConfig(tls=TlsConfig(ca_file=tmp_path / "missing-ca.crt"))
        with pytest.raises(ConfigError, match=r"sync\.tls\.ca_file"):
            SyncService(store, config, "dev-tls")
    finally:
        store.close()
