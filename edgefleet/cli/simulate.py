"""``edgefleet simulate``: many simulated devices in one process against a real broker."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run N simulated devices over real MQTT connections",
        description="Run N simulated devices in one process: real MQTT connections, the real protocol, "
        "synthetic results. For load tests and demos.",
    )
    parser.add_argument("--devices", type=int, default=10, help="number of devices (default 10)")
    parser.add_argument("--rate", type=float, default=1.0, help="results per second per device (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    parser.add_argument(
        "--protocol", choices=["mqtt5", "mqtt311"], default="mqtt5", help="MQTT version (default mqtt5)"
    )
    parser.add_argument("--telemetry-interval", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--id-prefix", default="sim", help="device ids are PREFIX-0000, PREFIX-0001, ...")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgefleet.simulate import FleetSimulator, SimulatorStats

    def report(stats: SimulatorStats) -> None:
        print(
            f"\rdevices {stats.connected}/{stats.devices} connected  messages {stats.messages_sent}  "
            f"results {stats.results_sent}  bytes {stats.bytes_sent}  commands {stats.commands_received}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    simulator = FleetSimulator(
        host=args.host,
        port=args.port,
        devices=args.devices,
        rate=args.rate,
        telemetry_interval=args.telemetry_interval,
        protocol=args.protocol,
        id_prefix=args.id_prefix,
        on_tick=report,
    )
    signal.signal(signal.SIGTERM, lambda *_: simulator.stop())
    try:
        stats = simulator.run(args.seconds)
    except KeyboardInterrupt:
        simulator.stop()
        stats = simulator.stats
    print(file=sys.stderr)
    print(
        f"simulated {stats.devices} devices: {stats.messages_sent} messages, {stats.results_sent} results, "
        f"{stats.bytes_sent} bytes, {stats.publish_errors} publish errors"
    )
    return 0
