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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.errors import EdgefleetError

__all__ = [
    "STATUS_FILENAME",
    "Assessment",
    "StatusUnavailableError",
    "assess_status",
    "read_status",
    "write_status",
]

STATUS_FILENAME = "agent-status.json"
STATUS_SCHEMA = 1
# The file counts as stale after this many missed refreshes.
_STALE_INTERVALS = 3.0
_MIN_STALE_S = 10.0


class StatusUnavailableError(EdgefleetError):
    """No readable status file: the agent never ran here, or it is another state dir."""


def write_status(path: Path, status: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``status`` as JSON (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"schema": STATUS_SCHEMA, **status}, default=str, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=".agent-status.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
