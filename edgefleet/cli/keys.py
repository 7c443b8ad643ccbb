"""``edgefleet keys``: Ed25519 key pairs for signing model bundles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgefleet.cli.arguments import print_usage

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("keys", help="create bundle-signing key pairs")
    commands = group.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    generate = commands.add_parser(
        "generate",
        help="write a new Ed25519 key pair (bundle-signing.key, bundle-signing.pub) into a directory",
        description="Write a new Ed25519 key pair. Keep bundle-signing.key secret (it is written with "
        "mode 0600); list bundle-signing.pub in the devices' [ota] trusted_keys.",
    )
    generate.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the two files"
    )
    generate.set_defaults(handler=_generate)
    group.set_defaults(handler=lambda _args: print_usage(group))


def _generate(args: argparse.Namespace) -> int:
    from edgefleet.runtime.bundle_signing import generate_keys, key_id, load_trusted_keys

    private_path, public_path = generate_keys(args.out)
    (trusted,) = load_trusted_keys([public_path])
    print(f"private key: {private_path} (keep it secret; signs bundles)")
    print(f"public key:  {public_path} (key id {key_id(trusted.key)}; list it in [ota] trusted_keys)")
    return 0
