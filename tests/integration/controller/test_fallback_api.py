"""The cloud fallback API on a real controller fed over a real Mosquitto (SQLite and PostgreSQL):
results with ``answered_by``/``fallback_reason`` and a status with ``fallback`` as devices send
them; share, reasons, budget and latency per device, in the device detail and fleet-wide; ranges,
resends, a malformed ``status.fallback``, unknown devices and missing credentials."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from tests.integration.controller.conftest import RunningController, connect_device, wait_for
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.integration


def results(answers: Sequence[tuple[str, str | None]], at: float) -> dict[str, Any]:
    return {
        "results": [
            {
                "stream": "imu",
                "window_start": at - 2,
                "window_end": at,
                "model_name": "watch-edge",
                "model_version": "1.0.0",
                "label": "curl",
                "latency_ms": 3.0,
                "answered_by": by,
                "fallback_reason": why,
            }
            for by, why in answers
        ]
    }


def test_fallback_share_reasons_budget_and_latency(
    controller: RunningController, mosquitto: MosquittoBroker
) -> None:
    now = time.time()
    a, b = connect_device(mosquitto, "fb-a"), connect_device(mosquitto, "fb-b")
    try:
        answers = (
            [("cloud", "low_confidence")] * 4 + [("edge", "low_confidence:timeout")] + [("edge", None)] * 5
        )
        first = a.publish("results", results(answers, now - 60))
        a.publish("results", results(answers, now - 60), message_id=first)  # a resend: counted once
        a.publish("results", results([("edge", "ood:budget")] * 2, now - 7200))  # two hours ago
        b.publish("results", results([("edge", None)] * 10, now - 60))
        a.publish(
            "status",
            {
                "state": "online",
                "fallback": {
                    "requests_last_min": 6,
                    "max_requests_per_min": 6,
                    "latency_p50_ms": 20.0,
                    "latency_p95_ms": 55.5,
                },
            },
        )
        b.publish("status", {"state": "online", "fallback": {"latency_p95_ms": "fast"}})  # not a number
        wait_for(
            lambda: (
                controller.get("/api/fleet/fallback")["results"] == 22
                and controller.get("/api/fleet/fallback")["devices_with_status"] == 2
            ),
            what="22 results and two statuses stored",
        )
    finally:
        a.close()
        b.close()

    day = controller.get("/api/fleet/fallback")  # the default range: the last 24 hours
    assert (day["results"], day["cloud_answers"], day["escalated"]) == (22, 4, 7)
    fleet = controller.get("/api/fleet/fallback", since=-3600)
    assert (fleet["results"], fleet["cloud_answers"], fleet["escalated"]) == (20, 4, 5)
    assert fleet["cloud_share"] == pytest.approx(0.2)
    assert [(r["reason"], r["answered_by"], r["count"]) for r in fleet["reasons"]] == [
        ("low_confidence", "cloud", 4),
        ("low_confidence:timeout", "edge", 1),
    ]
    assert (fleet["devices_at_budget"], fleet["latency_p95_ms_max"]) == (1, 55.5)
    by_device = {d["device_id"]: d for d in fleet["devices"]}
    assert by_device["fb-b"]["latency_p95_ms"] is None  # a non-number is kept as sent, never used
    assert by_device["fb-b"]["status"] == {"latency_p95_ms": "fast"}
    assert by_device["fb-b"]["cloud_share"] == 0.0

    detail = controller.get("/api/devices/fb-a")["fallback"]
    assert (detail["results"], detail["cloud_answers"], detail["requests_budget_use"]) == (10 + 2, 4, 1.0)
    assert detail["latency_p50_ms"] == 20.0
    last_hour = controller.get("/api/devices/fb-a/fallback", since=-3600)
    assert (last_hour["results"], last_hour["escalated"]) == (10, 5)
    older = controller.get("/api/devices/fb-a/fallback", since=now - 3 * 3600, until=now - 3600)
    assert [(r["reason"], r["count"]) for r in older["reasons"]] == [("ood:budget", 2)]
    assert older["cloud_share"] == 0.0

    unknown = httpx.get(
        controller.base_url + "/api/devices/nobody/fallback", headers=controller.read, timeout=10
    )
    assert unknown.status_code == 404
    assert "nobody" in unknown.json()["message"]
    assert httpx.get(controller.base_url + "/api/fleet/fallback", timeout=10).status_code == 401
