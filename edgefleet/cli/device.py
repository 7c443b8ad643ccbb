"""``edgefleet device``: device identity and credentials for the MQTT sync.

``device provision`` writes a private key and a CSR (CN = device id) for the fleet CA to sign;
with ``--dev-ca`` it also creates a development CA (once, in ``--ca-dir``) and signs the device
certificate and a broker certificate, ready for the example Mosquitto configuration in
``deploy/mosquitto/``. ``device revoke`` adds a device's certificates to the CA's revocation
list (the broker's ``crlfile``); ``device crl`` re-signs that list before it expires.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgefleet.cloud_sync.provision import DEFAULT_BROKER_HOSTS, DEFAULT_CERT_DAYS, provision_device
from edgefleet.cloud_sync.revocation import DEFAULT_CRL_DAYS, RevocationResult, refresh_crl, revoke

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "device",
        help="device credentials for the MQTT sync (keys, CSR, development CA)",
        description="Provision device credentials for mutual-TLS MQTT.",
    )
    commands = parser.add_subparsers(dest="device_command", metavar="SUBCOMMAND")
    provision = commands.add_parser(
        "provision",
        help="write a device key + CSR; with --dev-ca also a development CA and signed certificates",
    )
    provision.add_argument("--device-id", required=True, help="device id (certificate CN, MQTT user name)")
    provision.add_argument("--out", type=Path, required=True, help="directory for the device's files")
    provision.add_argument(
        "--ca-dir", type=Path, default=None, help="directory holding ca.key/ca.crt to sign with"
    )
    provision.add_argument(
        "--dev-ca",
        action="store_true",
        help="create a development CA in --ca-dir (required; never the device's folder) if missing, "
        "and a broker certificate",
    )
    provision.add_argument(
        "--days",
        type=int,
        default=DEFAULT_CERT_DAYS,
        help=f"device certificate lifetime in days (default {DEFAULT_CERT_DAYS}); renew before it ends",
    )
    provision.add_argument(
        "--broker-host",
        action="append",
        default=None,
        help=f"host/IP on the broker certificate (repeatable; default {', '.join(DEFAULT_BROKER_HOSTS)})",
    )
    provision.add_argument("--json", action="store_true", help="print the written paths as JSON")
    provision.set_defaults(handler=_provision)

    revoke_cmd = commands.add_parser(
        "revoke",
        help="revoke a device's certificates: adds them to <ca-dir>/ca.crl (the broker's crlfile)",
    )
    revoke_cmd.add_argument(
        "device_id", nargs="?", default=None, help="device id whose certificates to revoke"
    )
    revoke_cmd.add_argument("--ca-dir", type=Path, required=True, help="directory holding ca.key/ca.crt")
    revoke_cmd.add_argument(
        "--cert",
        type=Path,
        action="append",
        default=[],
        help="also revoke this certificate file (repeatable)",
    )
    revoke_cmd.add_argument(
        "--crl-days", type=int, default=DEFAULT_CRL_DAYS, help="days until the CRL must be re-signed"
    )
    revoke_cmd.set_defaults(handler=_revoke)

    crl_cmd = commands.add_parser(
        "crl", help="re-sign <ca-dir>/ca.crl with a new expiry (run before the current one passes)"
    )
    crl_cmd.add_argument("--ca-dir", type=Path, required=True, help="directory holding ca.key/ca.crt")
    crl_cmd.add_argument(
        "--crl-days", type=int, default=DEFAULT_CRL_DAYS, help="days until the CRL must be re-signed"
    )
    crl_cmd.set_defaults(handler=_crl)


def _provision(args: argparse.Namespace) -> int:
    result = provision_device(
        args.device_id,
        args.out,
        ca_dir=args.ca_dir,
        dev_ca=args.dev_ca,
        broker_hosts=tuple(args.broker_host or DEFAULT_BROKER_HOSTS),
        days=args.days,
    )
    paths = {
        name: str(value)
        for name in ("key", "csr", "cert", "ca_cert", "broker_cert", "broker_key")
        if (value := getattr(result, name)) is not None
    }
    if args.json:
        print(json.dumps({"device_id": result.device_id, **paths, "notes": result.notes}, indent=2))
        return 0
    for name, path in paths.items():
        print(f"{name:<12} {path}")
    for note in result.notes:
        print(f"note: {note}")
    if result.cert is not None and result.ca_cert is not None:
        print("\nagent config (sync section):\n")
        print("[sync]")
        print('host = "localhost"')
        print("port = 8883")
        print("[sync.tls]")
        print(f'ca_file = "{result.ca_cert.resolve()}"')
        print(f'cert_file = "{result.cert.resolve()}"')
        print(f'key_file = "{result.key.resolve()}"')
    return 0


def _print_crl(result: RevocationResult) -> None:
    print(f"crl          {result.crl}")
    print(f"revoked      {result.revoked_total} certificate(s), {len(result.newly_revoked)} new")
    print(f"next update  {result.next_update:%Y-%m-%d %H:%M} UTC (re-sign before: edgefleet device crl)")
    print("note: copy the CRL to the broker's crlfile and send it SIGHUP (or restart it) to apply")


def _revoke(args: argparse.Namespace) -> int:
    _print_crl(revoke(args.ca_dir, device_id=args.device_id, cert_files=args.cert, days=args.crl_days))
    return 0


def _crl(args: argparse.Namespace) -> int:
    _print_crl(refresh_crl(args.ca_dir, days=args.crl_days))
    return 0
