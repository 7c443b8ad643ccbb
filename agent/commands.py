"""Commands from the controller: a handler registry, expiry, and an acknowledged outcome for each.

Every ``cmd`` message that reaches the agent ends in ``command.<outcome>`` events in the store
(the ``events`` uplink carries them to the controller, which moves the command's status):

- ``expired``: ``expires_at`` has passed; the command is not run.
- ``unknown``: no handler is registered for the command name.
- ``failed``: the handler refused the command or raised; ``reason`` says why.
- ``acked``: accepted; the work finishes later (a pipeline reload) and a ``done`` or
  ``failed`` event follows through :meth:`CommandRegistry.report`.
- ``done``: the work is finished.

Handlers run on the sync thread: they must only validate, record and set flags.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from edgefleet.cloud_sync.protocol import CommandBody

__all__ = ["CommandEvents", "CommandHandler", "CommandOutcome", "CommandRegistry", "Reply"]

log = logging.getLogger(__name__)

CommandOutcome = Literal["acked", "done", "failed", "expired", "unknown"]
_LEVELS: dict[CommandOutcome, str] = {
    "acked": "info",
    "done": "info",
    "failed": "error",
    "expired": "warning",
    "unknown": "warning",
}


@dataclass(frozen=True)
class Reply:
    """What a handler answers: ``done`` now, ``acked`` (a later report finishes it) or ``failed``."""

    outcome: CommandOutcome
    reason: str | None = None


CommandHandler = Callable[[CommandBody], Reply]


class CommandEvents(Protocol):
    def add_event(
        self, kind: str, message: str, *, level: str = ..., data: dict[str, Any] | None = ...
    ) -> Any: ...


class CommandRegistry:
    """Name -> handler; :meth:`handle` runs one command and records its outcome."""

    def __init__(self, events: Callable[[], CommandEvents | None], *, clock: Callable[[], float] = time.time):
        # A callable: the agent may reopen its store on reload; events go to the current one.
        self._events = events
        self._clock = clock
        self._handlers: dict[str, CommandHandler] = {}
        self._lock = threading.Lock()
        self._deferred: list[CommandBody] = []
        self.outcomes: dict[CommandOutcome, int] = dict.fromkeys(_LEVELS, 0)

    def register(self, name: str, handler: CommandHandler) -> None:
        self._handlers[name] = handler

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def defer(self, body: CommandBody) -> None:
        """Keep an ``acked`` command until the pipeline reload that finishes it (:meth:`finish`)."""
        with self._lock:
            self._deferred.append(body)

    def take_deferred(self) -> list[CommandBody]:
        with self._lock:
            taken, self._deferred = self._deferred, []
        return taken

    def finish(self, bodies: list[CommandBody], error: str | None) -> None:
        """Report deferred commands ``done``, or ``failed`` with ``error``."""
        for body in bodies:
            if error is None:
                self.report(body, "done", "pipeline reloaded")
            else:
                self.report(body, "failed", error)

    def handle_envelope(self, envelope: object) -> CommandOutcome | None:
        """:meth:`handle` a downlink envelope's ``CommandBody`` (None for any other body)."""
        body = getattr(envelope, "body", None)
        return self.handle(body) if isinstance(body, CommandBody) else None

    def handle(self, body: CommandBody) -> CommandOutcome:
        now = self._clock()
        if body.expires_at is not None and now > body.expires_at:
            late = now - body.expires_at
            return self.report(body, "expired", f"expired {late:.1f} s before it arrived; not run")
        handler = self._handlers.get(body.command)
        if handler is None:
            known = ", ".join(self.names()) or "none"
            return self.report(body, "unknown", f"this agent has no handler for it (it handles: {known})")
        try:
            reply = handler(body)
        except Exception as exc:  # a handler bug is a failed command, never a dead sync thread
            log.exception("command %s (%s) failed", body.command, body.command_id)
            return self.report(body, "failed", f"{type(exc).__name__}: {exc}")
        return self.report(body, reply.outcome, reply.reason)

    def report(self, body: CommandBody, outcome: CommandOutcome, reason: str | None = None) -> CommandOutcome:
        """Record ``command.<outcome>`` for ``body`` (also used to finish an ``acked`` command)."""
        with self._lock:
            self.outcomes[outcome] += 1
        message = f"{body.command} {outcome}" + (f": {reason}" if reason else "")
        data: dict[str, Any] = {"command_id": body.command_id, "command": body.command, "outcome": outcome}
        if reason:
            data["reason"] = reason
        log.log(logging.getLevelName(_LEVELS[outcome].upper()), "command %s: %s", body.command_id, message)
        events = self._events()
        if events is None:
            log.warning("no store to record command %s %s", body.command_id, outcome)
            return outcome
        try:
            events.add_event(f"command.{outcome}", message, level=_LEVELS[outcome], data=data)
        except Exception as exc:  # the store may be closing; the outcome is still logged
            log.warning("could not record command %s %s: %s", body.command_id, outcome, exc)
        return outcome
