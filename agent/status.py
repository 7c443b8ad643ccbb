"""The agent's status file: a small JSON snapshot another process can read.

The running agent rewrites ``agent-status.json`` in its state directory every
health interval (atomically: write a temp file, then rename). ``edgefleet agent
status`` reads it and judges liveness: the recorded pid must be alive and the file
fresh (younger than three intervals), and the agent must call itself healthy.
That makes the command usable as a container healthcheck.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgefleet import __version__
from edgefleet.errors import EdgefleetError

if TYPE_CHECKING:
    from edgefleet.agent.health import HealthReport, StreamHealth

__all__ = [
    "STATUS_FILENAME",
    "Assessment",
    "StatusUnavailableError",
    "agent_snapshot",
    "assess_status",
    "read_status",
    "status_line",
    "store_section",
    "sync_section",
    "write_status",
]

STATUS_FILENAME = "agent-status.json"
STATUS_SCHEMA = 1
# The file counts as stale after this many missed refreshes.
_STALE_INTERVALS = 3.0
_MIN_STALE_S = 10.0


class StatusUnavailableError(EdgefleetError):
    """No readable status file: the agent never ran here, or it is another state dir."""


def status_line(state: str, model: dict[str, Any], report: HealthReport | None, problems: int) -> str:
    """One line for systemd's STATUS=: state, model, throughput, problems."""
    parts = [state]
    if model.get("name"):
        loaded = "" if model.get("loaded") else " (not loaded)"
        parts.append(f"model {model['name']} {model['version']}{loaded}")
    if report is not None:
        parts.append(f"{report.throughput_wps:.1f} windows/s")
    if problems:
        parts.append(f"{problems} problem(s)")
    return "; ".join(parts)


def store_section(path: Path | None, report: HealthReport | None) -> dict[str, Any]:
    """The status file's ``store`` part, as of the last health sample: `agent status` reads the
    store's facts from here rather than opening the database itself (it may run as another
    user, e.g. root)."""
    return {
        "path": str(path) if path is not None else None,
        "size_bytes": report.store_size_bytes if report is not None else None,
        "results": report.store_results if report is not None else None,
        "unsynced_results": report.store_unsynced_results if report is not None else None,
        "outbox_backlog": dict(report.outbox_backlog) if report is not None else {},
        "bytes_written_per_hour": report.store_bytes_written_per_hour if report is not None else None,
        # The whole process (status/sync files too): `store stats` cannot read another's counters.
        "process_bytes_written_per_hour": report.process_bytes_written_per_hour if report else None,
        "process_bytes_written_total": report.process_bytes_written_total if report else None,
    }


def sync_section(sync: Any | None, *, enabled: bool) -> dict[str, Any]:
    """The status file's ``sync`` part: the running sync service's state, or why there is none."""
    if sync is None:
        return {"enabled": enabled, "running": False}
    try:
        state = sync.state()
    except Exception as exc:  # a sync that cannot report must not stop the status file
        return {"error": str(exc)}
    result: dict[str, Any] = state.model_dump(mode="json") if hasattr(state, "model_dump") else state
    return result


def agent_snapshot(
    agent: Any, *, state: str, reloads: int, report: HealthReport | None, streams: dict[str, StreamHealth]
) -> dict[str, Any]:
    """What ``AgentService.status_snapshot`` returns: the service's own fields and its parts'."""
    config = agent.config
    problems = agent.problems()
    snapshot: dict[str, Any] = {
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "version": __version__,
        "config_path": str(agent.config_path),
        "device_id": config.device.id if config is not None else None,
        "device_name": config.device.name if config is not None else None,
        "device_tags": list(config.device.tags) if config is not None else None,
        "state": state,
        "started_at": agent.started_at,
        "updated_at": time.time(),
        "uptime_s": time.time() - agent.started_at,
        "interval_s": config.health.metrics_interval_s if config is not None else None,
        "healthy": not problems and state in ("running", "reloading"),
        "problems": problems,
        "warnings": agent.warnings(),
        "reloads": reloads,
        "model": agent.pipeline.model_info() if agent.pipeline is not None else None,
        "health": report.to_dict() if report is not None else None,
        "streams": {
            name: {**asdict(stream), "fill_ratio": round(stream.fill_ratio, 4)}
            for name, stream in streams.items()
        },
    }
    snapshot.update(component_sections(agent, report))
    return snapshot


