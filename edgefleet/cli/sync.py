"""``edgefleet sync``: the state of the MQTT sync of a device.

The sync runs inside the agent daemon; ``sync status`` reads what it last wrote to its state
file (``sync.state_file``, default ``<store path>.sync.json``) and the backlog straight from
the store, so it works whether the agent runs or not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

from edgefleet.cloud_sync.service import SyncState, read_state_file
from edgefleet.errors import EdgefleetError, StoreError

__all__ = ["register", "sync_status"]

STALE_AFTER_S = 10.0
"""A running sync rewrites its state every second; older than this, it is not running."""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "sync",
        help="MQTT sync state: connection, backlog, bytes sent",
        description="Inspect the device's MQTT sync to the fleet controller.",
    )
    commands = parser.add_subparsers(dest="sync_command", metavar="SUBCOMMAND")
    status = commands.add_parser(
        "status", help="connection state, backlog by kind, bytes sent, last acknowledgement"
    )
    status.add_argument("--config", type=Path, required=True, help="agent config file (TOML)")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_status)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sync_status(config_path: Path) -> dict[str, Any]:
    """Everything ``sync status`` shows, as a JSON-able dict."""
    from edgefleet.agent.config import load_config
    from edgefleet.agent.store import Store

    config = load_config(config_path)
    sync = config.sync
    store_path = Path(config.store.path)
    state_path = sync.state_path(store_path)
    state: SyncState | None = read_state_file(state_path)
    now = time.time()
    running = bool(
        state is not None
        and state.running
        and now - state.updated_at < STALE_AFTER_S
        and _pid_alive(state.pid)
    )
    backlog: dict[str, int] | None = None
    backlog_error: str | None = None
    if store_path.exists():
        try:
            with Store.open(store_path, config.store) as store:
                backlog = store.outbox_backlog()
        except StoreError as exc:
            backlog_error = exc.message
    else:
        backlog_error = f"no store at {store_path} yet"
    tls = "off" if sync.tls is None else ("mutual" if sync.tls.cert_file else "server-only")
    return {
        "device_id": config.device.id,
        "enabled": sync.enabled,
        "broker": f"{sync.host}:{sync.port}",
        "protocol": sync.protocol,
        "tls": tls,
        "state_file": str(state_path),
        "running": running,
        "connected": bool(running and state is not None and state.connected),
        "backlog": backlog if backlog is not None else (state.backlog if state is not None else {}),
        "backlog_error": backlog_error,
        "state": state.model_dump(mode="json") if state is not None else None,
    }


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    ago = max(0.0, time.time() - ts)
    stamp = dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{stamp} ({ago:.0f}s ago)"


def _kinds(values: dict[str, int], unit: str = "") -> str:
    if not values:
        return "none"
    return ", ".join(f"{kind} {count}{unit}" for kind, count in sorted(values.items()))


def _status(args: argparse.Namespace) -> int:
    try:
        report = sync_status(args.config)
    except EdgefleetError:
        raise
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
        return 0
    state = report["state"]
    lines = [
        ("device", report["device_id"]),
        ("broker", f"{report['broker']} ({report['protocol']}, TLS {report['tls']})"),
    ]
    if not report["enabled"]:
        lines.append(("sync", "disabled in the config (sync.enabled = false)"))
    elif state is None:
        lines.append(("sync", f"has not run yet (no state file {report['state_file']})"))
    elif report["running"]:
        if report["connected"]:
            lines.append(
                ("sync", f"running, connected since {_when(state['connected_since'])}, pid {state['pid']}")
            )
        else:
            lines.append(
                ("sync", f"running, NOT connected ({state['connect_attempts']} attempts), pid {state['pid']}")
            )
    else:
        lines.append(("sync", f"not running (last state written {_when(state['updated_at'])})"))
    backlog = report["backlog"]
    lines.append(
        ("backlog", _kinds(backlog) + (f"  [{report['backlog_error']}]" if report["backlog_error"] else ""))
    )
    if state is not None:
        lines.append(
            (
                "awaiting ack",
                f"{state.get('awaiting_ack', 0)} rows sent, not yet acknowledged by the controller; "
                f"resent {state.get('resent', 0)} (no ack in time), "
                f"{state.get('resent_no_subscribers', 0)} (broker: no matching subscribers, "
                f"{state.get('no_subscribers', 0)} such PUBACKs in all)",
            )
        )
        lines.append(("bytes sent", _kinds(state["bytes_sent_by_kind"], " B")))
        lines.append(("messages sent", _kinds(state["messages_sent_by_kind"])))
        lines.append(("results sent", str(state["results_sent"])))
        last = _when(state["last_ack_at"])
        if state["last_acked_id"] is not None:
            last += f", outbox row {state['last_acked_id']}"
        lines.append(("last ack", last))
        if state["last_error"]:
            lines.append(("last error", state["last_error"]))
        if state["refused_by_broker"]:
            lines.append(("refused", f"{state['refused_by_broker']} publishes refused by the broker (ACL?)"))
        down = state["downlink"]
        if down:
            lines.append(("downlink", f"{down.get('handled', 0)} handled, {down.get('refused', 0)} refused"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0
