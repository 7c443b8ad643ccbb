"""Health sampling into a real store, and the Prometheus endpoint scraped over loopback."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.health import (
    HealthMonitor,
    HealthReport,
    PrometheusExporter,
    StreamHealth,
    TemperatureWatch,
    read_temperatures,
)
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.store import Store, StoreConfig
from tests.support.broker import free_port

pytestmark = pytest.mark.integration

# docs/architecture.md, "Telemetry metric names"
ARCHITECTURE_NAMES = {
    "throughput_windows_per_s",
    "inference_latency_ms_p50",
    "inference_latency_ms_p95",
    "inference_latency_ms_p99",
    "batch_size_mean",
    "buffer_fill_ratio",
    "buffer_dropped_total",
    "bad_samples_total",
    "cpu_percent",
    "memory_rss_bytes",
    "temperature_c",
    "store_size_bytes",
    "store_bytes_written_per_hour",
    "process_bytes_written_per_hour",
    "fallback_share",
    "sync_backlog",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "store.db", StoreConfig(path=tmp_path / "store.db"))
    yield store
    store.close()


def _streams() -> dict[str, StreamHealth]:
    return {"imu": StreamHealth(pushed=1000, dropped=7, windows=90, fill=512, capacity=4096, bad_samples=3)}


def test_tick_writes_architecture_metrics_to_the_store(store: Store, tmp_path: Path) -> None:
    counters = PipelineCounters()
    reports: list[HealthReport] = []
    monitor = HealthMonitor(
        store=store, counters=counters, streams_provider=_streams, interval_s=60, on_report=reports.append
    )
    for latency in (1.0, 2.0, 3.0, 4.0):
        counters.record_batch(4, latency)
    store.add_event("test", "something to sync")  # a non-empty outbox -> sync_backlog
    report = monitor.tick()
    assert reports == [report]
    assert report.windows_total == 16
    assert report.throughput_wps > 0
    assert report.latency_ms["p50"] == 2.0
    assert report.drops_total == 7
    assert report.rss_bytes is not None
    assert report.rss_bytes > 0
    assert report.store_size_bytes is not None
    assert report.store_size_bytes > 0
    conn = sqlite3.connect(tmp_path / "store.db")
    rows = conn.execute("SELECT name, value, labels FROM metrics").fetchall()
    conn.close()
    names = {name for name, _, _ in rows}
    unknown = names - ARCHITECTURE_NAMES
    assert not unknown, f"metric names not in docs/architecture.md: {unknown}"
    assert {
        "throughput_windows_per_s",
        "inference_latency_ms_p99",
        "buffer_fill_ratio",
        "sync_backlog",
        "process_bytes_written_per_hour",  # /proc/self/io: Linux, which these tests run on
    } <= names
    fill = [(v, json.loads(labels)) for name, v, labels in rows if name == "buffer_fill_ratio"]
    assert fill == [(0.125, {"stream": "imu"})]
    assert json.dumps(report.to_dict())  # the status file can carry it


def test_prometheus_endpoint_on_localhost(store: Store) -> None:
    port = free_port()
    exporter = PrometheusExporter("127.0.0.1", port)
    counters = PipelineCounters()
    counters.record_batch(8, 1.5)
    monitor = HealthMonitor(store=store, counters=counters, streams_provider=_streams, exporter=exporter)
    try:
        monitor.tick()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            body = response.read().decode()
    finally:
        monitor.stop()
    assert "edgefleet_throughput_windows_per_s" in body
    assert 'edgefleet_buffer_dropped_total{stream="imu"} 7.0' in body
    assert "edgefleet_inference_latency_ms_p50 1.5" in body


def test_a_second_exporter_on_the_same_port_fails_cleanly() -> None:
    port = free_port()
    first = PrometheusExporter("127.0.0.1", port)
    try:
        with pytest.raises(OSError, match="in use"):
            PrometheusExporter("127.0.0.1", port)
    finally:
        first.close()


def test_thermal_zones_are_read_in_celsius(tmp_path: Path) -> None:
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("48312\n")
    (zone / "type").write_text("cpu-thermal\n")
    broken = tmp_path / "thermal_zone1"
    broken.mkdir()
    (broken / "temp").write_text("unavailable\n")
    found = read_temperatures(tmp_path)
    assert found["thermal_zone0/cpu-thermal"] == pytest.approx(48.312)
    assert not any(key.startswith("thermal_zone1") for key in found)


def test_a_host_without_sensors_is_scanned_again_only_after_rescan_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("psutil.sensors_temperatures", dict)  # this host's own sensors aside
    now = [0.0]
    watch = TemperatureWatch(tmp_path, rescan_s=300.0, clock=lambda: now[0])
    assert watch.read() == {}
    zone = tmp_path / "thermal_zone0"
    zone.mkdir()
    (zone / "temp").write_text("51000\n")
    (zone / "type").write_text("soc\n")
    now[0] = 299.0
    assert watch.read() == {}  # not looked for yet
    now[0] = 300.0
    assert watch.read() == {"thermal_zone0/soc": 51.0}
    (zone / "temp").write_text("52500\n")
    now[0] = 301.0  # sensors found: read on every tick
    assert watch.read() == {"thermal_zone0/soc": 52.5}
