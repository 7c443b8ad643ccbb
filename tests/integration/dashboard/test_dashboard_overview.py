"""The dashboard's overview query (``Database.fleet_overview``) on real databases (SQLite file,
PostgreSQL when reachable) and over HTTP."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # Starlette >= 1.x nudges towards its httpx2 fork when it finds httpx; httpx works the same here.
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.auth import create_token
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig
from edgefleet.controller.dal import Database
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.records import DriftItem, IngestMessage, StatusUpdate, StoredResult, TelemetryItem
from tests.unit.controller.db_fixtures import DB_KINDS, throwaway_database

pytestmark = pytest.mark.integration

NOW = time.time()


def _status(device: str, online: bool, version: str) -> IngestMessage:
    return IngestMessage(
        device, None, "status", NOW, status=StatusUpdate(online, NOW, "0.1.0", "har", version)
    )


def _telemetry(device: str, message_id: str, **values: tuple[float, float]) -> IngestMessage:
    """values: metric name -> (seconds ago, value)."""
    items = [TelemetryItem(metric, NOW - ago, value) for metric, (ago, value) in values.items()]
    return IngestMessage(device, message_id, "telemetry", NOW, telemetry=items)


def seed(database: Database) -> None:
    database.ingest(
        [
            _status("a-1", True, "1.0.0"),
            _status("a-2", True, "2.0.0"),
            _status("b-1", False, "1.0.0"),
            _status("c-1", True, "1.0.0"),
            # An older, larger reading must lose to the newest one.
            _telemetry("a-1", "1", throughput_windows_per_s=(30, 50.0)),
            _telemetry(
                "a-1",
                "2",
                throughput_windows_per_s=(2, 5.0),
                inference_latency_ms_p95=(2, 10.0),
                fallback_share=(2, 0.1),
            ),
            _telemetry(
                "a-2",
                "3",
                throughput_windows_per_s=(2, 2.0),
                inference_latency_ms_p95=(2, 30.0),
                fallback_share=(2, 0.5),
            ),
            # Offline: listed with its last figures, left out of the fleet's live throughput.
            _telemetry("b-1", "4", throughput_windows_per_s=(600, 9.0)),
            IngestMessage(
                "a-1",
                "5",
                "results",
                NOW,
                results=[StoredResult(NOW - 5, "walk", 8.0, "edge", "1.0.0")] * 3
                + [StoredResult(NOW - 5, "run", 8.0, "cloud", "1.0.0")],
            ),
            IngestMessage(
                "a-2", "6", "results", NOW, results=[StoredResult(NOW - 7200, "old", 8.0, "edge", "2.0.0")]
            ),
            IngestMessage("a-1", "7", "drift", NOW, drift=[DriftItem(NOW - 1, True, 0.5)]),
        ],
        result_bucket_s=60,
    )


@pytest.fixture(params=DB_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with throwaway_database(request.param, tmp_path) as (db, _config):
        seed(db)
        yield db


def ids(database: Database, **kwargs: Any) -> list[str]:
    return [d.device_id for d in database.fleet_overview(now=NOW, **kwargs).devices]


def test_latest_figures_and_fleet_counts(database: Database) -> None:
    page = database.fleet_overview(now=NOW)
    by_id = {d.device_id: d for d in page.devices}
    assert list(by_id) == ["a-1", "a-2", "b-1", "c-1"]
    a1 = by_id["a-1"]
    assert (a1.throughput, a1.p95_latency_ms, a1.fallback_share) == (5.0, 10.0, 0.1)
    assert a1.drifted
    assert a1.drift_score == 0.5
    assert a1.drift_at == pytest.approx(NOW - 1)
    assert a1.results_recent == 4
    assert a1.top_label == "walk"
    assert a1.metrics_at == pytest.approx(NOW - 2)
    assert by_id["a-2"].results_recent == 0  # its only result is older than the window
    assert by_id["c-1"].throughput is None
    assert by_id["c-1"].top_label is None
    # Never sent a drift report: not drifted, and nothing says it was checked.
    assert (by_id["c-1"].drifted, by_id["c-1"].drift_score, by_id["c-1"].drift_at) == (False, None, None)
    counts = page.counts
    assert (counts.total, counts.online, counts.offline, counts.drifted) == (4, 3, 1, 1)
    assert counts.throughput == pytest.approx(7.0)
    assert counts.fallback_share == pytest.approx((5 * 0.1 + 2 * 0.5) / 7)
    assert page.model_versions == {"1.0.0": 3, "2.0.0": 1}
    assert page.matched == 4


def test_sorting_puts_missing_figures_last(database: Database) -> None:
    assert ids(database, sort="throughput", descending=True) == ["b-1", "a-1", "a-2", "c-1"]
    assert ids(database, sort="throughput") == ["a-2", "a-1", "b-1", "c-1"]
    assert ids(database, sort="p95_latency_ms", descending=True)[:2] == ["a-2", "a-1"]
    assert ids(database, sort="device_id", descending=True) == ["c-1", "b-1", "a-2", "a-1"]
    assert ids(database, sort="online")[0] == "b-1"


def test_filters_and_paging(database: Database) -> None:
    assert ids(database, online=False) == ["b-1"]
    assert ids(database, model_version="2.0.0") == ["a-2"]
    assert ids(database, search="A-") == ["a-1", "a-2"]
    assert ids(database, search="%") == []  # LIKE wildcards are matched literally
    assert ids(database, drifted=True) == ["a-1"]
    page = database.fleet_overview(limit=2, offset=2, now=NOW)
    assert [d.device_id for d in page.devices] == ["b-1", "c-1"]
    assert page.matched == 4
    # Filters narrow the table, never the fleet totals at the top.
    assert database.fleet_overview(online=False, now=NOW).counts.total == 4


def test_the_overview_is_part_of_the_database_interface() -> None:
    # The dashboard reads only through Database: every storage backend must answer the query.
    assert "fleet_overview" in Database.__abstractmethods__


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with throwaway_database("sqlite", tmp_path) as (db, config):
        seed(db)
        context = ControllerContext(
            config=ControllerConfig(database=config),
            database=db,
            commands=CommandService(db, lambda topic, payload: None),
            changes=FleetChanges(),
        )
        headers = {"Authorization": f"Bearer {create_token(db, 'read', 'viewer')}"}
        with TestClient(create_app(context)) as test_client:
            yield test_client, headers


def test_overview_endpoint(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client
    response = http.get(
        "/api/dashboard/overview", params={"sort": "throughput", "order": "desc"}, headers=headers
    )
    assert response.status_code == 200
    body = response.json()
    assert [d["device_id"] for d in body["devices"]] == ["b-1", "a-1", "a-2", "c-1"]
    assert body["counts"]["online"] == 3


def test_overview_needs_authentication(client: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = client
    response = http.get("/api/dashboard/overview")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"sort": "temperature"}, "query.sort"),
        ({"order": "up"}, "query.order"),
        ({"limit": "0"}, "query.limit"),
        ({"online": "maybe"}, "query.online"),
        ({"window_s": "1"}, "query.window_s"),
    ],
)
def test_bad_query_parameters_are_named(
    client: tuple[TestClient, dict[str, str]], params: dict[str, str], where: str
) -> None:
    http, headers = client
    response = http.get("/api/dashboard/overview", params=params, headers=headers)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert where in body["message"]


def test_pages_get_a_strict_content_security_policy(client: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = client
    page = http.get("/static/index.html")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    # The API's responses are left alone.
    assert "content-security-policy" not in http.get("/api/auth/me", headers=headers).headers
