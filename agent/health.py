"""Periodic health metrics: pipeline rates and latencies, ring buffers, the host, the store.

Every ``interval_s`` the monitor builds a :class:`HealthReport`, writes it to the store as
``MetricSample`` rows (which sync ships as telemetry), updates the optional Prometheus
endpoint, and hands the report to a listener (the service turns it into the status file).

Host facts come from psutil; temperature from ``psutil.sensors_temperatures()`` and, for
boards where psutil finds nothing (many Raspberry Pi and Jetson images),
``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from edgefleet.agent.metrics import CountersSnapshot, PipelineCounters
from edgefleet.agent.store import MetricSample, Store
from edgefleet.agent.store.wear import ProcessWrites
from edgefleet.runtime.ringbuffer import StreamBuffer

__all__ = [
    "HealthMonitor",
    "HealthReport",
    "PrometheusExporter",
    "StreamHealth",
    "TemperatureWatch",
    "read_temperatures",
]

log = logging.getLogger(__name__)

THERMAL_ROOT = Path("/sys/class/thermal")


@dataclass
class StreamHealth:
    pushed: int = 0
    dropped: int = 0
    windows: int = 0
    fill: int = 0
    capacity: int = 0
    samples: int = 0
    bad_samples: int = 0
    source_error: str | None = None
    """Why the stream is not running (rejected or failed source), if so."""
    last_error: str | None = None
    """The source's latest complaint (a bad sample, a read error); it keeps running."""

    @property
    def fill_ratio(self) -> float:
        return self.fill / self.capacity if self.capacity else 0.0


@dataclass
class HealthReport:
    ts: float
    interval_s: float
    windows_total: int = 0
    results_stored_total: int = 0
    throughput_wps: float = 0.0
    """Windows inferred per second over the last interval."""
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    """Inference latency per batch (preprocess + predict + interpret): p50, p95, p99."""
    batch_size_mean: float | None = None
    batch_size_max: int | None = None
    inference_errors_total: int = 0
    store_errors_total: int = 0
    fallback_total: int = 0
    fallback_share: float = 0.0
    """Share of the last interval's windows handed to the fallback router (the cloud)."""
    streams: dict[str, StreamHealth] = field(default_factory=dict)
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    system_memory_percent: float | None = None
    temperatures_c: dict[str, float] = field(default_factory=dict)
    store_size_bytes: int | None = None
    store_bytes_written_per_hour: float | None = None
    process_bytes_written_per_hour: float | None = None
    """The whole agent process's device writes (``/proc/self/io``), the figure flash wear follows."""
    process_bytes_written_total: int | None = None
    store_unsynced_results: int | None = None
    store_results: int | None = None
    outbox_backlog: dict[str, int] = field(default_factory=dict)

    @property
    def drops_total(self) -> int:
        return sum(s.dropped for s in self.streams.values())

    @property
    def bad_samples_total(self) -> int:
        return sum(s.bad_samples for s in self.streams.values())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drops_total"] = self.drops_total
        out["bad_samples_total"] = self.bad_samples_total
        for name, stream in self.streams.items():
            out["streams"][name]["fill_ratio"] = round(stream.fill_ratio, 4)
        return out

    @property
    def temperature_c(self) -> float | None:
        """The hottest zone: what throttling depends on."""
        return max(self.temperatures_c.values()) if self.temperatures_c else None

    def metric_samples(self) -> list[MetricSample]:
        """The report as telemetry, named as in docs/architecture.md ("Telemetry metric names")."""
        ts = self.ts
        samples = [
            MetricSample(ts, "throughput_windows_per_s", self.throughput_wps),
            MetricSample(ts, "fallback_share", self.fallback_share),
        ]
        for key, value in self.latency_ms.items():
            if value is not None:
                samples.append(MetricSample(ts, f"inference_latency_ms_{key}", value))
        for name, stream in self.streams.items():
            labels = {"stream": name}
            samples.append(MetricSample(ts, "buffer_fill_ratio", stream.fill_ratio, labels))
            samples.append(MetricSample(ts, "buffer_dropped_total", float(stream.dropped), labels))
            samples.append(MetricSample(ts, "bad_samples_total", float(stream.bad_samples), labels))
        optional = {
            "batch_size_mean": self.batch_size_mean,
            "cpu_percent": self.cpu_percent,
            "memory_rss_bytes": self.rss_bytes,
            "temperature_c": self.temperature_c,
            "store_size_bytes": self.store_size_bytes,
            "store_bytes_written_per_hour": self.store_bytes_written_per_hour,
            "process_bytes_written_per_hour": self.process_bytes_written_per_hour,
        }
        samples.extend(MetricSample(ts, name, float(v)) for name, v in optional.items() if v is not None)
        for kind, count in self.outbox_backlog.items():
            samples.append(MetricSample(ts, "sync_backlog", float(count), {"kind": kind}))
        return samples


