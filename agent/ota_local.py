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

__all__ = ["FINAL_STATES", "LocalRequest", "ProgressFile", "RequestWatch", "submit", "take_requests"]

FINAL_STATES = frozenset({"done", "failed", "refused", "rolled_back"})


@dataclass(frozen=True)
class LocalRequest:
    request_id: str
    bundle: Path | None
    allow_downgrade: bool
    error: str | None = None
    """Why the request file could not be used (it is answered ``refused`` with this)."""
    shadow_s: float = 0.0
    """``--shadow``: seconds the candidate runs beside the active model before activation."""


def _requests_dir(state_dir: Path) -> Path:
    return state_dir / "ota" / "requests"


def _progress_path(state_dir: Path, request_id: str) -> Path:
    return state_dir / "ota" / "progress" / f"{request_id}.json"


def submit(state_dir: Path, bundle: Path, *, allow_downgrade: bool = False, shadow_s: float = 0.0) -> str:
    """Queue ``bundle`` for the running agent; returns the request id."""
    request_id = "local-" + uuid.uuid4().hex[:12]
    directory = _requests_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"bundle": str(bundle.resolve()), "allow_downgrade": allow_downgrade, "shadow_s": shadow_s}
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
            shadow_s = float(doc.get("shadow_s", 0.0))
            taken.append(LocalRequest(request_id, bundle, allow, shadow_s=shadow_s))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            taken.append(
                LocalRequest(request_id, None, False, f"unreadable install request {path.name}: {exc}")
            )
        path.unlink(missing_ok=True)
    return taken


class RequestWatch:
    """:func:`take_requests` for the main loop's every tick, at the price of one ``stat`` while
    nothing changed: listing an empty directory costs several system calls, each one slow on a
    thread that has just woken up (cold caches), four times a second.

    The listing is skipped only when the directory's mtime equals the one seen at the last
    listing (which found nothing) and that mtime was already ``SETTLE_NS`` older than the
    listing: a request written after it then moves the mtime, even on a file system with
    coarse (FAT: 2 s) timestamps. Every ``RELIST_S`` it lists anyway (a wall clock stepped back).
    """

    SETTLE_NS = 3_000_000_000
    RELIST_S = 30.0

    def __init__(self) -> None:
        self._unchanged: tuple[str, int] | None = None  # (directory, mtime) safe to skip
        self._relist_at = 0.0

    def take(self, state_dir: Path) -> list[LocalRequest]:
        directory = os.path.join(state_dir, "ota", "requests")
        try:
            mtime = os.stat(directory).st_mtime_ns
        except FileNotFoundError:
            self._unchanged = None
            return []  # nothing queued yet: take_requests says the same
        except OSError:
            mtime = -1
        now = time.monotonic()
        if self._unchanged == (directory, mtime) and now < self._relist_at:
            return []
        listed_at = time.time_ns()
        taken = take_requests(state_dir)
        if not taken and 0 <= mtime < listed_at - self.SETTLE_NS:
            self._unchanged = (directory, mtime)
            self._relist_at = now + self.RELIST_S
        else:
            self._unchanged = None
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
