"""A real device (agent Store + SyncService, writing results the whole time) and real controllers
(in-process ControllerService or `edgefleet controller serve` processes) on a real Mosquitto, and
the per-result comparison the fault tests end with."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from edgefleet.agent.store import ResultRecord, Store
from edgefleet.cloud_sync import SyncConfig, SyncService
from edgefleet.controller.config import DatabaseConfig
from edgefleet.controller.dal import open_database
from edgefleet.controller.schemas import DeliveryReport
from tests.support.broker import MosquittoBroker, free_port
from tests.support.sync_fixtures import open_store
from tests.support.waiting import wait_until

# Each result gets its own one-second bucket at the controller (ingest.result_bucket_s = 1), so
# the controller's result_buckets table holds one row per result: a per-result comparison.
T0 = float(int(time.time()) - 86_400)
STREAM = "imu"


def device_config(broker: MosquittoBroker, protocol: str = "mqtt5", **overrides: object) -> SyncConfig:
    values: dict[str, object] = {
        "port": broker.port,
        "protocol": protocol,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "drain_interval_s": 0.1,
        "connect_timeout_s": 2.0,
        "keepalive_s": 2,
        "ack_timeout_s": 4.0,
        "max_inflight": 8,
        "resend_after_s": 2.0,
        "status_interval_s": 1.0,
    }
    values.update(overrides)
    return SyncConfig.model_validate(values)


class Device:
    """The agent's store and sync, with a writer thread storing results until :meth:`stop_writing`."""

    def __init__(self, workdir: Path, device_id: str, config: SyncConfig, *, seed: int = 0) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.device_id = device_id
        self.path = workdir / "store.db"
        self.store: Store = open_store(self.path)
        self.sync = SyncService(self.store, config, device_id)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._seq = 0
        self._writer = threading.Thread(target=self._write, name="result-writer", daemon=True)

    def start(self) -> Device:
        self.sync.start()
        self._writer.start()
        return self

    def _write(self) -> None:
        while not self._stop.is_set():
            count = self._rng.randint(1, 4)
            records = [
                ResultRecord(
                    stream=STREAM,
                    window_start=T0 + seq - 0.5,
                    window_end=T0 + seq,
                    model_name="har",
                    model_version="1.0.0",
                    label=("walk", "run", "sit")[seq % 3],
                    score=0.9,
                    outputs=None,
                    latency_ms=1.0,
                    window_seq=seq,
                )
                for seq in range(self._seq, self._seq + count)
            ]
            self.store.write_results(records)
            self._seq += count
            self._stop.wait(0.03)

    @property
    def written(self) -> int:
        return self._seq

    def stop_writing(self) -> int:
        self._stop.set()
        self._writer.join(10)
        return self._seq

    def drained(self) -> bool:
        return not self.store.outbox_backlog() and self.sync.uplink.awaiting.__len__() == 0

    def results(self) -> Counter[tuple[float, str]]:
        """(window_end, label) of every result the device stored, as the controller buckets them."""
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT window_end, label FROM results").fetchall()
        return Counter((float(end), str(label)) for end, label in rows)

    def close(self) -> None:
        self._stop.set()
        self.sync.stop()
        self.store.close()


def controller_results(database_config: DatabaseConfig, device_id: str) -> Counter[tuple[float, str]]:
    database = open_database(database_config)
    try:
        with database._conn() as conn:  # type: ignore[attr-defined]
            rows = conn.rows(
                "SELECT bucket_start, label, count FROM result_buckets WHERE device_id = ?", (device_id,)
            )
    finally:
        database.close()
    counts: Counter[tuple[float, str]] = Counter()
    for start, label, count in rows:
        counts[(float(start), str(label))] += int(count)
    return counts


def delivery(database_config: DatabaseConfig, device_id: str) -> DeliveryReport | None:
    database = open_database(database_config)
    try:
        return database.delivery_report(device_id)
    finally:
        database.close()


def assert_exactly_once(device: Device, database_config: DatabaseConfig) -> None:
    """Every result the device stored is at the controller exactly once; nothing else is."""
    expected = device.results()
    assert len(expected) == device.written  # sanity: the device stored every result it wrote
    got = controller_results(database_config, device.device_id)
    missing = sorted(k for k in expected if got.get(k, 0) == 0)
    doubled = sorted(k for k, n in got.items() if n > 1)
    unknown = sorted(k for k in got if k not in expected)
    summary = (
        f"{len(missing)} results missing (first {missing[:5]}), {len(doubled)} counted twice "
        f"(first {doubled[:5]}), {len(unknown)} the device never stored, of {len(expected)}"
    )
    assert not missing, summary
    assert not doubled, summary
    assert not unknown, summary
    report = delivery(database_config, device.device_id)
    assert report is not None
    assert report.results_received == len(expected)
    assert report.missing == []
    assert report.missing_messages == 0


class ControllerProcess:
    """`edgefleet controller serve` as a real process, killable with SIGKILL."""

    TOKEN = "delivery-admin-token-0123456789abcdef"

    def __init__(self, workdir: Path, broker: MosquittoBroker, database: Path, **mqtt: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "controller.toml"
        mqtt_lines = "".join(f'{k} = "{v}"\n' for k, v in mqtt.items())
        self.config.write_text(
            f"[mqtt]\nport = {broker.port}\nkeepalive_s = 5\n{mqtt_lines}"
            f'[database]\nsqlite_path = "{database}"\n'
            f"[http]\nport = {self.port}\n"
            "[ingest]\nresult_bucket_s = 1\nbatch_max_delay_ms = 20\n"
            "[retention]\ninterval_s = 3600\n"
        )
        self.log = workdir / "controller.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ControllerProcess:
        env = {**os.environ, "EDGEFLEET_CONTROLLER_ADMIN_TOKEN": self.TOKEN}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgefleet", "controller", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        wait_until(self._subscribed, 60, what=f"the controller on port {self.port} to connect to the broker")
        return self

    def _subscribed(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            health = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()
        except httpx.HTTPError:
            return False
        return health.get("mqtt_connected") is True

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
