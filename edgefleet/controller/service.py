"""The controller process: database, MQTT ingest, retention worker and the HTTP server, wired."""

from __future__ import annotations

import logging
import signal
import threading
import time

import uvicorn

from edgefleet.controller.acks import AckPublisher
from edgefleet.controller.api import ControllerContext, create_app
from edgefleet.controller.auth import bootstrap_credentials
from edgefleet.controller.commands import CommandService
from edgefleet.controller.config import ControllerConfig, inactive_kinds_warning
from edgefleet.controller.dal import Database, open_database
from edgefleet.controller.hard_examples import HardExampleRecorder
from edgefleet.controller.inference.worker import InferencePool
from edgefleet.controller.ingest import IngestPipeline
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.mqtt import ControllerMqtt
from edgefleet.controller.ota_campaigns import CampaignRunner
from edgefleet.controller.ota_hosting import OTA_KINDS, OtaHost
from edgefleet.controller.retention import RetentionWorker
from edgefleet.errors import EdgefleetError

__all__ = ["ControllerService"]

log = logging.getLogger(__name__)


class ControllerService:
    """``run()`` serves until SIGINT/SIGTERM; ``start_in_thread()``/``stop()`` for embedding and tests."""

    def __init__(
        self, config: ControllerConfig, *, database: Database | None = None, ingest: bool = True
    ) -> None:
        self.config = config
        inactive = inactive_kinds_warning(config) if ingest else None
        if inactive:
            log.warning("%s", inactive)
        self.database = database if database is not None else open_database(config.database)
        bootstrap_credentials(self.database, config.auth)
        self.changes = FleetChanges()
        self.acks = AckPublisher(self._publish_nowait, prefix=config.mqtt.topic_prefix)
        self.ingest = IngestPipeline(
            self.database,
            config.ingest,
            prefix=config.mqtt.topic_prefix,
            on_stored=self.changes.publish,
            on_committed=self.acks.add,
        )
        # OTA chunk requests and progress go to the OTA host, not to ingest (ota_hosting.py).
        self.ota = OtaHost(self.database, self._publish_nowait, prefix=config.mqtt.topic_prefix)
        kinds = (
            [*config.ingest.kinds, *(k for k in OTA_KINDS if k not in config.ingest.kinds)] if ingest else []
        )
        self.mqtt = ControllerMqtt(config.mqtt, kinds, self._route)
        self.commands = CommandService(self.database, self._publish, prefix=config.mqtt.topic_prefix)
        self.retention = RetentionWorker(self.database, config.retention)
        self.campaigns = CampaignRunner(self.database, self.ota, self.commands)  # ota_campaigns.py
        self.hard_examples: HardExampleRecorder | None = None
        self.inference: InferencePool | None = None
        if config.inference.enabled:
            if config.mqtt.username and not config.inference.usernames:
                log.warning(
                    "[inference] workers log in as mqtt.username %r, the controller's own user: on a"
                    " broker that makes the user name the client id (the shipped deploy/mosquitto"
                    " config) they and the controller replace each other; set inference.usernames",
                    config.mqtt.username,
                )
            if config.inference.keep_hard_examples:
                self.hard_examples = HardExampleRecorder(self.database)
            on_answered = self.hard_examples.record if self.hard_examples else None
            self.inference = InferencePool(config.mqtt, config.inference, on_answered=on_answered)
        self.context = ControllerContext(
            config=config,
            database=self.database,
            commands=self.commands,
            changes=self.changes,
            ingest_stats=self.ingest.snapshot,
            ingest_counters=self.ingest.stats,
            queue_depth=self.ingest.queue_depth,
            mqtt_connected=lambda: self.mqtt.connected,
            ota=self.ota,
        )
        self.app = create_app(self.context)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._background = False

    def _route(self, topic: str, payload: bytes, received_at: float) -> None:
        if topic.endswith(OTA_KINDS):
            self.ota.submit(topic, payload, received_at)
        else:
            self.ingest.submit(topic, payload, received_at)

    def _publish(self, topic: str, payload: bytes) -> str | None:
        return self.mqtt.publish(topic, payload)

    def _publish_nowait(self, topic: str, payload: bytes) -> bool:
        return self.mqtt.publish_nowait(topic, payload)

    # --- background parts -------------------------------------------------------------------------
    def start_background(self) -> None:
        if self._background:
            return
        self.ingest.start()
        self.ota.start()
        self.acks.start()
        self.mqtt.start()
        self.retention.start()
        if self.hard_examples is not None:
            self.hard_examples.start()
        self.campaigns.start()
        if self.inference is not None:
            self.inference.start()
        self._background = True

    def stop_background(self) -> None:
        if not self._background:
            return
        self.campaigns.stop()
        self.mqtt.stop_intake()
        self.ingest.stop()  # store what was received, then acknowledge it before disconnecting
        self.acks.stop()
        self.ota.stop()
        self.mqtt.stop()
        self.retention.stop()
        if self.inference is not None:
            self.inference.stop()
        if self.hard_examples is not None:
            self.hard_examples.stop()
        self._background = False

    # --- HTTP -------------------------------------------------------------------------------------
    def _make_server(self) -> uvicorn.Server:
        http = self.config.http
        config = uvicorn.Config(
            self.app,
            host=http.host,
            port=http.port,
            log_level="warning",
            log_config=None,  # uvicorn's records go through the root logger's timestamped format
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        return uvicorn.Server(config)

    def run(self) -> None:
        """Serve in the foreground until interrupted, then stop everything cleanly."""
        self.start_background()
        self._server = self._make_server()
        if threading.current_thread() is threading.main_thread():
            # uvicorn re-raises the signal that stopped it once it has shut down; with this handler
            # in place that re-raise is a no-op and a SIGTERM (systemd stop) ends with exit code 0.
            signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            self._server.run()
        except SystemExit:
            pass  # uvicorn exits when it cannot bind; say so below, in edgefleet's words
        finally:
            self.stop_background()
            self.database.close()
        if not self._server.started:
            raise EdgefleetError(
                f"the HTTP server could not listen on {self.config.http.host}:{self.config.http.port}",
                hint="is another process using the port? set http.port in the controller config",
            )

    def start_in_thread(self, timeout: float = 15.0) -> int:
        """Start everything with the HTTP server in a thread; returns the bound port."""
        self.start_background()
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.run, name="edgefleet-controller-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise EdgefleetError(
                    f"the HTTP server did not start on {self.config.http.host}:{self.config.http.port}",
                    hint="is the port free?",
                )
            time.sleep(0.02)
        return self.port

    @property
    def port(self) -> int:
        if self._server is None or not self._server.servers:
            raise EdgefleetError("the controller's HTTP server is not running")
        sockets = self._server.servers[0].sockets
        return int(sockets[0].getsockname()[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.stop_background()
        self.database.close()
