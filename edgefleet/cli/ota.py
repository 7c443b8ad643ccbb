"""``edgefleet ota``: over-the-air model updates (on the device: ``ota install``)."""

from __future__ import annotations

import argparse
from typing import Any

from edgefleet.cli.arguments import print_usage
from edgefleet.cli.ota_campaigns import register_campaign_commands
from edgefleet.cli.ota_device import register_device_commands

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    group = subparsers.add_parser("ota", help="over-the-air model updates")
    commands = group.add_subparsers(dest="ota_command", metavar="SUBCOMMAND")
    register_device_commands(commands)
    register_campaign_commands(commands)  # controller side: push, status, rollback
    group.set_defaults(handler=lambda _args: print_usage(group))
