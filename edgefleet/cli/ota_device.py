"""``edgefleet ota install BUNDLE --config FILE``: install a bundle on this device's running agent.

The bundle goes through the agent's own installer (signature, validation in a separate process,
A/B slot, hot swap, probation), exactly as an offer from the controller does; this command hands
it over (:mod:`edgefleet.agent.ota_local`) and prints each state until a final one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edgefleet.cli.arguments import positive_float

__all__ = ["register_device_commands"]

EXIT_OK = 0
EXIT_FAILED = 1


def register_device_commands(commands: argparse._SubParsersAction[Any]) -> None:
    install = commands.add_parser(
        "install",
        help="install a model bundle on this device's running agent (verify, validate, swap, probation)",
        description="Hand a bundle (directory or .tar) to the running agent of --config, which checks its "
        "signature against [ota] trusted_keys, validates it in a separate process, writes it to the "
        "inactive model slot, swaps it in without stopping the streams and watches it on probation "
        "(rolled back by itself if it regresses). Prints each state; exits 0 when the new model is "
        "committed (done), 1 when it was refused, failed or rolled back.",
    )
    install.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle directory or .tar")
    install.add_argument("--config", required=True, type=Path, metavar="FILE", help="agent config (TOML)")
    install.add_argument(
        "--allow-downgrade", action="store_true", help="accept a version older than the active one"
    )
    install.add_argument(
        "--timeout",
        type=positive_float,
        default=900.0,
        metavar="S",
        help="give up waiting after S seconds (default 900; the install goes on in the agent)",
    )
    install.set_defaults(handler=_install)


def _install(args: argparse.Namespace) -> int:
    from edgefleet.agent.config import load_config
    from edgefleet.agent.ota_local import pid_alive, submit, wait_for_final
    from edgefleet.agent.status import STATUS_FILENAME, StatusUnavailableError, read_status
    from edgefleet.errors import EdgefleetError

    config = load_config(args.config)
    state_dir = config.device.state_dir
    bundle = Path(args.bundle)
    if not bundle.exists():
        raise EdgefleetError(f"bundle {bundle} does not exist", hint="pass a bundle directory or its .tar")
    try:
        status = read_status(state_dir / STATUS_FILENAME)
    except StatusUnavailableError:
        status = {}
    pid = status.get("pid")
    if status.get("state") not in ("running", "reloading") or not pid_alive(pid):
        raise EdgefleetError(
            f"no agent is running for {args.config} (status file in {state_dir})",
            hint="start it (`edgefleet agent run --config FILE` or its service): the running agent"
            " installs the bundle",
        )
    request_id = submit(state_dir, bundle, allow_downgrade=args.allow_downgrade)
    print(f"install {request_id}: handed {bundle} to agent pid {pid}", flush=True)

    def show(state: dict[str, Any]) -> None:
        detail = state.get("detail")
        print(f"{state.get('state')}" + (f": {detail}" if detail else ""), flush=True)

    final = wait_for_final(
        state_dir, request_id, alive=lambda: pid_alive(pid), timeout_s=args.timeout, on_state=show
    )
    if final is None:
        print(
            f"error: no final state for {request_id}: the agent stopped or --timeout passed "
            f"(hint: `edgefleet agent status --config {args.config}` shows the model it runs)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK if final.get("state") == "done" else EXIT_FAILED