def read_temperatures(thermal_root: Path = THERMAL_ROOT) -> dict[str, float]:
    """Every temperature the host exposes, in degrees Celsius, keyed by sensor name."""
    found: dict[str, float] = {}
    sensors = getattr(psutil, "sensors_temperatures", None)
    if sensors is not None:
        try:
            for chip, entries in sensors().items():
                for i, entry in enumerate(entries):
                    label = entry.label or str(i)
                    found[f"{chip}/{label}"] = float(entry.current)
        except (OSError, RuntimeError) as exc:
            log.debug("psutil.sensors_temperatures failed: %s", exc)
    for zone in sorted(thermal_root.glob("thermal_zone*")):
        try:
            millidegrees = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            kind = (zone / "type").read_text().strip() or zone.name
        except OSError:
            kind = zone.name
        found.setdefault(f"{zone.name}/{kind}", millidegrees / 1000.0)
    return found


class TemperatureWatch:
    """:func:`read_temperatures` on every health tick, without scanning again a host that has none.

    Finding the sensors lists sysfs directories and opens a file per entry: about 0.4 ms on a core
    woken for the tick. Where a scan finds none (a VM, a container without ``/sys``), the next
    scan waits ``rescan_s``; where it finds some (a Pi, a Jetson), every tick reads them as before.
    """

    def __init__(
        self,
        thermal_root: Path = THERMAL_ROOT,
        *,
        rescan_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._thermal_root = thermal_root
        self._rescan_s = rescan_s
        self._clock = clock
        self._none_until = -float("inf")

    def read(self) -> dict[str, float]:
        now = self._clock()
        if now < self._none_until:
            return {}
        found = read_temperatures(self._thermal_root)
        self._none_until = -float("inf") if found else now + self._rescan_s
        return found


class PrometheusExporter:
    """A private registry served on localhost; nothing global, so two agents never collide."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server

        self.registry = CollectorRegistry(auto_describe=True)
        self._gauges: dict[str, Gauge] = {}
        self._gauge_type = Gauge
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = int(self._server.server_port)
        self.host = host

    def _gauge(self, name: str, labels: tuple[str, ...]) -> Any:
        metric = "edgefleet_" + name.replace(".", "_")
        gauge = self._gauges.get(metric)
        if gauge is None:
            gauge = self._gauge_type(metric, f"edgefleet agent {name}", labels, registry=self.registry)
            self._gauges[metric] = gauge
        return gauge

    def update(self, samples: list[MetricSample]) -> None:
        for sample in samples:
            keys = tuple(sorted(sample.labels))
            gauge = self._gauge(sample.name, keys)
            (gauge.labels(**sample.labels) if keys else gauge).set(sample.value)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class HealthMonitor:
    """A thread that samples everything every ``interval_s`` seconds."""

    def __init__(
        self,
        *,
        store: Store,
        counters: PipelineCounters,
        streams_provider: Callable[[], dict[str, StreamHealth]],
        interval_s: float = 10.0,
        write_metrics: bool = True,
        exporter: PrometheusExporter | None = None,
        on_report: Callable[[HealthReport], None] | None = None,
    ) -> None:
        self.store = store
        self.counters = counters
        self.interval_s = interval_s
        self._streams_provider = streams_provider
        self._write_metrics = write_metrics
        self._exporter = exporter
        self._on_report = on_report
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the first call always returns 0.0
        self._writes = ProcessWrites()
        self._temperatures = TemperatureWatch()
        self._previous: CountersSnapshot = counters.snapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: HealthReport | None = None
        self._lock = threading.Lock()

    @property
    def latest(self) -> HealthReport | None:
        with self._lock:
            return self._latest

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="agent-health", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._exporter is not None:
            self._exporter.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # health must never take the agent down
                log.exception("health sampling failed")

    def tick(self) -> HealthReport:
        """Sample once now, record and publish the report."""
        report = self.sample()
        samples = report.metric_samples()
        if self._write_metrics:
            try:
                self.store.queue_metrics(samples)
            except Exception as exc:
                log.warning("could not store health metrics: %s", exc)
        if self._exporter is not None:
            self._exporter.update(samples)
        with self._lock:
            self._latest = report
        if self._on_report is not None:
            self._on_report(report)
        return report

    def sample(self) -> HealthReport:
        now = self.counters.snapshot()
        before, self._previous = self._previous, now
        elapsed = max(1e-6, now.taken_at - before.taken_at)
        report = HealthReport(ts=time.time(), interval_s=self.interval_s)
        report.windows_total = now.windows_inferred
        report.results_stored_total = now.results_stored
        report.throughput_wps = (now.windows_inferred - before.windows_inferred) / elapsed
        report.latency_ms = now.latency_percentiles()
        if now.batch_sizes:
            report.batch_size_mean = sum(now.batch_sizes) / len(now.batch_sizes)
            report.batch_size_max = max(now.batch_sizes)
        report.inference_errors_total = now.inference_errors
        report.store_errors_total = now.store_errors
        report.fallback_total = now.windows_to_fallback
        handled = (now.windows_inferred - before.windows_inferred) + (
            now.windows_to_fallback - before.windows_to_fallback
        )
        if handled > 0:
            report.fallback_share = (now.windows_to_fallback - before.windows_to_fallback) / handled
        report.streams = self._streams_provider()
        try:
            report.cpu_percent = self._process.cpu_percent(None)
            report.rss_bytes = int(self._process.memory_info().rss)
            report.system_memory_percent = float(psutil.virtual_memory().percent)
        except psutil.Error as exc:
            log.debug("psutil failed: %s", exc)
        report.temperatures_c = self._temperatures.read()
        report.process_bytes_written_per_hour = self._writes.sample()
        if report.process_bytes_written_per_hour is not None:
            report.process_bytes_written_total = self._writes.total
        try:
            stats = self.store.stats()
        except Exception as exc:
            log.warning("could not read store stats: %s", exc)
        else:
            report.store_size_bytes = stats.size_bytes
            report.store_bytes_written_per_hour = stats.bytes_written_per_hour
            report.store_unsynced_results = stats.unsynced_results
            report.store_results = stats.rows.get("results")
            report.outbox_backlog = dict(stats.outbox_backlog)
        return report


def collect_stream_health(
    names: Sequence[str],
    buffers: Mapping[str, StreamBuffer],
    sources: Mapping[str, object],
    source_errors: Mapping[str, str],
) -> dict[str, StreamHealth]:
    """Per stream: its ring buffer's counters, its source's counters (any source with a ``stats``
    of samples/bad_samples/last_error), and why it is not running if so."""
    out: dict[str, StreamHealth] = {}
    for name in names:
        health = StreamHealth(source_error=source_errors.get(name))
        buffer = buffers.get(name)
        if buffer is not None:
            stats = buffer.stats
            health.pushed, health.dropped = stats.pushed, stats.dropped
            health.windows, health.fill, health.capacity = stats.windows_emitted, stats.fill, stats.capacity
        source = sources.get(name)
        source_stats = getattr(source, "stats", None) if source is not None else None
        if source_stats is not None:
            health.samples = int(getattr(source_stats, "samples", 0))
            health.bad_samples = int(getattr(source_stats, "bad_samples", 0))
            last_error = getattr(source_stats, "last_error", None)
            if health.source_error is None and last_error:
                health.last_error = str(last_error)
        out[name] = health
    return out
