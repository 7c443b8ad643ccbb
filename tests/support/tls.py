"""A throw-away PKI for TLS tests: CA, broker certificate, device/controller client certificates.

Built with edgefleet's own provisioning code, so the tests exercise what users run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgefleet.cloud_sync.provision import (
    create_ca,
    generate_key,
    issue_certificate,
    write_key,
    write_pem,
)


@dataclass
class Pki:
    root: Path
    ca_cert: Path
    ca_key: Path
    broker_cert: Path
    broker_key: Path

    def client(self, common_name: str) -> tuple[Path, Path]:
        """(cert, key) of a client certificate with CN ``common_name``, signed by this CA."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        cert_path, key_path = self.root / f"{common_name}.crt", self.root / f"{common_name}.key"
        if not cert_path.exists():
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
            assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
            ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
            key = generate_key()
            write_key(key, key_path)
            write_pem(issue_certificate(ca_key, ca_cert, key.public_key(), common_name), cert_path)
        return cert_path, key_path


def make_pki(root: Path, *, broker_hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = create_ca("edgefleet test CA")
    broker_key = generate_key()
    broker_cert = issue_certificate(
        ca_key, ca_cert, broker_key.public_key(), broker_hosts[0], server_hosts=broker_hosts
    )
    return Pki(
        root=root,
        ca_cert=write_pem(ca_cert, root / "ca.crt"),
        ca_key=write_key(ca_key, root / "ca.key"),
        broker_cert=write_pem(broker_cert, root / "broker.crt"),
        broker_key=write_key(broker_key, root / "broker.key"),
    )
