"""``edgefleet ota push|status|rollback``: staged campaigns, run from the controller host.

These commands work on the controller's database (``--config`` / ``--database-url``, as
``edgefleet controller devices``): ``push`` stores a campaign and the running controller's campaign
runner (edgefleet/controller/ota_campaigns.py) makes the offers, stage by stage; ``rollback`` marks
it, and the runner sends ``rollback_model`` to the devices already updated.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from edgefleet.cli.arguments import positive_float
from edgefleet.cli.controller import _add_config, _open

__all__ = ["register_campaign_commands"]


def _stages(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of percentages; expected e.g. 5,25,100"
        ) from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def register_campaign_commands(commands: argparse._SubParsersAction[Any]) -> None:
    push = commands.add_parser(
        "push",
        help="start a staged campaign: offer a bundle to devices, stage by stage (controller host)",
        description="Register BUNDLE (a bundle .tar, or NAME@VERSION of a registered one) and start a "
        "campaign: the running controller offers it to the first stage's devices, waits until each "
        "has validated it and passed probation (`done`), then offers the next stage. More than "
        "--max-failures failed devices halt the campaign.",
    )
    push.add_argument("bundle", metavar="BUNDLE", help="bundle .tar path, or NAME@VERSION already registered")
    target = push.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", action="append", metavar="ID", nargs="+", help="these device ids")
    target.add_argument("--tag", metavar="TAG", help="the devices whose [device] tags include TAG")
    target.add_argument("--all", action="store_true", help="every device the controller knows")
    push.add_argument(
        "--stages",
        type=_stages,
        default=[100.0],
        help="cumulative percentages of the targets per stage, ending at 100 (default 100: one stage)",
    )
    push.add_argument(
        "--shadow",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds each device runs the candidate beside its active model before activating it"
        " ([ota] shadow_* on the device decide; 0: no shadow run)",
    )
    push.add_argument(
        "--max-failures",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="failed devices tolerated; one more halts the campaign (default 0)",
    )
    push.add_argument(
        "--device-timeout",
        type=positive_float,
        default=900.0,
        metavar="SECONDS",
        help="a device with no final state this long after its offer counts as failed (default 900)",
    )
    push.add_argument("--json", action="store_true", help="print the campaign as JSON")
    _add_config(push)
    push.set_defaults(handler=_push)

    status = commands.add_parser("status", help="OTA campaigns and each device's state (controller host)")
    status.add_argument("campaign", nargs="?", metavar="CAMPAIGN", help="one campaign id (default: all)")
    status.add_argument("--json", action="store_true", help="print JSON")
    _add_config(status)
    status.set_defaults(handler=_status)

    rollback = commands.add_parser(
        "rollback",
        help="roll a campaign back: rollback_model to every device that activated it (controller host)",
    )
    rollback.add_argument("campaign", metavar="CAMPAIGN", help="campaign id")
    rollback.add_argument("--json", action="store_true", help="print the campaign as JSON")
    _add_config(rollback)
    rollback.set_defaults(handler=_rollback)


def _push(args: argparse.Namespace) -> int:
    from edgefleet.controller.ota_campaign_schemas import CampaignRequest
    from edgefleet.controller.ota_campaigns import create_campaign
    from edgefleet.controller.ota_hosting import OtaHost

    bundle = args.bundle
    if "@" not in bundle or Path(bundle).exists():
        bundle = str(Path(bundle).resolve())  # the controller reads it from its own working directory
    request = CampaignRequest(
        bundle=bundle,
        devices=[d for group in args.device or [] for d in group],
        tag=args.tag,
        all=args.all,
        stages=args.stages,
        shadow_s=max(0.0, args.shadow),
        max_failures=args.max_failures,
        device_timeout_s=args.device_timeout,
    )
    database = _open(args)
    try:
        # Registering only reads the file and writes the database: nothing is published from here.
        host = OtaHost(database, lambda _topic, _payload: False)
        view = create_campaign(database, host, request, created_by="cli")
    finally:
        database.close()
    if args.json:
        print(json.dumps(view.model_dump(mode="json"), indent=2))
        return 0
    c = view.campaign
    print(
        f"campaign {c.campaign_id}: {c.bundle_name} {c.bundle_version} to {len(view.devices)} device(s),"
        f" stages {','.join(f'{s:g}' for s in c.stages)}%"
    )
    print(
        "the running controller offers the first stage now; follow it with `edgefleet ota status "
        f"{c.campaign_id}`"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from edgefleet.controller.ota_campaigns import campaign_view

    database = _open(args)
    try:
        ids = [args.campaign] if args.campaign else [c.campaign_id for c in database.list_campaigns()]
        views = [campaign_view(database, cid) for cid in ids]
    finally:
        database.close()
    if args.json:
        doc: Any = [v.model_dump(mode="json") for v in views]
        print(json.dumps(doc[0] if args.campaign else doc, indent=2))
        return 0
    if not views:
        print("no campaigns")
        return 0
    for view in views:
        c = view.campaign
        counts = ", ".join(f"{k} {v}" for k, v in view.counts.items() if v)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c.created_at))
        print(
            f"{c.campaign_id}  {c.status:<12} {c.bundle_name}@{c.bundle_version}  stage"
            f" {c.stage + 1}/{len(c.stages)} ({c.stages[c.stage]:g}%)  {counts}  {stamp} UTC"
        )
        if c.detail:
            print(f"    {c.detail}")
        if args.campaign:
            for d in view.devices:
                outcome = d.outcome or ("offered" if d.offer_id else "pending")
                print(
                    f"    {d.device_id:<24} stage {d.stage + 1}  {outcome:<8} {d.state or '-':<12}"
                    f" {d.detail or ''}"
                )
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from edgefleet.controller.ota_campaigns import request_rollback

    database = _open(args)
    try:
        view = request_rollback(database, args.campaign)
    finally:
        database.close()
    if args.json:
        print(json.dumps(view.model_dump(mode="json"), indent=2))
        return 0
    print(
        f"campaign {args.campaign}: rollback requested; the running controller sends rollback_model to"
        " every device that activated it"
    )
    return 0
