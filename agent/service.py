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

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from edgefleet import __version__
from edgefleet.agent.cloud_router import CloudRouter
from edgefleet.agent.command_handlers import register_agent_commands
from edgefleet.agent.commands import CommandRegistry
from edgefleet.agent.config import AgentConfig, load_config
from edgefleet.agent.drift_observer import DriftObserver
from edgefleet.agent.health import HealthMonitor, HealthReport, PrometheusExporter, StreamHealth
from edgefleet.agent.inactive import inactive_settings
from edgefleet.agent.log_setup import configure_logging
from edgefleet.agent.main_wait import MainWait
from edgefleet.agent.metrics import PipelineCounters
from edgefleet.agent.ota_agent import AgentOta, register_ota_commands
from edgefleet.agent.ota_client import OtaClient
from edgefleet.agent.ota_wiring import start_ota_client
from edgefleet.agent.pipeline import Pipeline
from edgefleet.agent.pipeline_build import build_pipeline
from edgefleet.agent.remote_config import apply_saved_overrides
from edgefleet.agent.sdnotify import Notifier
from edgefleet.agent.status import STATUS_FILENAME, agent_snapshot, status_line, write_status
from edgefleet.agent.store import ResultRecord, Store
from edgefleet.agent.waiting import announce_waits
from edgefleet.errors import ConfigError, EdgefleetError

