"""``edgefleet agent run|status``: the device daemon and its health check."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["register"]

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "agent",
        help="run the on-device agent, or check on a running one",
        description="The on-device agent: sources -> model -> local store -> sync.",
    )
    sub = parser.add_subparsers(dest="agent_command", metavar="SUBCOMMAND")

    run = sub.add_parser(
        "run",
        help="run the agent in the foreground (systemd Type=notify service)",
        description="Run the agent until SIGTERM/SIGINT. SIGHUP reloads the config file.",
    )
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="agent config (TOML)")
    run.add_argument(
        "--max-seconds",
        type=float,
        metavar="S",
        help="stop on its own after S seconds, draining as on SIGTERM (tests, benchmarks)",
    )
    run.add_argument(
        "--until-sources-finish",
        action="store_true",
        help="stop once every source has finished (a replay without loop), after inferring everything",
    )
    run.add_argument(
        "--stop-timeout",
        type=float,
        metavar="S",
        help="bound on the shutdown drain in seconds (default: device.stop_timeout_s, else 10)",
    )
    run.set_defaults(handler=_run)

    status = sub.add_parser(
        "status",
        help="show the running agent's model, throughput, latency, drops, store and sync backlog",
        description="Reads the status file the running agent refreshes. Exits 0 when the agent is "
        f"running and healthy, {EXIT_UNHEALTHY} when it runs but is unhealthy, {EXIT_NOT_RUNNING} "
        "when it is not running - usable as a container healthcheck.",
    )
    status.add_argument("--config", required=True, type=Path, metavar="FILE", help="agent config (TOML)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="read the status file from DIR instead of the config's device.state_dir",
    )
    status.set_defaults(handler=_status)


def _run(args: argparse.Namespace) -> int:
    from edgefleet.agent.service import AgentService, RunLimits

    limits = RunLimits(
        max_seconds=args.max_seconds,
        until_sources_finish=args.until_sources_finish,
        stop_timeout_s=args.stop_timeout,
    )
    return AgentService(args.config, limits=limits).run()


def _status(args: argparse.Namespace) -> int:
    from edgefleet.agent.status import STATUS_FILENAME, StatusUnavailableError, assess_status, read_status

    config, config_error = _config_for_status(args.config)
    # The store is not opened here: the status file carries its facts, and this command may
    # run as another user (root) whose files in the state directory the agent could not use.
    state_dir = args.state_dir or (config.device.state_dir if config is not None else None)
    if state_dir is None:
        state_dir = _state_dir_from_raw(args.config)
    path = Path(state_dir) / STATUS_FILENAME
    try:
        status = read_status(path)
    except StatusUnavailableError as exc:
        if args.json:
            print(json.dumps({"running": False, "healthy": False, "problems": [exc.message]}))
        else:
            print(f"agent: not running\n  {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    verdict = assess_status(status)
    store_facts = status.get("store") if isinstance(status.get("store"), dict) else None
    warnings = list(status.get("warnings") or [])
    if config_error is not None:
        # The running agent keeps its last good config; the file on disk is what is broken.
        warnings.append(f"config file is invalid now (a reload would be refused): {config_error}")
    status["warnings"] = warnings
    if args.json:
        out = dict(status)
        out.update(running=verdict.running, healthy=verdict.healthy, problems=verdict.problems)
        print(json.dumps(out, indent=2, sort_keys=True, default=str))
    else:
        print(_render(status, verdict.running, verdict.healthy, verdict.problems, store_facts))
    if not verdict.running:
        return EXIT_NOT_RUNNING
    return EXIT_OK if verdict.healthy else EXIT_UNHEALTHY


def _config_for_status(path: Path) -> tuple[Any | None, str | None]:
    """The config, or (None, why) when it is invalid: status must still work then."""
    from edgefleet.agent.config import load_config
    from edgefleet.errors import ConfigError

    try:
        return load_config(path), None
    except ConfigError as exc:
        if not path.exists():
            raise
        return None, exc.message.splitlines()[0]


def _state_dir_from_raw(path: Path) -> Path:
    """``device.state_dir`` read leniently from a config that does not validate."""
    from edgefleet.agent.config import DeviceConfig

    env = os.environ.get("EDGEFLEET_DEVICE__STATE_DIR")
    if env:
        return Path(env)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8")).get("device", {}).get("state_dir")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError):
        raw = None
    if isinstance(raw, str):
        state = Path(raw)
        return state if state.is_absolute() else path.resolve().parent / state
    default: Path = DeviceConfig.model_fields["state_dir"].default
    return default


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _ms(value: object) -> str:
    return f"{value:.2f} ms" if isinstance(value, int | float) else "-"


def _render(
    status: dict[str, Any],
    running: bool,
    healthy: bool,
    problems: list[str],
    store_facts: dict[str, Any] | None,
) -> str:
    lines: list[str] = []
    verdict = "healthy" if healthy else "UNHEALTHY"
    if running:
        lines.append(f"agent:      {status.get('state', '?')} (pid {status.get('pid')}), {verdict}")
    else:
        lines.append(
            f"agent:      NOT RUNNING (last state {status.get('state', '?')}, pid {status.get('pid')})"
        )
    lines.append(f"device:     {status.get('device_id')}")
    model = status.get("model") or {}
    if model.get("name"):
        phase = model.get("state")
        loaded = phase if phase in ("loaded", "closed", "loading") else f"NOT LOADED: {model.get('error')}"
        lines.append(f"model:      {model['name']} {model.get('version')} ({loaded})")
    else:
        lines.append(f"model:      none ({model.get('error') or 'loading'})")
    started = status.get("started_at")
    updated = status.get("updated_at")
    if isinstance(started, int | float):
        if running:
            lines.append(f"uptime:     {_duration(time.time() - started)}")
        elif isinstance(updated, int | float):
            ago = _duration(time.time() - updated)
            lines.append(f"ran for:    {_duration(updated - started)} (last update {ago} ago)")
    health = status.get("health") or {}
    totals = status.get("totals") or {}
    latency = health.get("latency_ms") or status.get("latency_ms") or {}
    throughput = health.get("throughput_wps")
    lines.append(
        f"throughput: {throughput:.1f} windows/s" if isinstance(throughput, int | float) else "throughput: -"
    )
    lines.append(
        f"latency:    p50 {_ms(latency.get('p50'))}  p95 {_ms(latency.get('p95'))}  "
        f"p99 {_ms(latency.get('p99'))}"
    )
    lines.append(
        f"totals:     {totals.get('windows_inferred', 0)} windows inferred, "
        f"{totals.get('results_stored', 0)} results stored, "
        f"{totals.get('inference_errors', 0)} inference errors"
    )
    streams = status.get("streams") or health.get("streams") or {}
    for name, stream in sorted(streams.items()):
        fill = stream.get("fill_ratio", 0.0) * 100
        lines.append(
            f"stream:     {name}: buffer {fill:.0f}% full, {stream.get('dropped', 0)} dropped, "
            f"{stream.get('bad_samples', 0)} bad samples"
            + (f", ERROR {stream['source_error']}" if stream.get("source_error") else "")
        )
    lines += _drift_lines(status)
    fallback = status.get("fallback")
    if isinstance(fallback, dict):
        lines.append(f"fallback:   {_fallback_line(fallback)}")
    ota = status.get("ota")
    if isinstance(ota, dict) and (ota.get("offer_id") or ota.get("state") != "idle"):
        parts = [
            str(ota.get("state")),
            ota.get("bundle"),
            ota.get("chunks"),
            ota.get("via") and f"via {ota['via']}",
        ]
        detail = f" ({ota['detail']})" if ota.get("detail") else ""
        lines.append("ota:        " + " ".join(str(p) for p in parts if p) + detail)
    facts = store_facts or {}
    if facts.get("size_bytes") is not None:
        backlog = facts.get("outbox_backlog") or {}
        backlog_text = ", ".join(f"{k} {v}" for k, v in sorted(backlog.items())) or "empty"
        lines.append(
            f"store:      {facts.get('path')}: {_bytes(facts.get('size_bytes'))}, "
            f"{facts.get('results')} results"
        )
        lines.append(f"writes:     {_writes_line(facts)}")
        lines.append(
            f"sync:       backlog {facts.get('unsynced_results')} unsynced results; outbox {backlog_text}"
        )
    sync = status.get("sync") or {}
    if sync:
        lines.append(f"sync state: {_sync_line(sync)}")
    for problem in problems:
        lines.append(f"problem:    {problem}")
    for warning in status.get("warnings") or []:
        lines.append(f"warning:    {warning}")
    return "\n".join(lines)


def _writes_line(facts: dict[str, Any]) -> str:
    """The agent's device writes per hour: the whole process, and the store's share of it."""
    process = facts.get("process_bytes_written_per_hour")
    store = f"store {_bytes(facts.get('bytes_written_per_hour'))}/h"
    if process is None:
        return f"{store} (the process total is not accounted on this system)"
    return f"{_bytes(process)}/h to the device by the agent process ({store})"


def _fallback_line(stats: dict[str, Any]) -> str:
    """The cloud fallback router's figures (``CloudRouter.fallback_stats``) on one line."""
    limit = stats.get("max_requests_per_min") or "no limit"
    byte_limit = stats.get("max_bytes_per_hour")
    reasons = stats.get("reasons") or {}
    reason_text = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
    return (
        f"{stats.get('sent', 0)} sent, {stats.get('answered_cloud', 0)} answered by the cloud "
        f"(p50 {_ms(stats.get('latency_p50_ms'))}, p95 {_ms(stats.get('latency_p95_ms'))}), "
        f"{stats.get('timeouts', 0)} timed out, {stats.get('offline', 0)} offline, "
        f"{stats.get('budget_refused', 0)} over budget; budget {stats.get('requests_last_min', 0)}/{limit} "
        f"requests a minute, {_bytes(stats.get('bytes_last_hour'))}/"
        f"{_bytes(byte_limit) if byte_limit else 'no limit'} an hour; reasons: {reason_text}"
        + _offload_text(stats)
    )


def _offload_text(stats: dict[str, Any]) -> str:
    """Capacity offload (edgefleet.agent.fallback_offload): sent instead of inferred, given back."""
    if "offloaded" not in stats:
        return ""
    dropped = stats.get("given_back_dropped", 0)
    return (
        f"; {stats['offloaded']} offloaded, {stats.get('given_back', 0)} given back to the edge "
        f"({stats.get('given_back_waiting', 0)} waiting" + (f", {dropped} dropped)" if dropped else ")")
    )


def _sync_line(sync: dict[str, Any]) -> str:
    if sync.get("running") is False:
        return "disabled" if not sync.get("enabled") else "not running"
    keys = ("state", "connected", "last_error")
    shown = [f"{k}={sync[k]}" for k in keys if k in sync and sync[k] is not None]
    return ", ".join(shown) or json.dumps(sync, default=str)[:200]


def _drift_lines(status: dict[str, Any]) -> list[str]:
    from edgefleet.cli.drift import drift_status_lines

    return drift_status_lines(status)
