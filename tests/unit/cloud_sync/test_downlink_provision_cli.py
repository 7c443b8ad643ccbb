"""Downlink dispatch, provisioning and the `sync status` / `device provision` commands."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from edgefleet.agent.store import Store
from edgefleet.cli.main import main
from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.downlink import Downlink
from edgefleet.cloud_sync.protocol import Envelope, make_envelope
from edgefleet.cloud_sync.provision import provision_device
from edgefleet.cloud_sync.service import SyncState
from edgefleet.errors import ConfigError
from tests.support.sync_fixtures import fill_results, open_store

pytestmark = pytest.mark.unit

DEVICE = "dev-down"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "store.db")
    yield s
    s.close()


def _cmd(message_id: int, command: str = "ping") -> tuple[str, bytes]:
    env = make_envelope(
        DEVICE, "cmd", {"command_id": f"c{message_id}", "command": command}, message_id=message_id
    )
    return f"edgefleet/v1/{DEVICE}/cmd", encode_message(env)


def test_downlink_dispatches_dedups_and_survives_handler_errors(store: Store) -> None:
    seen: list[Envelope] = []

    def handler(env: Envelope) -> None:
        seen.append(env)
        if env.message_id == 3:
            raise RuntimeError("boom")

    downlink = Downlink(store, DEVICE, prefix="edgefleet/v1", max_bytes=4096)
    downlink.register("cmd", handler)
    downlink.on_message(*_cmd(1))
    downlink.on_message(*_cmd(1))
    downlink.on_message(*_cmd(3))
    downlink.on_message(
        f"edgefleet/v1/{DEVICE}/config",
        encode_message(make_envelope(DEVICE, "config", {"config_version": 1, "config": {}}, message_id=4)),
    )
    downlink.on_message(f"edgefleet/v1/{DEVICE}/cmd", b"junk")
    assert [e.message_id for e in seen] == [1, 3]
    c = downlink.counters
    assert (c.received, c.handled, c.duplicates, c.failed, c.unhandled, c.refused) == (5, 1, 1, 1, 1, 1)
    kinds = sorted(e["kind"] for e in store.query_events(limit=10))
    assert kinds == ["sync.downlink_failed", "sync.downlink_refused", "sync.downlink_unhandled"]
    with pytest.raises(ValueError, match="downlink kinds"):
        downlink.register("results", handler)


def test_downlink_refuses_messages_for_another_device(store: Store) -> None:
    downlink = Downlink(store, DEVICE, prefix="edgefleet/v1", max_bytes=4096)
    other = make_envelope("someone-else", "cmd", {"command_id": "x", "command": "ping"}, message_id=1)
    downlink.on_message("edgefleet/v1/someone-else/cmd", encode_message(other))
    assert downlink.counters.refused == 1
    assert store.query_events(kind="sync.downlink_refused")[0]["data"]["reason"] == "wrong_topic"


def test_provision_csr_only_then_dev_ca(tmp_path: Path) -> None:
    only = provision_device("dev-7", tmp_path / "csr-only")
    assert only.cert is None
    assert oct(only.key.stat().st_mode & 0o777) == "0o600"
    csr = x509.load_pem_x509_csr(only.csr.read_bytes())
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-7"
    assert csr.is_signature_valid

    ca_dir = tmp_path / "ca"
    first = provision_device("dev-8", tmp_path / "dev-8", ca_dir=ca_dir, dev_ca=True)
    second = provision_device("dev-9", tmp_path / "dev-9", ca_dir=ca_dir, dev_ca=True)
    assert first.created_ca
    assert not second.created_ca
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    for result in (first, second):
        assert result.cert is not None
        cert = x509.load_pem_x509_certificate(result.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == result.device_id
    assert first.broker_cert == second.broker_cert
    with pytest.raises(ConfigError, match="cannot load the CA"):
        provision_device("dev-10", tmp_path / "dev-10", ca_dir=tmp_path / "no-ca")


def test_cli_device_provision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "creds"
    ca = tmp_path / "ca"
    argv = [
        "device",
        "provision",
        "--device-id",
        "cli-dev",
        "--out",
        str(out),
        "--dev-ca",
        "--ca-dir",
        str(ca),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[sync.tls]" in text
    assert (out / "cli-dev.crt").exists()
    assert main(["device", "provision", "--device-id", "bad/id", "--out", str(out)]) == 1
    assert "invalid device id" in capsys.readouterr().err


def _agent_config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[device]\nid = "cli-dev"\n[model]\nbundle = "bundle"\n'
        '[[sources]]\ntype = "synthetic"\nname = "imu"\nchannels = 3\nrate_hz = 10\n'
        '[store]\npath = "store.db"\n[sync]\nport = 1883\n'
    )
    return path


def test_cli_sync_status_reads_store_and_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _agent_config(tmp_path)
    assert main(["sync", "status", "--config", str(config)]) == 0
    assert "has not run yet" in capsys.readouterr().out
    store = open_store(tmp_path / "store.db")
    fill_results(store, 30, batch=10)
    store.close()
    state = SyncState(
        device_id="cli-dev",
        broker="127.0.0.1:1883",
        protocol="mqtt5",
        running=True,
        connected=True,
        connected_since=time.time() - 5,
        bytes_sent_by_kind={"results": 1234},
        results_sent=70,
        last_ack_at=time.time(),
        last_acked_id=42,
        pid=os.getpid(),
    )
    (tmp_path / "store.db.sync.json").write_text(state.model_dump_json())
    assert main(["sync", "status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "running, connected since" in text
    assert "results 30" in text
    assert "results 1234 B" in text
    assert main(["sync", "status", "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["connected"] is True
    assert report["backlog"] == {"results": 30}
    assert report["state"]["last_acked_id"] == 42
    # A state file left by a dead process is not "running".
    (tmp_path / "store.db.sync.json").write_text(
        state.model_copy(update={"updated_at": 1.0}).model_dump_json()
    )
    assert main(["sync", "status", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False


def test_cli_sync_status_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "status", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "does not exist" in capsys.readouterr().err
