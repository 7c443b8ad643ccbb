"""The HTTP API in-process (Starlette TestClient) over a real SQLite file; no broker."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

with warnings.catch_warnings():
    # Starlette >= 1.x nudges towards its httpx2 fork when it finds httpx; httpx works the same here.
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.auth import CSRF_HEADER, create_token, hash_password
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig, DatabaseConfig
from edgefleet.controller.dal import Database, open_database
from edgefleet.controller.dal.migrations import MIGRATIONS
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.records import (
    DriftItem,
    IngestMessage,
    StatusUpdate,
    StoredEvent,
    StoredResult,
    TelemetryItem,
)

pytestmark = pytest.mark.unit


class Api:
    def __init__(self, client: TestClient, database: Database, published: list[tuple[str, bytes]]) -> None:
        self.client = client
        self.database = database
        self.published = published
        self.admin = {"Authorization": f"Bearer {create_token(database, 'admin', 'admin')}"}
        self.read = {"Authorization": f"Bearer {create_token(database, 'read', 'viewer')}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = ControllerConfig(database=DatabaseConfig(sqlite_path=tmp_path / "c.db"))
    database = open_database(config.database)
    published: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes) -> str | None:
        published.append((topic, payload))
        return None

    context = ControllerContext(
        config=config, database=database, commands=CommandService(database, publish), changes=FleetChanges()
    )
    now = time.time()
    database.ingest(
        [
            IngestMessage(
                "dev-1",
                None,
                "status",
                now,
                status=StatusUpdate(True, now, "0.1.0", "har", "1.0.0", {"board": "rpi4"}),
            ),
            IngestMessage(
                "dev-2", None, "status", now, status=StatusUpdate(False, now, model_version="0.9.0")
            ),
            IngestMessage(
                "dev-1",
                "1:0",
                "telemetry",
                now,
                telemetry=[
                    TelemetryItem("cpu_percent", now - 5, 12.5),
                    TelemetryItem("cpu_percent", now - 1, 14.0),
                ],
            ),
            IngestMessage(
                "dev-1",
                "2:0",
                "results",
                now,
                results=[StoredResult(now - 2, "walk", 8.0, "edge", "1.0.0")] * 3,
            ),
            IngestMessage("dev-1", "3:0", "drift", now, drift=[DriftItem(now - 1, True, 0.5)]),
            IngestMessage(
                "dev-1", "4:0", "events", now, events=[StoredEvent(now - 1, "pipeline.error", "error", "x")]
            ),
        ],
        result_bucket_s=60,
    )
    with TestClient(create_app(context)) as client:
        yield Api(client, database, published)
    database.close()


def test_unauthenticated_and_unauthorized_requests_get_json_errors(api: Api) -> None:
    response = api.client.get("/api/devices")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert response.json()["hint"]
    bad = api.client.get("/api/devices", headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401
    forbidden = api.client.post(
        "/api/devices/dev-1/commands", json={"name": "report_status"}, headers=api.read
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "forbidden"
    assert api.published == []


def test_device_listing_filters_and_detail(api: Api) -> None:
    listing = api.client.get("/api/devices", headers=api.read).json()
    assert listing["total"] == 2
    online = api.client.get("/api/devices", params={"online": "true"}, headers=api.read).json()
    assert [d["device_id"] for d in online["devices"]] == ["dev-1"]
    assert online["devices"][0]["drifted"] is True
    by_version = api.client.get("/api/devices", params={"model_version": "0.9.0"}, headers=api.read).json()
    assert [d["device_id"] for d in by_version["devices"]] == ["dev-2"]
    search = api.client.get(
        "/api/devices", params={"search": "RPI", "sort": "last_seen", "order": "desc"}, headers=api.read
    )
    assert [d["device_id"] for d in search.json()["devices"]] == ["dev-1"]
    invalid = api.client.get("/api/devices", params={"sort": "bogus"}, headers=api.read)
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid_request"
    assert "sort" in invalid.json()["message"]
    detail = api.client.get("/api/devices/dev-1", headers=api.read).json()
    assert detail["device"]["hardware"] == {"board": "rpi4"}
    assert detail["latest_telemetry"] == {"cpu_percent": 14.0}
    missing = api.client.get("/api/devices/ghost", headers=api.read)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_device_data_routes(api: Api) -> None:
    series = api.client.get(
        "/api/devices/dev-1/telemetry", params={"metric": "cpu_percent", "since": -60}, headers=api.read
    ).json()
    assert series["resolution"] == "raw"
    assert [p["value"] for p in series["points"]] == [12.5, 14.0]
    assert api.client.get("/api/devices/dev-1/metrics", headers=api.read).json()["metrics"] == ["cpu_percent"]
    assert api.client.get("/api/devices/dev-1/telemetry", headers=api.read).status_code == 422
    drift = api.client.get("/api/devices/dev-1/drift", headers=api.read).json()
    assert [d["drifted"] for d in drift] == [True]
    events = api.client.get("/api/devices/dev-1/events", headers=api.read).json()
    assert [e["kind"] for e in events] == ["pipeline.error"]
    summary = api.client.get("/api/devices/dev-1/results/summary", headers=api.read).json()
    assert (summary["total"], summary["fallback_share"]) == (3, 0.0)
    assert api.client.get("/api/devices/ghost/drift", headers=api.read).status_code == 404
    fleet = api.client.get("/api/fleet/summary", headers=api.read).json()
    assert (fleet["devices_total"], fleet["online"], fleet["offline"], fleet["results_total"]) == (2, 1, 1, 3)
    assert fleet["drifted_devices"] == ["dev-1"]
    assert api.client.get("/api/results/summary", headers=api.read).json()["total"] == 3
    assert len(api.client.get("/api/events", headers=api.read).json()) == 1


def test_admin_sends_commands(api: Api) -> None:
    response = api.client.post(
        "/api/devices/dev-1/commands",
        json={"name": "set_config", "args": {"key": "k", "value": 2}},
        headers=api.admin,
    )
    assert response.status_code == 202
    record = response.json()
    assert (record["status"], record["created_by"]) == ("sent", "token:admin")
    assert [t for t, _ in api.published] == ["edgefleet/v1/dev-1/cmd"]
    fetched = api.client.get(f"/api/commands/{record['command_id']}", headers=api.read).json()
    assert fetched["args"] == {"key": "k", "value": 2}
    listed = api.client.get("/api/devices/dev-1/commands", headers=api.read).json()
    assert [c["command_id"] for c in listed] == [record["command_id"]]
    bad = api.client.post("/api/devices/dev-1/commands", json={"name": "set_config"}, headers=api.admin)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_command")
    unknown = api.client.post(
        "/api/devices/dev-1/commands", json={"name": "self_destruct"}, headers=api.admin
    )
    assert unknown.status_code == 422
    ghost = api.client.post("/api/devices/ghost/commands", json={"name": "ping"}, headers=api.admin)
    assert ghost.status_code == 404


def test_password_login_session_and_csrf(api: Api) -> None:
    api.database.upsert_user("ops", hash_password("ops-password"), "admin", at=0)
    wrong = api.client.post("/api/auth/login", json={"username": "ops", "password": "nope"})
    assert wrong.status_code == 401
    response = api.client.post("/api/auth/login", json={"username": "ops", "password": "ops-password"})
    assert response.status_code == 200
    assert "httponly" in response.headers["set-cookie"].lower()
    csrf = response.json()["csrf_token"]
    assert api.client.get("/api/auth/me").json()["via"] == "session"
    assert api.client.get("/api/devices").status_code == 200
    no_csrf = api.client.post("/api/devices/dev-1/commands", json={"name": "ping"})
    assert no_csrf.status_code == 403
    ok = api.client.post("/api/devices/dev-1/commands", json={"name": "ping"}, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 202
    assert api.client.post("/api/auth/logout", headers={CSRF_HEADER: csrf}).status_code == 204
    assert api.client.get("/api/devices").status_code == 401


def test_openapi_health_and_root(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path in ("/api/devices", "/api/devices/{device_id}/telemetry", "/api/fleet/summary", "/api/stream"):
        assert path in spec["paths"]
    health = api.client.get("/healthz").json()
    latest = max(version for version, _, _ in MIGRATIONS)
    assert (health["status"], health["database"], health["schema_version"]) == ("ok", "sqlite", latest)
    root = api.client.get("/", follow_redirects=False)
    assert root.status_code in (200, 307)
