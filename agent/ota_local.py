"""``edgefleet ota install`` on the device: how the CLI hands a bundle to the running agent.

The CLI writes a request file into ``<state_dir>/ota/requests/`` (write, fsync, rename); the
agent's main loop takes it on its next tick and runs it through the same
:class:`~edgefleet.agent.ota_install.OtaInstaller` as an offer from the controller. Every
``report`` lands in ``<state_dir>/ota/progress/<id>.json`` (the states so far), which the CLI
polls until a final state, and as an ``ota.<state>`` event in the store. Only the agent's user
can write into ``state_dir``, so only it (or root) can install this way.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.agent.ota_slots import write_atomic

__all__ = ["FINAL_STATES", "LocalRequest", "ProgressFile", "submit", "take_requests"]

FINAL_STATES = frozenset({"done", "failed", "refused", "rolled_back"})


@dataclass(frozen=True)
class LocalRequest:
    request_id: str
    bundle: Path | None
    allow_downgrade: bool
    error: str | None = None
    """Why the request file could not be used (it is answered ``refused`` with this)."""


def _requests_dir(state_dir: Path) -> Path:
    return state_dir / "ota" / "requests"


def _progress_path(state_dir: Path, request_id: str) -> Path:
    return state_dir / "ota" / "progress" / f"{request_id}.json"


def submit(state_dir: Path, bundle: Path, *, allow_downgrade: bool = False) -> str:
    """Queue ``bundle`` for the running agent; returns the request id."""
    request_id = "local-" + uuid.uuid4().hex[:12]
    directory = _requests_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"bundle": str(bundle.resolve()), "allow_downgrade": allow_downgrade}
    # Written under a name the agent skips, then renamed: it never reads half a request.
    write_atomic(directory / f"{request_id}.json", json.dumps(doc).encode("utf-8"))
    return request_id


def take_requests(state_dir: Path) -> list[LocalRequest]:
    """The queued requests, oldest first, each removed as it is taken."""
    directory = _requests_dir(state_dir)
    try:
        names = sorted(
            (p for p in directory.iterdir() if p.suffix == ".json"), key=lambda p: (p.stat().st_mtime, p.name)
        )
    except FileNotFoundError:
        return []
    taken: list[LocalRequest] = []
    for path in names:
        request_id = path.stem
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            bundle = Path(str(doc["bundle"]))
            allow = bool(doc.get("allow_downgrade", False))
            taken.append(LocalRequest(request_id, bundle, allow))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            taken.append(
                LocalRequest(request_id, None, False, f"unreadable install request {path.name}: {exc}")
            )
        path.unlink(missing_ok=True)
    return taken


class ProgressFile:
    """The states one local install went through, rewritten atomically at each report."""

    def __init__(self, state_dir: Path, request_id: str) -> None:
        self.path = _progress_path(state_dir, request_id)
        self.states: list[dict[str, Any]] = []

    def add(self, state: str, progress: float, detail: str | None, metrics: dict[str, Any] | None) -> None:
        self.states.append(
            {
                "state": state,
                "progress": progress,
                "detail": detail,
                "metrics": metrics or {},
                "at": time.time(),
            }
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"states": self.states}, default=str).encode("utf-8"))

    @staticmethod
    def read(state_dir: Path, request_id: str) -> list[dict[str, Any]]:
        try:
            doc = json.loads(_progress_path(state_dir, request_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        states = doc.get("states") if isinstance(doc, dict) else None
        return list(states) if isinstance(states, list) else []


def wait_for_final(
    state_dir: Path,
    request_id: str,
    *,
    alive: Callable[[], bool],
    timeout_s: float,
    on_state: Callable[[dict[str, Any]], None],
) -> dict[str, Any] | None:
    """Poll the progress file, calling ``on_state`` for each new state; the final one, or None
    when the agent stopped or ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        states = ProgressFile.read(state_dir, request_id)
        for state in states[seen:]:
            on_state(state)
            if state.get("state") in FINAL_STATES:
                return state
        seen = len(states)
        if time.monotonic() > deadline or not alive():
            return None
        time.sleep(0.2)


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # A killed child not yet reaped by its parent still answers kill(0): a zombie is not alive.
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
