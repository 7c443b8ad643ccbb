"""OTA transfer test rig: a real broker, the controller's OtaHost on a real SQLite database and its
MQTT connection, a device's real store, SyncService and OtaClient, and a real minimal installer."""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefleet.agent.ota_client import OtaClient, Report
from edgefleet.agent.store import Store
from edgefleet.cloud_sync import SyncConfig, SyncService
from edgefleet.cloud_sync.protocol import OtaOfferBody
from edgefleet.controller.config import DatabaseConfig, MqttConfig
from edgefleet.controller.dal import Database, open_database
from edgefleet.controller.mqtt import ControllerMqtt
from edgefleet.controller.ota_hosting import OTA_KINDS, OtaHost
from edgefleet.runtime.bundle_verify import verify_bundle
from tests.support.broker import MosquittoBroker
from tests.support.sync_fixtures import open_store, unique_device
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO / "models" / "bundles" / "basicmotions-edge-tflite"
DEMO_NAME = "basicmotions-edge-tflite"


def versioned_bundle(out_dir: Path, version: str) -> Path:
    """The demo bundle as a ``.tar`` with ``version`` in its manifest (the files' hashes still match)."""
    work = out_dir / f"bundle-{version}"
    shutil.copytree(DEMO_DIR, work)
    manifest = json.loads((work / "manifest.json").read_text())
    manifest["version"] = version
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
    tar_path = out_dir / f"{DEMO_NAME}-{version}.tar"
    with tarfile.open(tar_path, "w") as tar:
        for path in sorted(work.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


@dataclass
class CheckingInstaller:
    """A real installer without activation: the archive must load as a valid bundle (manifest,
    every file's sha256, the model, its tensors, its canaries) with the offered version."""

    installed: list[tuple[Path, str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def install(self, archive: Path, offer: OtaOfferBody, report: Report) -> None:
        report("validating", 0.0)
        result = verify_bundle(archive)
        if not result.ok:
            report("failed", 0.0, "; ".join(result.problems))
        elif result.version != offer.bundle_version:
            report(
                "failed", 0.0, f"the archive holds version {result.version}, offered {offer.bundle_version}"
            )
        else:
            self.installed.append((archive, result.version or ""))
            report("done", 1.0, None, {"canary": 1.0})
        self.done.set()


class OtaRig:
    """Controller side and device side over one broker; ``close()`` stops everything."""

    def __init__(
        self,
        broker: MosquittoBroker,
        work: Path,
        *,
        chunk_bytes: int = 4096,
        device_id: str | None = None,
        serving: tuple[str | None, str | None] = (DEMO_NAME, "1.0.0"),
        installer: CheckingInstaller | None = None,
        free_bytes: Callable[[Path], int] | None = None,
        window: int = 4,
        chunk_timeout_s: float = 1.0,
        max_window: int = 32,
        serve_chunks: bool = True,
        ota_dir: Path | None = None,
        min_free_bytes: int | None = None,
    ) -> None:
        self.broker = broker
        self.work = work
        self.device_id = device_id or unique_device("ota")
        self.database: Database = open_database(DatabaseConfig(sqlite_path=work / "controller.db"))
        self.controller_mqtt: ControllerMqtt | None = None
        self.host = OtaHost(self.database, self._publish, chunk_bytes=chunk_bytes, max_window=max_window)
        # serve_chunks=False: the host never sees chunk requests; the test sends the chunks itself.
        kinds = OTA_KINDS if serve_chunks else ("ota/progress",)
        self.controller_mqtt = ControllerMqtt(MqttConfig(port=broker.port), kinds, self.host.submit)
        self.host.start()
        self.controller_mqtt.start()
        assert self.controller_mqtt.wait_ready(15), "the controller did not subscribe"
        self.store: Store = open_store(work / "device" / "store.db")
        self.sync = SyncService(
            self.store,
            SyncConfig(port=broker.port, drain_interval_s=0.05, end_to_end_ack=False, reconnect_min_s=0.1),
            self.device_id,
        )
        self.installer = installer if installer is not None else CheckingInstaller()
        self.serving = serving
        self.ota_dir = ota_dir if ota_dir is not None else work / "device" / "ota"
        extra: dict[str, Any] = {} if min_free_bytes is None else {"min_free_bytes": min_free_bytes}
        self.client = self.make_client(
            free_bytes=free_bytes, window=window, chunk_timeout_s=chunk_timeout_s, **extra
        )
        self.sync.start()
        wait_until(lambda: self.sync.state().connected, 15, what="the device to connect")

    def make_client(self, **kwargs: Any) -> OtaClient:
        def progress(body: dict[str, Any]) -> None:
            self.store.enqueue("ota/progress", body, priority=0)
            self.sync.wake()

        def event(kind: str, message: str, level: str, data: dict[str, Any]) -> None:
            self.store.add_event(kind, message, level=level, data=data)

        client = OtaClient(
            device_id=self.device_id,
            directory=self.ota_dir,
            publish_live=self.sync.publish_live,
            progress_sink=progress,
            current_model=lambda: self.serving,
            installer=self.installer,
            event_sink=event,
            **kwargs,
        )
        self.sync.register_handler("ota/offer", client.on_offer)
        self.sync.register_handler("ota/chunk", client.on_chunk)
        client.start()
        return client

    def _publish(self, topic: str, payload: bytes) -> bool:
        return self.controller_mqtt is not None and self.controller_mqtt.publish_nowait(topic, payload)

    def states(self) -> list[str]:
        """The device's reported states for its offers, as the controller recorded them (last first)."""
        return [s.state for s in self.database.ota_states(self.device_id)]

    def state_of(self, offer_id: str) -> str | None:
        for s in self.database.ota_states(self.device_id):
            if s.offer_id == offer_id:
                return s.state
        return None

    def close(self) -> None:
        self.client.stop()
        self.sync.stop()
        self.store.close()
        if self.controller_mqtt is not None:
            self.controller_mqtt.stop()
        self.host.stop()
        self.database.close()