__all__ = ["AgentService", "RunLimits"]

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.25  # the main loop's tick while starting up (until the first result is committed)
_IDLE_POLL_S = 1.0  # then: signals and requests end a wait at once (MainWait)


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
        self.router: CloudRouter | None = None
        self.ota_client: OtaClient | None = None  # OTA transfer: edgefleet/agent/ota_client.py
        self.counters = PipelineCounters()
        self.started_at = time.time()
        self._state = "starting"
        self._stop_requested = False
        self._reload_requested = False
        self._stop_reason = ""
        self._last_report: HealthReport | None = None
        self._status_lock = threading.Lock()
        self._last_status_marks: tuple[object, ...] = ()
        self._reloads = 0
        self._reload_error: str | None = None
        self._overrides_error: str | None = None
        self.commands = CommandRegistry(lambda: self.store)
        register_agent_commands(self.commands, self)
        self.ota = AgentOta(self)  # OTA activation: edgefleet/agent/ota_agent.py
        self._wait = MainWait()
        register_ota_commands(self.commands, self.ota)

    # -- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        del frame
        # Only flags here: the main loop (same thread) acts on them once MainWait returns.
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stop_requested = True
            self._stop_reason = signal.Signals(signum).name

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self._wait.wake_on_signals()

    def request_stop(self, reason: str = "requested") -> None:
        self._stop_requested = True
        self._stop_reason = reason
        self._wait.wake()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wait.wake()

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> int:
        config, self._overrides_error = apply_saved_overrides(load_config(self.config_path))
        self.config = config
        self._configure_logging(config)
        if threading.current_thread() is threading.main_thread():
            self._install_signals()
        log.info("edgefleet agent %s starting (pid %d)", __version__, os.getpid())
        self.store = Store.open(config.store.path, config.store)
        self.store.add_event("agent_started", f"agent {__version__} started", data={"pid": os.getpid()})
        announce_waits(config)
        self.ota.recover()
        self._start_components(config)
        for inactive in inactive_settings(config):
            log.warning("config: %s", inactive)
            self.store.add_event("config_inactive", inactive, level="warning")
        self._report_dropped_overrides()
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
            self.ota.poll()
            self._write_status_on_change()
            if deadline is not None and now >= deadline:
                self.request_stop("max-seconds reached")
                break
            if self.limits.until_sources_finish and self._sources_finished():
                self.request_stop("sources finished")
                break
            starting = self.pipeline is None or not self.pipeline.first_result.is_set()
            wait = _POLL_S if starting or self.limits.until_sources_finish else _IDLE_POLL_S
            for until in (None if watchdog_every is None else next_ping, deadline):
                wait = wait if until is None else min(wait, until - time.monotonic())
            self._wait.wait(wait)

    def _sources_finished(self) -> bool:
        """Every started source has delivered everything (none started: nothing will come)."""
        if self.pipeline is None or not self.pipeline.streams_started.is_set():
            return False
        sources = self.pipeline.sources()
        return all(bool(getattr(s, "finished", False)) for s in sources.values())

    # -- components -----------------------------------------------------------------------

    def _build_pipeline(self, config: AgentConfig, store: Store) -> Pipeline:
        built = build_pipeline(
            config, store, self.counters, publish_live=self._publish_live, deliver=self._deliver_cloud
        )
        self.drift, self.router = built.drift, built.router
        return built.pipeline

    # -- cloud fallback (edgefleet/agent/cloud_router.py): the router outlives neither sync nor pipeline

    def _publish_live(self, topic: str, payload: bytes) -> str | None:
        return (
            "sync is not running"
            if self.sync is None
            else cast(str | None, self.sync.publish_live(topic, payload))
        )

    def _deliver_cloud(self, records: Sequence[ResultRecord]) -> None:
        if self.pipeline is not None:
            self.pipeline.deliver(records)

    def _on_infer_response(self, envelope: Any) -> None:
        if self.router is not None:
            self.router.on_envelope(envelope)

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
            sync.register_handler("infer/response", self._on_infer_response)
            self.ota_client = start_ota_client(self, config, sync)
            sync.start()
        except Exception as exc:  # sync is optional: inference and storage go on without it
            log.error("sync not started: %s", exc)
            self._add_event("sync_failed", f"sync not started: {exc}", level="error")
            return None
        return sync

    def _on_command(self, envelope: Any) -> None:
        """Downlink commands (sync thread): see agent/commands.py and agent/command_handlers.py."""
        self.commands.handle_envelope(envelope)

    def apply_live_config(self, config: AgentConfig) -> None:
        """A ``set_config`` that needs no pipeline reload (``logging.*``) takes effect now."""
        self._configure_logging(config)
        self.config = config

    def _report_dropped_overrides(self) -> None:
        if self._overrides_error is not None:
            log.error("%s", self._overrides_error)
            self._add_event("config_overrides_dropped", self._overrides_error, level="error")

    def _stop_components(self, timeout: float, *, keep_sync: bool = False) -> None:
        deadline = time.monotonic() + timeout
        if self.router is not None:
            # Before the pipeline: the windows still waiting for the cloud keep their edge answers.
            self.router.close()
            self.router = None
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
            if self.ota_client is not None:
                self.ota_client.stop()
                self.ota_client = None
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
        """Apply the config file again; True when the new config now runs.

        Commands waiting on a reload (restart_pipeline, set_config) are reported done or failed.
        """
        waiting = self.commands.take_deferred()
        reloaded = self._reload_config()
        failed = None if reloaded and self._reload_error is None else self._reload_error or "reload refused"
        self.commands.finish(waiting, failed)
        return reloaded

    def _reload_config(self) -> bool:
        log.info("reloading configuration from %s", self.config_path)
        try:
            new, self._overrides_error = apply_saved_overrides(load_config(self.config_path))
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
        self._report_dropped_overrides()
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
        self.ota.stop()
        self._stop_components(timeout)
        self._state = "stopped"
        if self.store is not None:
            self._add_event("agent_stopped", f"agent stopped ({self._stop_reason or 'requested'})")
            self._write_status()
            self.store.close()
        self.notifier.close()
        self._wait.close()

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
        model = self.pipeline.model_info() if self.pipeline is not None else {}
        return status_line(self._state, model, self._last_report, len(self.problems()))

    def status_snapshot(self) -> dict[str, Any]:
        """Everything `edgefleet agent status` shows; also what sync reports as device status."""
        return agent_snapshot(
            self,
            state=self._state,
            reloads=self._reloads,
            report=self._last_report,
            streams=self._streams_health(),
        )

    def _write_status_on_change(self) -> None:
        """Rewrite the status file once the model loads (or fails), the first results commit or
        the problems change: a container health check reads it right after start-up."""
        pipeline = self.pipeline
        if pipeline is None:
            return
        model = pipeline.model_info()
        marks = (model["state"], model["loaded_at"], pipeline.first_result.is_set(), len(self.problems()))
        if marks != self._last_status_marks:
            self._last_status_marks = marks
            self._write_status()

    def _write_status(self) -> None:
        config = self.config
        if config is None:
            return
        with self._status_lock:
            try:
                write_status(config.device.state_dir / STATUS_FILENAME, self.status_snapshot())
            except OSError as exc:
                log.warning("could not write the status file: %s", exc)
