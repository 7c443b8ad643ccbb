"""The controller's routes as the OpenAPI document shows them, against a snapshot.

The snapshot was taken before the API was split into one router per resource; moving a route
between modules must not change its URL, method, operation id, tags, parameters or responses.
A route added or changed on purpose updates the snapshot:
``.venv/bin/python -m tests.unit.controller.test_openapi_routes --write``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette >= 1.x nudges towards its httpx2 fork when it finds httpx; httpx works the same here.
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig, DatabaseConfig
from edgefleet.controller.dal import open_database
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.records import IngestMessage, StatusUpdate

pytestmark = pytest.mark.unit

SNAPSHOT = Path(__file__).resolve().parents[2] / "fixtures" / "controller" / "openapi_routes.json"


def openapi_document(directory: Path) -> dict[str, Any]:
    config = ControllerConfig(database=DatabaseConfig(sqlite_path=directory / "c.db"))
    database = open_database(config.database)
    try:
        context = ControllerContext(
            config=config,
            database=database,
            commands=CommandService(database, lambda topic, payload: None),
            changes=FleetChanges(),
        )
        document: dict[str, Any] = create_app(context).openapi()
        return document
    finally:
        database.close()


def route_table(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``"METHOD /path"`` -> what a client relies on: operation id, tags, parameters, status codes."""
    table: dict[str, dict[str, Any]] = {}
    for path, operations in sorted(document["paths"].items()):
        for method, operation in sorted(operations.items()):
            table[f"{method.upper()} {path}"] = {
                "operationId": operation.get("operationId"),
                "tags": operation.get("tags", []),
                "parameters": sorted(
                    f"{p['in']}:{p['name']}{'' if p.get('required') else '?'}"
                    for p in operation.get("parameters", [])
                ),
                "requestBody": bool(operation.get("requestBody")),
                "responses": sorted(operation.get("responses", {})),
            }
    return table


def test_routes_match_the_snapshot(tmp_path: Path) -> None:
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    found = route_table(openapi_document(tmp_path))
    missing = sorted(set(expected) - set(found))
    added = sorted(set(found) - set(expected))
    changed = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    differences = {"missing": missing, "added": added, "changed": changed}
    assert differences == {"missing": [], "added": [], "changed": []}, (
        f"the controller's routes differ from {SNAPSHOT.name}; if that was on purpose, rewrite it with"
        " `.venv/bin/python -m tests.unit.controller.test_openapi_routes --write`"
    )


def test_every_api_route_but_login_refuses_anonymous_callers(tmp_path: Path) -> None:
    # A router that forgets its Reader/Admin dependency would answer anyone: call every documented
    # /api route and /metrics without credentials.
    config = ControllerConfig(database=DatabaseConfig(sqlite_path=tmp_path / "c.db"))
    database = open_database(config.database)
    database.ingest(
        [IngestMessage("dev-1", None, "status", 1.0, status=StatusUpdate(True, 1.0))], result_bucket_s=60
    )
    context = ControllerContext(
        config=config,
        database=database,
        commands=CommandService(database, lambda topic, payload: None),
        changes=FleetChanges(),
    )
    answered: dict[str, int] = {}
    app = create_app(context)
    with TestClient(app) as client:
        for route in route_table(app.openapi()):
            method, path = route.split(" ", 1)
            if not path.startswith(("/api/", "/metrics")) or route == "POST /api/auth/login":
                continue
            url = path.replace("{device_id}", "dev-1").replace("{command_id}", "c-1")
            answered[route] = client.request(method, url, json={}).status_code
    database.close()
    assert len(answered) >= 18
    assert {route: status for route, status in answered.items() if status != 401} == {}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.unit.controller.test_openapi_routes --write")
    with tempfile.TemporaryDirectory() as scratch:
        snapshot = route_table(openapi_document(Path(scratch)))
    SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
