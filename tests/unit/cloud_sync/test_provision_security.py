"""Provisioning rules that keep credentials safe: reserved controller names, no CA key beside a
device's files, certificate lifetime, the ledger and CRL that `device revoke` relies on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from edgefleet.cli.main import main
from edgefleet.cloud_sync.provision import provision_device
from edgefleet.cloud_sync.revocation import CRL_FILE, issued_serials, revoke, revoked_serials
from edgefleet.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["controller", "controller-1", "Controller-2", "controllers"])
def test_controller_names_are_reserved(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="reserved") as info:
        provision_device(name, tmp_path / "out", ca_dir=tmp_path / "ca", dev_ca=True)
    assert info.value.hint
    assert "another device id" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_controller_name_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["device", "provision", "--device-id", "controller-1", "--out", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "is reserved" in capsys.readouterr().err


def test_dev_ca_needs_its_own_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--dev-ca needs --ca-dir"):
        provision_device("dev-1", tmp_path / "dev-1", dev_ca=True)
    with pytest.raises(ConfigError, match="same folder"):
        provision_device("dev-1", tmp_path / "dev-1", ca_dir=tmp_path / "dev-1", dev_ca=True)
    assert not list(tmp_path.rglob("ca.key"))
    result = provision_device("dev-1", tmp_path / "dev-1", ca_dir=tmp_path / "ca", dev_ca=True)
    assert (tmp_path / "ca" / "ca.key").exists()
    assert sorted(p.name for p in (tmp_path / "dev-1").iterdir()) == [
        "ca.crt",
        "dev-1.crt",
        "dev-1.csr",
        "dev-1.key",
    ]
    assert result.created_ca


def test_lifetime_is_a_flag_and_bounded(tmp_path: Path) -> None:
    result = provision_device("dev-2", tmp_path / "dev-2", ca_dir=tmp_path / "ca", dev_ca=True, days=30)
    assert result.cert is not None
    cert = x509.load_pem_x509_certificate(result.cert.read_bytes())
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=30)
    with pytest.raises(ConfigError, match="out of range"):
        provision_device("dev-3", tmp_path / "dev-3", ca_dir=tmp_path / "ca", days=0)
    argv = ["device", "provision", "--device-id", "dev-4", "--out", str(tmp_path / "dev-4")]
    assert main([*argv, "--ca-dir", str(tmp_path / "ca"), "--days", "7"]) == 0


def test_ledger_crl_and_revocation_by_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    first = provision_device("dev-5", tmp_path / "a", ca_dir=ca, dev_ca=True)
    second = provision_device("dev-5", tmp_path / "b", ca_dir=ca)  # renewed: a second certificate
    assert revoked_serials(ca / CRL_FILE) == {}  # an empty CRL exists from the start
    serials = issued_serials(ca, "dev-5")
    assert len(serials) == 2
    assert second.cert is not None
    assert first.cert is not None
    only_old = revoke(ca, cert_files=[first.cert])
    assert only_old.newly_revoked == (serials[0],)
    both = revoke(ca, device_id="dev-5")
    assert both.newly_revoked == (serials[1],)
    assert set(revoked_serials(ca / CRL_FILE)) == set(serials)
    crl = x509.load_pem_x509_crl((ca / CRL_FILE).read_bytes())
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.crt").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
