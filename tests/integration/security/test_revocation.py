"""Attack: a stolen or retired device certificate keeps working. `edgefleet device revoke` puts
it on the CA's CRL, the shipped config's ``crlfile``; after a SIGHUP the broker refuses it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from edgefleet.cli.main import main
from edgefleet.cloud_sync.provision import load_ca
from edgefleet.cloud_sync.revocation import CRL_FILE, issued_serials, revoked_serials, write_crl
from tests.support.shipped_broker import CONTROLLERS, Client, ShippedBroker

pytestmark = pytest.mark.integration


def connect(broker: ShippedBroker, device_id: str) -> Client:
    cert, key = broker.device(device_id)
    return Client(device_id).with_certificate(broker.ca_cert, cert, key).connect(broker.device_port)


def test_a_revoked_device_is_refused_by_the_broker(
    broker: ShippedBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    stolen, honest = f"stolen-{tag}", f"honest-{tag}"
    before = connect(broker, stolen)
    assert before.connected.is_set()
    before.close()
    connect(broker, honest).close()

    assert main(["device", "revoke", stolen, "--ca-dir", str(broker.ca_dir)]) == 0
    assert "1 new" in capsys.readouterr().out
    assert set(issued_serials(broker.ca_dir, stolen)) <= set(revoked_serials(broker.ca_dir / CRL_FILE))
    broker.reload()

    seen = len(broker.log())
    after = connect(broker, stolen)
    still = connect(broker, honest)
    try:
        # TLS 1.3: the client learns of the refusal only as a dropped connection, never a CONNACK.
        assert not after.connected.is_set()
        assert after.connack is None
        assert "certificate verify failed" in broker.log()[seen:]
        assert still.connected.is_set()
    finally:
        after.close()
        still.close()
    # Revoking again adds nothing and keeps the old entries (the CRL is rebuilt, not replaced).
    assert main(["device", "revoke", stolen, "--ca-dir", str(broker.ca_dir)]) == 0
    assert "0 new" in capsys.readouterr().out
    assert main(["device", "crl", "--ca-dir", str(broker.ca_dir)]) == 0
    assert set(issued_serials(broker.ca_dir, stolen)) <= set(revoked_serials(broker.ca_dir / CRL_FILE))


def test_revoking_an_unknown_device_says_what_to_do(
    broker: ShippedBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["device", "revoke", "never-issued", "--ca-dir", str(broker.ca_dir)]) == 1
    err = capsys.readouterr().err
    assert "no certificate issued to 'never-issued'" in err
    assert "--cert" in err


def test_an_expired_crl_locks_everyone_out_until_it_is_re_signed(tmp_path: Path) -> None:
    """Why the CRL must be rotated (docs/security.md, "Revocation"): past its nextUpdate OpenSSL
    refuses every client certificate; `edgefleet device crl` and a reload bring them back."""
    with ShippedBroker(tmp_path / "broker", CONTROLLERS) as own:
        ca_key, ca_cert = load_ca(own.ca_dir)
        write_crl(ca_key, ca_cert, {}, own.ca_dir / CRL_FILE, days=0)  # nextUpdate = now
        time.sleep(1.5)
        own.reload()
        locked_out = connect(own, "innocent")
        locked_out.close()
        assert not locked_out.connected.is_set()
        assert main(["device", "crl", "--ca-dir", str(own.ca_dir)]) == 0
        own.reload()
        back = connect(own, "innocent")
        back.close()
        assert back.connected.is_set()
