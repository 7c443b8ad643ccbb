"""The agent daemon: start-up, the main loop, signals, reload, shutdown.

Life cycle (``edgefleet agent run``):

1. Load the config (a bad one at start-up is fatal: there is nothing to fall back to),
   configure logging, open the store. Nothing here touches the network.
2. Start the pipeline (sources -> buffers -> batcher -> inference -> store), the health
   monitor (metrics, status file, optional Prometheus) and, when enabled, the sync
   service. Sync runs on its own; a missing broker only grows the outbox.
3. ``READY=1`` to systemd, then the main loop: it pings the watchdog at half of
   ``WATCHDOG_USEC`` while the pipeline threads are alive, and acts on signals.
4. ``SIGHUP``: reload. A config that fails validation is refused (logged, an event,
   the old configuration keeps running); a good one rebuilds the pipeline.
5. ``SIGTERM``/``SIGINT``: ``STOPPING=1``, stop sources, infer what is left in the
   ring buffers, flush the store, exit 0 - all within ``stop_timeout_s``.

A model that fails to load keeps the daemon up: the pipeline retries, the status
reports it unhealthy, and an event records why.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from edgefleet import __version__
from edgefleet.agent.config import AgentConfig, load_config
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.health import HealthMonitor, HealthReport, PrometheusExporter, StreamHealth
from edgefleet.agent.inactive import inactive_settings
from edgefleet.agent.log_setup import configure_logging
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.pipeline import Pipeline, PipelineSettings, StreamSpec
from edgefleet.agent.sdnotify import Notifier
from edgefleet.agent.sources import create_source
from edgefleet.agent.status import STATUS_FILENAME, write_status
from edgefleet.agent.store import Store
from edgefleet.errors import ConfigError, EdgefleetError
from edgefleet.runtime import Model
from edgefleet.runtime.bundle import Bundle, load_bundle

__all__ = ["AgentService", "RunLimits", "status_path_for"]

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.25


def status_path_for(config: AgentConfig) -> Path:
    """Where the running agent writes its status file: its state directory."""
    return config.device.state_dir / STATUS_FILENAME


@dataclass(frozen=True)
class RunLimits:
    """Test and benchmark knobs: stop on their own instead of waiting for a signal."""

    max_seconds: float | None = None
    until_sources_finish: bool = False
    stop_timeout_s: float | None = None


class AgentService:
    def __init__(
        self,
        config_path: Path,
        *,
        limits: RunLimits | None = None,
        notifier: Notifier | None = None,
        on_ready: Callable[[AgentService], None] | None = None,
    ) -> None:
        self.config_path = config_path
        self.limits = limits or RunLimits()
        self.notifier = notifier or Notifier()
        self._on_ready = on_ready
        self.config: AgentConfig | None = None
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.drift: DriftObserver | None = None
        self.health: HealthMonitor | None = None
        self.sync: Any | None = None
        self.counters = PipelineCounters()
        self.started_at = time.time()
        self._state = "starting"
        self._stop_requested = False
        self._reload_requested = False
        self._stop_reason = ""
        self._last_report: HealthReport | None = None
        self._status_lock = threading.Lock()
        self._reloads = 0
        self._reload_error: str | None = None

    # -- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        # Only flags here: the main loop (same thread) acts on them within _POLL_S.
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True
            self._stop_reason = signal.Signals(signum).name

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def request_stop(self, reason: str = "requested") -> None:
        self._stop_requested = True
        self._stop_reason = reason

    def request_reload(self) -> None:
        self._reload_requested = True

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> int:
        config = load_config(self.config_path)
        self.config = config
        self._configure_logging(config)
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        log.info("edgefleet agent %s starting (pid %d)", __version__, os.getpid())
        self.store = Store.open(config.store.path, config.store)
        self.store.add_event("agent_started", f"agent {__version__} started", data={"pid": os.getpid()})
        self._start_components(config)
        for inactive in inactive_settings(config):
            log.warning("config: %s", inactive)
            self.store.add_event("config_inactive", inactive, level="warning")
        self._state = "running"
        self._write_status()
        self.notifier.ready(self._status_line())
        if self._on_ready is not None:
            self._on_ready(self)
        try:
            self._main_loop()
        finally:
            self._shutdown()
        return 0

    def _configure_logging(self, config: AgentConfig) -> None:
        configure_logging(config.logging.format, config.logging.level)

    def _main_loop(self) -> None:
        watchdog_every = self.notifier.watchdog_interval()
        if self.config is not None and not self.config.health.watchdog:
            watchdog_every = None
        next_ping = time.monotonic()
        deadline = None if self.limits.max_seconds is None else time.monotonic() + self.limits.max_seconds
        while not self._stop_requested:
            now = time.monotonic()
            if watchdog_every is not None and now >= next_ping:
                # Ping only while the data path is alive: a wedged pipeline gets restarted by systemd.
                if self.pipeline is not None and self.pipeline.alive():
                    self.notifier.watchdog()
                next_ping = now + watchdog_every
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if deadline is not None and now >= deadline:
                self.request_stop("max-seconds reached")
                break
            if self.limits.until_sources_finish and self._sources_finished():
                self.request_stop("sources finished")
                break
            wait = _POLL_S
            if watchdog_every is not None:
                wait = min(wait, max(0.0, next_ping - time.monotonic()))
            time.sleep(wait)

    def _sources_finished(self) -> bool:
        """Every started source has delivered everything (none started: nothing will come)."""
        if self.pipeline is None or not self.pipeline.streams_started.is_set():
            return False
        sources = self.pipeline.sources()
        return all(bool(getattr(s, "finished", False)) for s in sources.values())

    # -- components -----------------------------------------------------------------------

    def _pipeline_settings(self, config: AgentConfig) -> PipelineSettings:
        batching = config.batching
        return PipelineSettings(
            max_batch_size=batching.max_batch_size,
            batch_timeout_s=batching.batch_timeout_s,
            buffer_capacity=batching.buffer_capacity,
            backpressure=batching.backpressure,
            store_outputs=config.store.store_raw_outputs,
        )

    def _build_pipeline(self, config: AgentConfig, store: Store) -> Pipeline:
        model_cfg = config.model
        load_kwargs: dict[str, Any] = {
            "backend": None if model_cfg.backend == "auto" else model_cfg.backend,
            "providers": model_cfg.providers,
            "threads": model_cfg.threads,
            "nan_policy": model_cfg.nan_policy,
        }

        drift = self.drift = DriftObserver(config.drift, store) if config.drift.enabled else None

        def open_bundle() -> Bundle:
            bundle = load_bundle(model_cfg.bundle, cache_dir=config.device.state_dir / "bundles")
            if drift is not None:
                drift.attach(bundle)
            return bundle

        def open_model(bundle: Bundle) -> Model:
            return bundle.open_model(**load_kwargs)

        streams = [
            StreamSpec(name=src.name, make_source=functools.partial(create_source, src))
            for src in config.sources
        ]
        return Pipeline(
            store=store,
            streams=streams,
            load_bundle=open_bundle,
            open_model=open_model,
            settings=self._pipeline_settings(config),
            counters=self.counters,
            observers=[drift] if drift is not None else [],
        )

    def _start_components(self, config: AgentConfig, *, start_sync: bool = True) -> None:
        assert self.store is not None
        self.pipeline = self._build_pipeline(config, self.store)
        self.pipeline.start()
        exporter = None
        prometheus = config.health.prometheus
        if prometheus.enabled:
            try:
                exporter = PrometheusExporter(prometheus.host, prometheus.port)
            except OSError as exc:
                log.error("Prometheus endpoint not started: %s", exc)
                self.store.add_event("prometheus_failed", str(exc), level="warning")
        self.health = HealthMonitor(
            store=self.store,
            counters=self.counters,
            streams_provider=self._streams_health,
            interval_s=config.health.metrics_interval_s,
            exporter=exporter,
            on_report=self._on_report,
        )
        self.health.start()
        if start_sync:
            self.sync = self._start_sync(config)

    def _start_sync(self, config: AgentConfig) -> Any | None:
        if not config.sync.enabled:
            return None
        assert self.store is not None
        try:
            from edgefleet.cloud_sync import SyncService

            sync = SyncService(
                self.store,
                config.sync,
                config.device.id,
                status_provider=self.status_snapshot,
                command_handler=self._on_command,
            )
            sync.start()
        except Exception as exc:  # sync is optional: inference and storage go on without it
            log.error("sync not started: %s", exc)
            self._add_event("sync_failed", f"sync not started: {exc}", level="error")
            return None
        return sync

    def _on_command(self, envelope: Any) -> None:
        """Downlink commands (sync thread): only set flags; the main loop acts on them."""
        command = getattr(getattr(envelope, "body", None), "command", None)
        if command == "restart_pipeline":
            log.info("restart_pipeline command received; rebuilding the pipeline")
            self.request_reload()

    def _stop_components(self, timeout: float, *, keep_sync: bool = False) -> None:
        deadline = time.monotonic() + timeout
        if self.pipeline is not None:
            report = self.pipeline.stop(timeout=max(0.5, deadline - time.monotonic() - 0.5))
            log.info(
                "pipeline stopped: %d windows drained%s",
                report.drained_windows,
                "" if report.completed else " (incomplete: " + "; ".join(report.notes) + ")",
            )
        if self.drift is not None:
            self.drift.flush()  # the open report's counts are sent, not lost on stop or reload
        if self.health is not None:
            self.health.stop()
        if self.sync is not None and not keep_sync:
            try:
                self.sync.stop()
            except Exception as exc:
                log.warning("sync did not stop cleanly: %s", exc)
            self.sync = None

    def _streams_health(self) -> dict[str, StreamHealth]:
        pipeline = self.pipeline
        return pipeline.streams_health() if pipeline is not None else {}

    def _add_event(
        self, kind: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> None:
        if self.store is None:
            return
        try:
            self.store.add_event(kind, message, level=level, data=data)
        except Exception as exc:
            log.warning("could not record %s event: %s", kind, exc)

    # -- reload ---------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply the config file again; True when the new config now runs."""
        log.info("reloading configuration from %s", self.config_path)
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self._reload_error = str(exc)
            log.error("configuration reload refused; keeping the running configuration:\n%s", exc)
            self._add_event(
                "config_rejected",
                f"reload refused: {exc.message}",
                level="error",
                data={"issues": [str(i) for i in exc.issues]},
            )
            self.notifier.status("reload refused: invalid configuration; running the previous one")
            return False
        self.notifier.reloading()
        old = self.config
        assert old is not None
        assert self.store is not None
        stop_timeout = self._stop_timeout(old)
        self._state = "reloading"
        # Sync holds the store and its broker session; keep it unless what it depends on changed.
        keep_sync = self.sync is not None and new.sync == old.sync and new.device.id == old.device.id
        keep_sync = keep_sync and new.store == old.store
        self._stop_components(stop_timeout, keep_sync=keep_sync)
        if new.store != old.store:
            # A different store (path, caps): reopen it; everything after this writes there.
            self.store.close()
            try:
                self.store = Store.open(new.store.path, new.store)
            except EdgefleetError as exc:
                log.error("new store cannot be opened (%s); keeping %s", exc, old.store.path)
                self.store = Store.open(old.store.path, old.store)
                new = new.model_copy(update={"store": old.store})
        self._configure_logging(new)
        self.config = new
        self._reload_error = None
        self._reloads += 1
        try:
            self._start_components(new, start_sync=not keep_sync)
        except Exception as exc:  # never leave the agent without a pipeline
            log.exception("the new configuration failed to start; going back to the previous one")
            self._add_event("reload_failed", f"new configuration failed to start: {exc}", level="error")
            self._stop_components(stop_timeout, keep_sync=keep_sync)
            self.config = old
            self._reload_error = f"new configuration failed to start: {exc}"
            self._start_components(old, start_sync=not keep_sync and self.sync is None)
        self._state = "running"
        self._add_event("config_reloaded", f"configuration reloaded from {self.config_path}")
        self._write_status()
        self.notifier.ready(self._status_line())
        log.info("configuration reloaded")
        return True

    # -- shutdown -------------------------------------------------------------------------

    def _stop_timeout(self, config: AgentConfig) -> float:
        if self.limits.stop_timeout_s is not None:
            return self.limits.stop_timeout_s
        return config.device.stop_timeout_s

    def _shutdown(self) -> None:
        self._state = "stopping"
        log.info("stopping (%s)", self._stop_reason or "requested")
        self.notifier.stopping(f"stopping: {self._stop_reason or 'requested'}")
        config = self.config
        timeout = self._stop_timeout(config) if config is not None else DEFAULT_STOP_TIMEOUT_S
        self._stop_components(timeout)
        self._state = "stopped"
        if self.store is not None:
            self._add_event("agent_stopped", f"agent stopped ({self._stop_reason or 'requested'})")
            self._write_status()
            self.store.close()
        self.notifier.close()

    # -- status ---------------------------------------------------------------------------

    def _on_report(self, report: HealthReport) -> None:
        self._last_report = report
        self._write_status()
        self.notifier.status(self._status_line())

    def problems(self) -> list[str]:
        """What makes the agent unhealthy (the status command exits non-zero on any)."""
        return self.pipeline.problems() if self.pipeline is not None else ["pipeline not built"]

    def warnings(self) -> list[str]:
        """Worth showing, but not unhealthy: restarting would not fix them."""
        found: list[str] = []
        if self._reload_error is not None:
            # Not a health problem: the previous configuration runs fine, and a container
            # restart on a failed healthcheck would only trade it for the broken file.
            found.append("last reload refused (invalid configuration); running the previous one")
        return found

    def _status_line(self) -> str:
        report = self._last_report
        model = self.pipeline.model_info() if self.pipeline is not None else {}
        parts = [self._state]
        if model.get("name"):
            parts.append(
                f"model {model['name']} {model['version']}" + ("" if model.get("loaded") else " (not loaded)")
            )
        if report is not None:
            parts.append(f"{report.throughput_wps:.1f} windows/s")
        problems = self.problems()
        if problems:
            parts.append(f"{len(problems)} problem(s)")
        return "; ".join(parts)

    def status_snapshot(self) -> dict[str, Any]:
        """Everything `edgefleet agent status` shows; also what sync reports as device status."""
        config = self.config
        report = self._last_report
        problems = self.problems()
        snapshot: dict[str, Any] = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "version": __version__,
            "config_path": str(self.config_path),
            "device_id": config.device.id if config is not None else None,
            "state": self._state,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "uptime_s": time.time() - self.started_at,
            "interval_s": config.health.metrics_interval_s if config is not None else None,
            "healthy": not problems and self._state in ("running", "reloading"),
            "problems": problems,
            "warnings": self.warnings(),
            "reloads": self._reloads,
            "model": self.pipeline.model_info() if self.pipeline is not None else None,
            "health": report.to_dict() if report is not None else None,
            "streams": {
                name: {**asdict(stream), "fill_ratio": round(stream.fill_ratio, 4)}
                for name, stream in self._streams_health().items()
            },
        }
        drift = self.drift
        snapshot["drift"] = drift.status() if drift is not None else {"enabled": False, "reason": "disabled"}
        counters = self.counters.snapshot()
        snapshot["totals"] = {
            "windows_inferred": counters.windows_inferred,
            "results_stored": counters.results_stored,
            "inference_errors": counters.inference_errors,
            "store_errors": counters.store_errors,
        }
        if report is None:
            snapshot["latency_ms"] = counters.latency_percentiles()
        # Store facts as of the last health sample: `agent status` reads them from here rather
        # than opening the database itself (it may run as another user, e.g. root).
        snapshot["store"] = {
            "path": str(config.store.path) if config is not None else None,
            "size_bytes": report.store_size_bytes if report is not None else None,
            "results": report.store_results if report is not None else None,
            "unsynced_results": report.store_unsynced_results if report is not None else None,
            "outbox_backlog": dict(report.outbox_backlog) if report is not None else {},
            "bytes_written_per_hour": report.store_bytes_written_per_hour if report is not None else None,
        }
        sync = self.sync
        if sync is not None:
            try:
                state = sync.state()
                snapshot["sync"] = state.model_dump(mode="json") if hasattr(state, "model_dump") else state
            except Exception as exc:
                snapshot["sync"] = {"error": str(exc)}
        else:
            snapshot["sync"] = {"enabled": bool(config is not None and config.sync.enabled), "running": False}
        return snapshot

    def _write_status(self) -> None:
        config = self.config
        if config is None:
            return
        with self._status_lock:
            try:
                write_status(status_path_for(config), self.status_snapshot())
            except OSError as exc:
                log.warning("could not write the status file: %s", exc)
