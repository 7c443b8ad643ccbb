"""`edgefleet agent run` with a capacity policy and a request budget from its config file, a real
Mosquitto and a real inference worker: every window is claimed (``queue_high``), the first five
are answered by the cloud, the rest keep the edge answer flagged ``queue_high:budget``; the
router's figures reach the status file and the device's retained ``status`` message. The windows are
judged before inference (capacity offload): sent instead of inferred, and past the budget given back
to the edge model at once."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.cloud_sync.codec import decode_message
from edgefleet.cloud_sync.protocol import StatusBody
from tests.e2e.agent.agentproc import AgentProcess, count_results, read_status, run_cli, write_config
from tests.e2e.agent.test_agent_cloud_fallback import stored
from tests.integration.controller.inference.test_inference_worker import start_pool
from tests.support.broker import MosquittoBroker
from tests.support.waiting import wait_until
from tests.support.watch_fallback import MODELS, held_out_recording

pytestmark = pytest.mark.e2e

STATS_KEYS = {
    "sent",
    "answered_cloud",
    "timeouts",
    "budget_refused",
    "offline",
    "deferred",
    "late_answers",
    "requests_last_min",
    "bytes_last_hour",
    "max_requests_per_min",
    "max_bytes_per_hour",
    "latency_p50_ms",
    "latency_p95_ms",
    "reasons",
    "offloaded",
    "given_back",
    "given_back_waiting",
    "given_back_dropped",
}


class StatusWatcher:
    """Collects the device's status messages as a controller would read them."""

    def __init__(self, broker: MosquittoBroker, device_id: str) -> None:
        self.bodies: list[StatusBody] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}"
        )
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(f"edgefleet/v1/{device_id}/status", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        body = decode_message(message.topic, bytes(message.payload)).body
        if isinstance(body, StatusBody):
            with self._lock:
                self.bodies.append(body)

    def latest_fallback(self) -> dict[str, Any] | None:
        with self._lock:
            return next((b.fallback for b in reversed(self.bodies) if b.fallback is not None), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_full_buffer_sends_windows_until_the_budget_is_spent(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    pool = start_pool(mosquitto, max_wait_ms=2.0)
    watcher = StatusWatcher(mosquitto, "budget-e2e")
    recording = tmp_path / "watch.npz"
    n = held_out_recording(recording, recordings=1)
    windows = (n - 100) // 50 + 1
    assert windows > 10
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "agent.toml",
        state_dir=state,
        bundle=MODELS / "bundles" / "watch-edge-onnx",
        sources=[{"type": "replay", "name": "imu", "file": recording, "rate_hz": 50.0, "realtime": False}],
        sync={
            "host": mosquitto.host,
            "port": mosquitto.port,
            "drain_interval_s": 0.2,
            "status_interval_s": 0.3,
        },
        batching={"backpressure": "block"},
        device_id="budget-e2e",
    )
    with config.open("a") as fh:
        # Any fill counts as high (a cut window leaves window_length - hop samples behind).
        fh.write(
            "\n[fallback]\nenabled = true\nmin_confidence = 0.0\nqueue_high_water = 1e-9\n"
            "max_requests_per_min = 5\nlatency_slo_ms = 10000\n[drift]\nenabled = false\n"
        )
    db = state / "store.db"
    try:
        with AgentProcess(config, tmp_path / "agent.log") as agent:
            wait_until(lambda: count_results(db) >= windows, timeout=90, what=f"{windows} results")
            status = wait_until(
                lambda: (
                    (s := read_status(state)) is not None
                    and (s.get("fallback") or {}).get("budget_refused") == windows - 5
                    and s
                ),
                what="the router's figures in the status file",
            )
            published = wait_until(
                lambda: (
                    (f := watcher.latest_fallback()) is not None and f["budget_refused"] == windows - 5 and f
                ),
                what="the router's figures in the status message",
            )
            rows = stored(db)
            shown = run_cli("agent", "status", "--config", str(config))
            assert agent.proc.poll() is None, agent.output()
    finally:
        watcher.close()
        pool.stop()
    assert len(rows) == windows
    assert sorted(s for *_, s in rows if s is not None) == list(range(windows))  # each window once
    by_seq = {s: (by, reason) for by, reason, _model, s in rows}
    assert [by_seq[i] for i in range(5)] == [("cloud", "queue_high")] * 5
    assert {by_seq[i] for i in range(5, windows)} == {("edge", "queue_high:budget")}
    for stats in (status["fallback"], published):
        assert set(stats) == STATS_KEYS
        assert stats["sent"] == stats["answered_cloud"] == 5
        assert stats["requests_last_min"] == 5
        assert stats["max_requests_per_min"] == 5
        assert stats["reasons"] == {"queue_high": windows}
        # sent instead of inferred; past the budget each was given back to the edge at once
        assert stats["offloaded"] == windows
        assert stats["given_back"] == windows - 5
        assert stats["given_back_waiting"] == 0
    assert shown.returncode == 0, shown.stdout + shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("fallback:"))
    assert "5 sent, 5 answered by the cloud" in line
    assert f"{windows - 5} over budget; budget 5/5 requests a minute" in line
    assert f"reasons: queue_high {windows}" in line
    assert f"{windows} offloaded, {windows - 5} given back to the edge (0 waiting)" in line
