"""Device credentials: a private key and CSR per device, or a whole development PKI.

Production: ``provision_device`` writes ``<id>.key`` (0600) and ``<id>.csr``; the fleet CA signs
the CSR (CN = device id, which the broker maps to the MQTT user name with
``use_identity_as_username``). Development (``dev_ca=True``): a self-signed CA is created once in
``ca_dir`` (never the device's folder: a CA key beside a device's files ends up on the device)
and signs the device certificate and a broker certificate for localhost. Names starting with
``controller`` are reserved for controller users and never issued to devices.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgefleet.cloud_sync.topics import validate_device_id
from edgefleet.errors import ConfigError

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "DEFAULT_CERT_DAYS",
    "RESERVED_PREFIX",
    "ProvisionResult",
    "check_not_reserved",
    "create_ca",
    "generate_key",
    "issue_certificate",
    "load_ca",
    "make_csr",
    "provision_device",
    "write_key",
    "write_pem",
]

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
DEFAULT_BROKER_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_CERT_DAYS = 825
MAX_CERT_DAYS = 3650
# Controllers log in as controller-1, controller-2, ... (docs/security.md): a device certificate
# with such a CN must not exist, whatever the broker's listener layout.
RESERVED_PREFIX = "controller"
_DAY = dt.timedelta(days=1)

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass
class ProvisionResult:
    device_id: str
    key: Path
    csr: Path
    cert: Path | None = None
    ca_cert: Path | None = None
    broker_cert: Path | None = None
    broker_key: Path | None = None
    created_ca: bool = False
    notes: list[str] = field(default_factory=list)


def generate_key() -> PrivateKey:
    """A P-256 key: small, fast on ARM boards, accepted by every MQTT broker's TLS stack."""
    return ec.generate_private_key(ec.SECP256R1())


def write_key(key: PrivateKey, path: Path) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)
    return path


def write_pem(obj: x509.Certificate | x509.CertificateSigningRequest, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    return path


def make_csr(device_id: str, key: PrivateKey) -> x509.CertificateSigningRequest:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, validate_device_id(device_id))])
    return x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())


def create_ca(
    common_name: str = "edgefleet dev CA", *, days: int = 3650
) -> tuple[PrivateKey, x509.Certificate]:
    key = generate_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(
    ca_key: PrivateKey,
    ca_cert: x509.Certificate,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    *,
    server_hosts: Sequence[str] = (),
    days: int = DEFAULT_CERT_DAYS,
) -> x509.Certificate:
    """Sign a client certificate (CN = device id), or a server one when ``server_hosts`` is given."""
    now = dt.datetime.now(dt.timezone.utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_hosts:
        names: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def load_ca(ca_dir: Path) -> tuple[PrivateKey, x509.Certificate]:
    key_path, cert_path = ca_dir / CA_KEY, ca_dir / CA_CERT
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot load the CA from {ca_dir} ({CA_KEY}, {CA_CERT}): {exc}",
            hint="pass --dev-ca to create a development CA there, or point --ca-dir at your CA",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key", hint="create the CA with --dev-ca")
    return key, cert


def check_not_reserved(device_id: str) -> str:
    if device_id.lower().startswith(RESERVED_PREFIX):
        raise ConfigError(
            f"device id {device_id!r} is reserved: names starting with {RESERVED_PREFIX!r} are "
            "controller users on the broker, and a device holding one could act as a controller",
            hint="choose another device id; controllers get a user name and password instead "
            "(docs/security.md, 'Controllers')",
        )
    return device_id


def _check_days(days: int) -> int:
    if not 1 <= days <= MAX_CERT_DAYS:
        raise ConfigError(
            f"certificate lifetime {days} days is out of range; expected 1 to {MAX_CERT_DAYS}",
            hint=f"pass --days N (default {DEFAULT_CERT_DAYS}); renew before it ends (docs/security.md)",
        )
    return days


def provision_device(
    device_id: str,
    out_dir: Path,
    *,
    ca_dir: Path | None = None,
    dev_ca: bool = False,
    broker_hosts: Sequence[str] = DEFAULT_BROKER_HOSTS,
    days: int = DEFAULT_CERT_DAYS,
) -> ProvisionResult:
    """Write the device key and CSR; with a CA (``ca_dir``, or a new dev CA) also its certificate."""
    from edgefleet.cloud_sync.revocation import CRL_FILE, record_issued, write_crl

    validate_device_id(device_id)
    check_not_reserved(device_id)
    _check_days(days)
    if dev_ca and ca_dir is None:
        raise ConfigError(
            "--dev-ca needs --ca-dir: the development CA's key must never be written beside the "
            f"device's files in {out_dir}",
            hint="pass --ca-dir ./creds/ca (a folder that stays off devices)",
        )
    if ca_dir is not None and ca_dir.resolve() == out_dir.resolve():
        raise ConfigError(
            f"--ca-dir and --out are the same folder ({out_dir}); the CA key would sit beside the "
            "device's key and be copied to the device with it",
            hint="keep the CA in its own folder, e.g. --ca-dir ./creds/ca --out ./creds/<device id>",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    csr = make_csr(device_id, key)
    result = ProvisionResult(
        device_id=device_id,
        key=write_key(key, out_dir / f"{device_id}.key"),
        csr=write_pem(csr, out_dir / f"{device_id}.csr"),
    )
    if ca_dir is None:
        result.notes.append(
            f"send {result.csr} to the fleet CA; install the signed certificate as {device_id}.crt"
        )
        return result
    if dev_ca and not (ca_dir / CA_KEY).exists():
        ca_key, ca_cert = create_ca()
        write_key(ca_key, ca_dir / CA_KEY)
        write_pem(ca_cert, ca_dir / CA_CERT)
        result.created_ca = True
        result.notes.append(f"created a development CA in {ca_dir} (keep {CA_KEY} off devices)")
    ca_key, ca_cert = load_ca(ca_dir)
    if not (ca_dir / CRL_FILE).exists():
        # The shipped broker configuration names a crlfile: an empty CRL lets it start.
        write_crl(ca_key, ca_cert, {}, ca_dir / CRL_FILE)
        result.notes.append(f"wrote an empty revocation list {ca_dir / CRL_FILE} (broker crlfile)")
    certificate = issue_certificate(ca_key, ca_cert, key.public_key(), device_id, days=days)
    record_issued(ca_dir, device_id, certificate.serial_number)
    result.cert = write_pem(certificate, out_dir / f"{device_id}.crt")
    result.ca_cert = out_dir / CA_CERT
    if result.ca_cert != ca_dir / CA_CERT:
        write_pem(ca_cert, result.ca_cert)
    if dev_ca:
        broker_key_path, broker_cert_path = ca_dir / "broker.key", ca_dir / "broker.crt"
        if not broker_cert_path.exists():
            broker_key = generate_key()
            write_key(broker_key, broker_key_path)
            write_pem(
                issue_certificate(
                    ca_key, ca_cert, broker_key.public_key(), broker_hosts[0], server_hosts=broker_hosts
                ),
                broker_cert_path,
            )
            result.notes.append(f"created a broker certificate for {', '.join(broker_hosts)} in {ca_dir}")
        result.broker_cert, result.broker_key = broker_cert_path, broker_key_path
    return result
