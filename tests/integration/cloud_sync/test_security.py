"""TLS, mutual TLS, passwords and the shipped ACL example against a real Mosquitto."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgefleet.agent.store import Store
from edgefleet.cloud_sync import SyncConfig, SyncService, TlsConfig, make_envelope
from edgefleet.cloud_sync.client import build_tls_context
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import CommandBody, Envelope
from tests.support.broker import MosquittoBroker
from tests.support.sync_fixtures import (
    Collector,
    assert_exactly_once_in_order,
    body_of,
    fill_results,
    password_broker,
    tls_broker,
    unique_device,
)
from tests.support.tls import Pki, make_pki
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def mtls_config(broker: MosquittoBroker, pki: Pki, cn: str, **extra: object) -> SyncConfig:
    cert, key = pki.client(cn)
    return SyncConfig.model_validate(
        {
            "host": "localhost",
            "port": broker.port,
            "tls": TlsConfig(ca_file=pki.ca_cert, cert_file=cert, key_file=key),
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "drain_interval_s": 0.1,
            "connect_timeout_s": 3.0,
            "end_to_end_ack": False,  # no edgefleet controller behind these brokers
            **extra,
        }
    )


def controller_tls(pki: Pki) -> ssl.SSLContext:
    cert, key = pki.client("controller")
    return build_tls_context(TlsConfig(ca_file=pki.ca_cert, cert_file=cert, key_file=key))


class RawClient:
    """A hand-driven MQTT 5 client with a certificate, for what SyncService would never do."""

    def __init__(self, broker: MosquittoBroker, pki: Pki, cn: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.acks: dict[int, ReasonCode] = {}
        self.connected = threading.Event()
        cert, key = pki.client(cn)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{cn}", protocol=mqtt.MQTTv5)
        self.client.tls_set_context(
            build_tls_context(TlsConfig(ca_file=pki.ca_cert, cert_file=cert, key_file=key))
        )
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_publish = lambda c, u, mid, rc, props: self.acks.__setitem__(mid, rc)
        self.client.connect("localhost", broker.port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mtls_broker(tmp_path: Path, pki: Pki) -> object:
    with tls_broker(tmp_path / "tls-broker", pki, mtls=True, acl=True) as broker:
        yield broker


def test_mutual_tls_drain_and_commands(mtls_broker: MosquittoBroker, pki: Pki, store: Store) -> None:
    device = unique_device()
    fill_results(store, 300, batch=30)
    handled: list[Envelope] = []
    with Collector(
        mtls_broker,
        [f"edgefleet/v1/{device}/results"],
        client_id="controller",
        tls=controller_tls(pki),
    ) as collector:
        service = SyncService(
            store, mtls_config(mtls_broker, pki, device), device, command_handler=handled.append
        )
        service.start()
        try:
            assert wait_until(lambda: not store.outbox_backlog())
            assert collector.wait_for(lambda: len(collector.results()) >= 300)
            # Mosquitto's CONNACK says Receive Maximum 20: the window (32 configured) obeys it.
            assert service.uplink.window == 19
            collector.send(
                make_envelope(
                    device, "cmd", {"command_id": "c1", "command": "restart_pipeline"}, message_id=1
                )
            )
            assert wait_until(lambda: len(handled) == 1)
        finally:
            service.stop()
    assert_exactly_once_in_order(collector.results(), ["imu"], 300)


def test_acl_device_cannot_read_others_commands_nor_publish_as_them(
    mtls_broker: MosquittoBroker, pki: Pki, store: Store
) -> None:
    victim, intruder = unique_device("victim"), unique_device("intruder")
    handled: list[Envelope] = []
    service = SyncService(
        store, mtls_config(mtls_broker, pki, victim), victim, command_handler=handled.append
    )
    service.start()
    raw = RawClient(mtls_broker, pki, intruder)
    try:
        with Collector(
            mtls_broker,
            [f"edgefleet/v1/{victim}/results"],
            client_id="controller",
            tls=controller_tls(pki),
        ) as controller:
            assert wait_until(lambda: service.state().connected)
            raw.client.subscribe(f"edgefleet/v1/{victim}/cmd", qos=1)
            raw.client.subscribe(f"edgefleet/v1/{intruder}/cmd", qos=1)
            time.sleep(0.3)
            # Publishing as the victim: refused by the broker (MQTT 5 PUBACK "not authorized").
            forged = make_envelope(victim, "results", {"results": []}, message_id=99)
            info = raw.client.publish(f"edgefleet/v1/{victim}/results", encode_message(forged), qos=1)
            info.wait_for_publish(10)
            assert wait_until(lambda: info.mid in raw.acks)
            assert raw.acks[info.mid].is_failure
            controller.send(
                make_envelope(victim, "cmd", {"command_id": "v1", "command": "ping"}, message_id=7)
            )
            controller.send(
                make_envelope(intruder, "cmd", {"command_id": "i1", "command": "ping"}, message_id=8)
            )
            assert wait_until(lambda: len(handled) == 1)
            assert wait_until(lambda: len(raw.messages) >= 1)
            time.sleep(0.5)
            assert controller.of_kind("results", victim) == []
        # The intruder only ever saw its own command; the victim got its own.
        assert [topic for topic, _ in raw.messages] == [f"edgefleet/v1/{intruder}/cmd"]
        assert body_of(handled[0], CommandBody).command_id == "v1"
    finally:
        raw.close()
        service.stop()


def test_wrong_identity_is_refused_and_data_stays_stored(
    mtls_broker: MosquittoBroker, pki: Pki, store: Store
) -> None:
    device, other = unique_device(), unique_device()
    fill_results(store, 10, batch=10)
    # Certificate of `other`, publishing as `device`: the ACL refuses every publish.
    service = SyncService(store, mtls_config(mtls_broker, pki, other), device)
    service.start()
    try:
        assert wait_until(lambda: service.state().refused_by_broker >= 1)
        assert store.outbox_backlog()["results"] == 10  # nothing refused was dropped
        assert "not authorized" in (service.uplink.counters.last_refusal or "").lower()
    finally:
        service.stop()


def test_untrusted_broker_certificate_is_refused(
    mtls_broker: MosquittoBroker, pki: Pki, store: Store, tmp_path: Path
) -> None:
    other_ca = make_pki(tmp_path / "other-pki")
    device = unique_device()
    config = mtls_config(mtls_broker, pki, device).model_copy(
        update={
            "tls": TlsConfig(
                ca_file=other_ca.ca_cert, cert_file=pki.client(device)[0], key_file=pki.client(device)[1]
            )
        }
    )
    service = SyncService(store, config, device)
    service.start()
    try:
        assert wait_until(lambda: service.state().connect_attempts >= 2)
        state = service.state()
        assert not state.connected
        assert "certificate verify failed" in (state.last_error or "")
    finally:
        service.stop()


def test_password_auth_with_acl(tmp_path: Path, store: Store) -> None:
    device = unique_device()
    users = {device: "s3cret", "controller": "ctl-pass"}
    with password_broker(tmp_path / "pw-broker", users) as broker:
        base = {
            "port": broker.port,
            "username": device,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            "end_to_end_ack": False,
        }
        bad = SyncService(store, SyncConfig.model_validate({**base, "password": "wrong"}), device)
        bad.start()
        try:
            assert wait_until(lambda: bad.state().connect_attempts >= 2)
            assert not bad.state().connected
            assert "refused" in (bad.state().last_error or "").lower()
        finally:
            bad.stop()
        fill_results(store, 100, batch=20)
        with Collector(
            broker, [f"edgefleet/v1/{device}/results"], username="controller", password="ctl-pass"
        ) as ctl:
            good = SyncService(store, SyncConfig.model_validate({**base, "password": "s3cret"}), device)
            good.start()
            try:
                assert ctl.wait_for(lambda: len(ctl.results()) >= 100)
            finally:
                good.stop()
        assert_exactly_once_in_order(ctl.results(), ["imu"], 100)
