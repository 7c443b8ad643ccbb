"""Certificate revocation for the fleet CA: a ledger of issued certificates and a CRL.

Mosquitto checks client certificates against the listener's ``crlfile`` (re-read on SIGHUP), so
revoking a device is: add its certificates' serial numbers to ``ca.crl``, then reload the broker.
The CA directory keeps ``issued.json`` (device id -> serial numbers) so a device can be revoked
by id. A CRL has an end of validity (``next_update``); OpenSSL refuses every client once it has
passed, so ``refresh_crl`` must re-sign it before then (docs/security.md, "Revocation").
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgefleet.errors import ConfigError

__all__ = [
    "CRL_FILE",
    "DEFAULT_CRL_DAYS",
    "ISSUED_FILE",
    "RevocationResult",
    "issued_serials",
    "record_issued",
    "refresh_crl",
    "revoke",
    "revoked_serials",
    "write_crl",
]

CRL_FILE = "ca.crl"
ISSUED_FILE = "issued.json"
# The broker is the CRL's only reader and gets it pushed, so freshness is the operator's; a long
# validity keeps a forgotten re-sign from locking the whole fleet out.
DEFAULT_CRL_DAYS = 365


@dataclass(frozen=True)
class RevocationResult:
    crl: Path
    newly_revoked: tuple[int, ...]
    revoked_total: int
    next_update: dt.datetime


def _ledger(ca_dir: Path) -> dict[str, list[str]]:
    path = ca_dir / ISSUED_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the certificate ledger {path}: {exc}",
            hint="restore it from a backup of the CA directory",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object", hint="restore it from a backup of the CA directory")
    return {str(k): [str(s) for s in v] for k, v in data.items()}


def record_issued(ca_dir: Path, common_name: str, serial: int) -> None:
    """Remember that ``serial`` was issued to ``common_name`` (so ``revoke`` can find it by id)."""
    ledger = _ledger(ca_dir)
    ledger.setdefault(common_name, []).append(format(serial, "x"))
    path = ca_dir / ISSUED_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ledger, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def issued_serials(ca_dir: Path, common_name: str) -> list[int]:
    return [int(s, 16) for s in _ledger(ca_dir).get(common_name, [])]


def revoked_serials(crl_path: Path) -> dict[int, dt.datetime]:
    """Serial -> revocation time of every entry of an existing CRL (empty if there is none)."""
    if not crl_path.exists():
        return {}
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    return {entry.serial_number: entry.revocation_date_utc for entry in crl}


def write_crl(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    revoked: dict[int, dt.datetime],
    path: Path,
    *,
    days: int = DEFAULT_CRL_DAYS,
) -> dt.datetime:
    """Sign a CRL listing ``revoked``; returns its next_update."""
    now = dt.datetime.now(dt.timezone.utc)
    next_update = now + dt.timedelta(days=days)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(next_update)
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)
    return next_update


def _serial_of(cert_file: Path) -> int:
    try:
        return x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the certificate {cert_file}: {exc}", hint="pass the device's <id>.crt (PEM)"
        ) from None


def revoke(
    ca_dir: Path,
    *,
    device_id: str | None = None,
    cert_files: Iterable[Path] = (),
    days: int = DEFAULT_CRL_DAYS,
) -> RevocationResult:
    """Add every certificate issued to ``device_id`` (and ``cert_files``) to ``ca_dir``/ca.crl."""
    from edgefleet.cloud_sync.provision import load_ca

    ca_key, ca_cert = load_ca(ca_dir)
    serials = [_serial_of(path) for path in cert_files]
    if device_id is not None:
        found = issued_serials(ca_dir, device_id)
        if not found and not serials:
            raise ConfigError(
                f"no certificate issued to {device_id!r} is recorded in {ca_dir / ISSUED_FILE}",
                hint="pass --cert <id>.crt to revoke a certificate by its file",
            )
        serials += found
    if not serials:
        raise ConfigError("nothing to revoke", hint="pass a device id or --cert <id>.crt")
    crl_path = ca_dir / CRL_FILE
    revoked = revoked_serials(crl_path)
    now = dt.datetime.now(dt.timezone.utc)
    new = tuple(s for s in dict.fromkeys(serials) if s not in revoked)
    revoked.update(dict.fromkeys(new, now))
    next_update = write_crl(ca_key, ca_cert, revoked, crl_path, days=days)
    return RevocationResult(crl_path, new, len(revoked), next_update)


def refresh_crl(ca_dir: Path, *, days: int = DEFAULT_CRL_DAYS) -> RevocationResult:
    """Re-sign ``ca.crl`` with the same entries and a new next_update (run before it passes)."""
    from edgefleet.cloud_sync.provision import load_ca

    ca_key, ca_cert = load_ca(ca_dir)
    crl_path = ca_dir / CRL_FILE
    revoked = revoked_serials(crl_path)
    next_update = write_crl(ca_key, ca_cert, revoked, crl_path, days=days)
    return RevocationResult(crl_path, (), len(revoked), next_update)
