"""``edgefleet demo``: broker, controller with dashboard and three agents on this machine."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a broker, the controller and three agents on real data (what `make demo` runs)",
        description="Start a broker (Mosquitto when installed, else embedded amqtt), the controller with "
        "its dashboard, and agents replaying the BasicMotions test data through the demo models. "
        "Prints the dashboard URL and a live summary; Ctrl-C stops everything.",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=4,
        help="number of agents (default 4; the fourth replays a sensor fault)",
    )
    parser.add_argument("--http-port", type=int, default=8080, help="dashboard port (default 8080; 0: any)")
    parser.add_argument(
        "--workdir", type=Path, help="where configs, logs and stores go (default: a temp dir)"
    )
    parser.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    parser.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="auto (default): Mosquitto when installed, else the embedded amqtt (demo extra)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgefleet.cli.extras import require_extra
    from edgefleet.demo import DemoFleet, DemoSettings

    # The controller runs as a child process: check its extra here, before starting anything.
    require_extra("controller", "`edgefleet demo` (it runs the controller)", ("fastapi", "uvicorn"))
    fleet = DemoFleet(
        DemoSettings(
            devices=args.devices,
            http_port=args.http_port,
            workdir=args.workdir,
            seconds=args.seconds,
            broker=args.broker,
        )
    )
    signal.signal(signal.SIGTERM, lambda *_: fleet.stop())
    try:
        fleet.start()
        fleet.watch()
    except KeyboardInterrupt:
        pass
    finally:
        fleet.shutdown()
    print("edgefleet demo: stopped")
    return 0