def component_sections(agent: Any, report: HealthReport | None) -> dict[str, Any]:
    """The status of the agent's parts (``AgentService``): drift, totals, store, sync, cloud
    fallback and OTA, beside the service's own fields (:func:`agent_snapshot`)."""
    # Imported here: the CLI's `agent status` reads this module and needs none of the agent's parts.
    from edgefleet.agent.fallback_deferred import deferred_status

    config = agent.config
    sections: dict[str, Any] = {}
    drift = agent.drift
    sections["drift"] = drift.status() if drift is not None else {"enabled": False, "reason": "disabled"}
    counters = agent.counters.snapshot()
    sections["totals"] = {
        "windows_inferred": counters.windows_inferred,
        "results_stored": counters.results_stored,
        "inference_errors": counters.inference_errors,
        "store_errors": counters.store_errors,
    }
    if report is None:
        sections["latency_ms"] = counters.latency_percentiles()
    sections["store"] = store_section(config.store.path if config is not None else None, report)
    sections["sync"] = sync_section(agent.sync, enabled=bool(config is not None and config.sync.enabled))
    router = agent.router
    sections["fallback"] = router.fallback_stats() if router is not None else None
    if agent.ota_client is not None:
        sections["ota"] = agent.ota_client.status()
    # Windows kept for a late cloud answer (agent/fallback_deferred.py).
    sections["fallback_deferred"] = deferred_status(router.deferred if router is not None else None)
    return sections


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``status`` as JSON (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = status_json({"schema": STATUS_SCHEMA, **status})
    fd, tmp = tempfile.mkstemp(prefix=".agent-status.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def status_json(document: dict[str, Any]) -> str:
    """``document`` as JSON, a line per top-level key and per entry of a top-level object.

    Readable with ``cat``, yet every value goes through json's C encoder: ``indent`` switches
    Python to its pure-Python encoder, four times slower on this file, which the agent rewrites
    every health interval. Keys are written as ``str()`` and sorted; so are values JSON cannot hold.
    """
    lines = []
    for key, value in _sorted_items(document):
        if isinstance(value, dict) and value:
            entries = ",\n".join(f"  {_dump(k)}: {_dump(v)}" for k, v in _sorted_items(value))
            lines.append(f" {_dump(key)}: {{\n{entries}\n }}")
        else:
            lines.append(f" {_dump(key)}: {_dump(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _sorted_items(mapping: dict[Any, Any]) -> list[tuple[str, Any]]:
    return sorted((str(k), v) for k, v in mapping.items())


def _dump(value: object) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def read_status(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StatusUnavailableError(
            f"no agent status file at {path}",
            hint="start the agent with `edgefleet agent run --config FILE` using the same config",
        ) from None
    except OSError as exc:
        raise StatusUnavailableError(f"cannot read agent status file {path}: {exc}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StatusUnavailableError(
            f"agent status file {path} is not valid JSON ({exc.msg} at line {exc.lineno})",
            hint="it is rewritten every health interval; if it stays broken, delete it and restart the agent",
        ) from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise StatusUnavailableError(f"agent status file {path} holds {kind}; expected an object")
    return data


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass(frozen=True)
class Assessment:
    running: bool
    healthy: bool
    problems: list[str]

    @property
    def ok(self) -> bool:
        return self.running and self.healthy


def assess_status(status: dict[str, Any], *, now: float | None = None) -> Assessment:
    """Judge a status snapshot: is the agent running, and healthy by its own account?"""
    now = time.time() if now is None else now
    problems: list[str] = []
    running = True
    pid = status.get("pid")
    if status.get("state") == "stopped":
        running = False
        problems.append("agent stopped")
    elif not isinstance(pid, int) or not _pid_alive(pid):
        running = False
        problems.append(f"agent process {pid} is not running (it did not stop cleanly)")
    updated = status.get("updated_at")
    interval = status.get("interval_s")
    interval_s = float(interval) if isinstance(interval, int | float) else 5.0
    stale_after = max(_MIN_STALE_S, _STALE_INTERVALS * interval_s)
    if not isinstance(updated, int | float):
        running = False
        problems.append("status file has no updated_at")
    elif running and now - updated > stale_after:
        running = False
        problems.append(f"status is {now - updated:.0f}s old (stale after {stale_after:.0f}s)")
    reported = status.get("problems")
    own_problems = [str(p) for p in reported] if isinstance(reported, list) else []
    healthy = bool(status.get("healthy")) and running
    if running and not status.get("healthy"):
        problems.extend(own_problems or ["agent reports itself unhealthy"])
    return Assessment(running=running, healthy=healthy, problems=problems)
