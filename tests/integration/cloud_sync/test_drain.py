"""Store-and-forward against a real Mosquitto: exactly-once after de-dup, in order per stream,
through broker restarts, stalls, sender crashes, MQTT 3.1.1 and a broker that appears late."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from edgefleet.agent.store import Store
from edgefleet.cloud_sync import SyncConfig, SyncService, read_state_file
from edgefleet.cloud_sync.protocol import EventsBody, ResultsBody, StatusBody, TelemetryBody
from edgefleet.cloud_sync.topics import controller_filters
from tests.support.broker import MosquittoBroker
from tests.support.sync_fixtures import (
    Collector,
    assert_exactly_once_in_order,
    body_of,
    fill_results,
    open_store,
    unique_device,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("sync_driver.py")
STREAMS = ("imu", "audio")


def fast_config(port: int, **overrides: object) -> SyncConfig:
    values: dict[str, object] = {
        "port": port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        "drain_interval_s": 0.1,
        "connect_timeout_s": 2.0,
        "keepalive_s": 2,
        "ack_timeout_s": 4.0,
        "max_inflight": 8,
        # These tests read the uplink with a plain MQTT collector, no edgefleet controller: the
        # broker's PUBACK is the acknowledgement (tests/integration/delivery covers the controller's).
        "end_to_end_ack": False,
    }
    values.update(overrides)
    return SyncConfig.model_validate(values)


def drained(store: Store) -> bool:
    return not store.outbox_backlog()


def _bytes_metric(collector: Collector, device: str, kind: str) -> float | None:
    values = [
        s.value
        for env in collector.of_kind("telemetry", device)
        for s in body_of(env, TelemetryBody).samples
        if s.name == "sync_bytes_sent_total" and s.labels.get("kind") == kind
    ]
    return max(values) if values else None


@pytest.mark.parametrize("protocol", ["mqtt5", "mqtt311"])
def test_backlog_drains_exactly_once_in_order(
    mosquitto: MosquittoBroker, store: Store, protocol: str
) -> None:
    device = unique_device()
    fill_results(store, 600, batch=40, streams=STREAMS)
    store.add_event("test.started", "backlog written")
    mqtt_version = mqtt.MQTTv5 if protocol == "mqtt5" else mqtt.MQTTv311
    with Collector(mosquitto, [f"edgefleet/v1/{device}/#"], protocol=mqtt_version) as collector:
        config = fast_config(mosquitto.port, protocol=protocol, status_interval_s=0.5)
        service = SyncService(store, config, device)
        service.start()
        try:
            assert wait_until(lambda: drained(store), fail=False), store.outbox_backlog()
            assert collector.wait_for(lambda: len(collector.results(device)) >= 1200)
            state = service.state()
            # Bytes sent per kind are also reported as telemetry.
            assert collector.wait_for(lambda: (_bytes_metric(collector, device, "results") or 0) > 0)
        finally:
            service.stop()
        assert_exactly_once_in_order(collector.results(device), STREAMS, 600)
        events = collector.of_kind("events", device)
        assert [body_of(e, EventsBody).events[0].kind for e in events] == ["test.started"]
        # Priority: the event (priority 0) went out before any result (priority 2).
        kinds = [e.kind for e in collector.envelopes if e.kind != "status"]
        assert kinds[0] == "events"
        assert collector.wait_for(
            lambda: any(body_of(e, StatusBody).state == "offline" for e in collector.of_kind("status"))
        )
    assert state.connected
    assert state.results_sent == 1200
    assert state.bytes_sent_by_kind["results"] > 0
    assert state.last_acked_id is not None
    status = [e.body for e in collector.of_kind("status", device)]
    assert isinstance(status[0], StatusBody)
    assert status[0].state == "online"
    assert service.state_path is not None
    saved = read_state_file(service.state_path)
    assert saved is not None
    assert not saved.running
    assert saved.results_sent == 1200


def _persistent_broker(workdir: Path) -> MosquittoBroker:
    # Persistence lets the collector's session (subscription + queued messages) survive the
    # broker's restart, so the receiver misses nothing the broker acknowledged.
    workdir.mkdir()
    return MosquittoBroker(
        workdir,
        global_lines=[
            "user root",
            "persistence true",
            f"persistence_location {workdir}/",
            "autosave_interval 1",
        ],
    )


def _persistent_collector(broker: MosquittoBroker, device: str) -> Collector:
    return Collector(
        broker,
        [f"edgefleet/v1/{device}/results"],
        protocol=mqtt.MQTTv311,
        client_id=f"ctl-{device}",
        clean=False,
    )


def test_starts_without_broker_and_catches_up(tmp_path: Path, store: Store) -> None:
    device = unique_device()
    broker = _persistent_broker(tmp_path / "late-broker")
    with broker:  # register the controller's persistent session, then take the broker away
        _persistent_collector(broker, device).close()
    service = SyncService(store, fast_config(broker.port), device)
    service.start()
    try:
        fill_results(store, 200, batch=25)
        assert wait_until(lambda: service.state().connect_attempts >= 2, 10)
        assert not service.state().connected
        assert service.state().last_error
        with broker, _persistent_collector(broker, device) as collector:
            assert wait_until(lambda: drained(store))
            assert collector.wait_for(lambda: len(collector.results()) >= 200)
            assert_exactly_once_in_order(collector.results(), ["imu"], 200)
    finally:
        service.stop()


def _settled(collector: Collector, device: str) -> None:
    """Wait until the collector stops receiving (everything the broker accepted has arrived)."""
    previous = -1
    while len(collector.results(device)) != previous:
        previous = len(collector.results(device))
        time.sleep(0.5)


def test_broker_killed_mid_drain_and_restarted(tmp_path: Path) -> None:
    device = unique_device()
    broker = _persistent_broker(tmp_path / "broker")
    store_path = tmp_path / "dev" / "store.db"
    seed = open_store(store_path)
    fill_results(seed, 1000, batch=20)
    seed.close()
    with broker:
        collector = _persistent_collector(broker, device)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGUSR1)  # save the collector's session now
        time.sleep(0.3)
        proc = _start_driver(store_path, device, broker.port, rate=40.0)
        try:
            assert collector.wait_for(lambda: len(collector.results(device)) >= 100)
            # Freeze the device mid-drain and let the broker hand the collector what it already
            # acknowledged: a broker killed with -9 loses messages it acked but had not delivered,
            # which no client protocol can recover. Publishes still unacknowledged are the point.
            proc.send_signal(signal.SIGSTOP)
            _settled(collector, device)
            broker.kill()
            proc.send_signal(signal.SIGCONT)
            store = open_store(store_path)
            try:
                assert store.outbox_backlog().get("results", 0) > 0, "the rest waits in the store"
            finally:
                store.close()
            time.sleep(0.5)  # the device finds the broker gone and backs off
            broker.start()
            assert collector.wait_for(lambda: len(collector.results(device)) >= 1000, 60)
            store = open_store(store_path)
            try:
                assert wait_until(lambda: drained(store), 20, fail=False), store.outbox_backlog()
            finally:
                store.close()
        finally:
            proc.send_signal(signal.SIGCONT)
            _stop_driver(proc)
            collector.close()
    assert_exactly_once_in_order(collector.results(device), ["imu"], 1000)


def test_broker_stalled_with_sigstop_then_resumed(mosquitto: MosquittoBroker, store: Store) -> None:
    device = unique_device()
    fill_results(store, 600, batch=20)
    with Collector(mosquitto, [f"edgefleet/v1/{device}/results"]) as collector:
        service = SyncService(store, fast_config(mosquitto.port, max_messages_per_s=40.0), device)
        service.start()
        try:
            assert collector.wait_for(lambda: len(collector.results()) >= 60)
            mosquitto.pause()
            # keep-alive 2 s / ack timeout 4 s: the device notices the silent broker and drops the link
            assert wait_until(lambda: not service.state().connected, 20)
            mosquitto.resume()
            assert wait_until(lambda: drained(store), 60, fail=False), store.outbox_backlog()
            assert collector.wait_for(lambda: len(collector.results()) >= 600, 30)
        finally:
            mosquitto.resume()
            service.stop()
        assert_exactly_once_in_order(collector.results(), ["imu"], 600)


def _start_driver(store_path: Path, device: str, port: int, *, rate: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(store_path), device, str(port), "--rate", str(rate)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stop_driver(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


def test_sender_killed_with_sigkill_mid_drain_and_restarted(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    device = unique_device()
    store_path = tmp_path / "dev" / "store.db"
    seed = open_store(store_path)
    fill_results(seed, 1000, batch=20)
    seed.close()
    with Collector(mosquitto, [f"edgefleet/v1/{device}/#"]) as collector:
        proc = _start_driver(store_path, device, mosquitto.port, rate=40.0)
        try:
            assert collector.wait_for(lambda: len(collector.results(device)) >= 100)
        finally:
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
        # The broker publishes the retained last will: the device is offline.
        assert collector.wait_for(
            lambda: any(
                body_of(e, StatusBody).state == "offline" for e in collector.of_kind("status", device)
            ),
            15,
        )
        proc = _start_driver(store_path, device, mosquitto.port, rate=400.0)
        try:
            assert collector.wait_for(lambda: len(collector.results(device)) >= 1000, 60)
            store = open_store(store_path)
            try:
                assert wait_until(lambda: drained(store), 20, fail=False), store.outbox_backlog()
            finally:
                store.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
            if proc.stdout:
                proc.stdout.close()
    assert_exactly_once_in_order(collector.results(device), ["imu"], 1000)


@pytest.mark.parametrize("controller_protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_controllers_share_the_load_through_shared_subscriptions(
    mosquitto: MosquittoBroker, store: Store, controller_protocol: MQTTProtocolVersion
) -> None:
    device = unique_device()
    group = f"ctl-{device}"
    fill_results(store, 400, batch=10)
    filters = controller_filters(group=group, kinds=("results",))
    with (
        Collector(mosquitto, filters, protocol=controller_protocol) as first,
        Collector(mosquitto, filters, protocol=controller_protocol) as second,
    ):
        service = SyncService(store, fast_config(mosquitto.port), device)
        service.start()
        try:
            assert wait_until(lambda: len(first.results(device)) + len(second.results(device)) >= 400)
        finally:
            service.stop()
        # Each message went to one member only; together they hold everything once.
        assert first.results(device)
        assert second.results(device)
        merged = sorted(
            first.of_kind("results", device) + second.of_kind("results", device), key=lambda e: e.seq
        )
        rows = [r for env in merged for r in body_of(env, ResultsBody).results]
        assert_exactly_once_in_order(rows, ["imu"], 400)
