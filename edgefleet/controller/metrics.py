"""Prometheus exposition of the controller's own health (``GET /metrics``, read role)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edgefleet.controller.dal import Database
from edgefleet.controller.ingest import IngestStats

__all__ = ["controller_metrics"]


class _ControllerCollector(Collector):
    def __init__(
        self, database: Database, stats: IngestStats | None, queue_depth: Callable[[], int] | None
    ) -> None:
        self.database = database
        self.stats = stats
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        fleet = self.database.list_devices(limit=1)
        online = self.database.list_devices(online=True, limit=1).total
        devices = GaugeMetricFamily(
            "edgefleet_controller_devices", "Known devices by state", labels=["state"]
        )
        devices.add_metric(["online"], online)
        devices.add_metric(["offline"], fleet.total - online)
        yield devices
        stats = self.stats
        if stats is None:
            return
        with stats.lock:
            counters = {
                "received": stats.received,
                "stored": stats.stored,
                "duplicates": stats.duplicates,
                "dropped_queue_full": stats.dropped_queue_full,
                "store_errors": stats.store_errors,
                "batches": stats.batches,
            }
            malformed = dict(stats.malformed_by_reason)
        for name, value in counters.items():
            yield CounterMetricFamily(
                f"edgefleet_controller_messages_{name}",
                f"Uplink messages: {name.replace('_', ' ')}",
                value=value,
            )
        family = CounterMetricFamily(
            "edgefleet_controller_messages_malformed", "Uplink messages refused, by reason", labels=["reason"]
        )
        for reason, value in sorted(malformed.items()):
            family.add_metric([reason], value)
        yield family
        if self.queue_depth is not None:
            yield GaugeMetricFamily(
                "edgefleet_controller_ingest_queue_depth",
                "Messages waiting for the writer",
                value=self.queue_depth(),
            )
        lag = GaugeMetricFamily(
            "edgefleet_controller_ingest_lag_seconds",
            "Publish-to-stored lag over the last 20,000 messages",
            labels=["quantile"],
        )
        for q in (0.5, 0.99):
            lag_ms = stats.lag_quantile(q)
            if lag_ms is not None:
                lag.add_metric([str(q)], lag_ms / 1000)
        yield lag


def controller_metrics(
    database: Database, stats: IngestStats | None, queue_depth: Callable[[], int] | None
) -> bytes:
    """The Prometheus text exposition of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ControllerCollector(database, stats, queue_depth))
    return generate_latest(registry)
