"""The agent's command registry: outcomes, expiry, unknown names, failing handlers."""

from __future__ import annotations

from typing import Any

from edgefleet.agent.commands import CommandRegistry, Reply
from edgefleet.cloud_sync.protocol import CommandBody

NOW = 1_700_000_000.0


class Events:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str, dict[str, Any]]] = []

    def add_event(
        self, kind: str, message: str, *, level: str = "info", data: dict[str, Any] | None = None
    ) -> int:
        self.recorded.append((kind, message, level, data or {}))
        return len(self.recorded)


def registry() -> tuple[CommandRegistry, Events]:
    events = Events()
    return CommandRegistry(lambda: events, clock=lambda: NOW), events


def body(command: str = "ping", expires_at: float | None = NOW + 60) -> CommandBody:
    return CommandBody.model_validate({"command_id": "c1", "command": command, "expires_at": expires_at})


def test_done_acked_then_reported() -> None:
    commands, events = registry()
    commands.register("ping", lambda b: Reply("done"))
    commands.register("restart_pipeline", lambda b: Reply("acked", "queued"))
    assert commands.handle(body("ping")) == "done"
    assert commands.handle(body("restart_pipeline")) == "acked"
    commands.report(body("restart_pipeline"), "done", "pipeline reloaded")
    assert [e[0] for e in events.recorded] == ["command.done", "command.acked", "command.done"]
    assert events.recorded[1][3] == {
        "command_id": "c1",
        "command": "restart_pipeline",
        "outcome": "acked",
        "reason": "queued",
    }


def test_expired_is_not_run() -> None:
    commands, events = registry()
    ran: list[str] = []

    def ping(b: CommandBody) -> Reply:
        ran.append(b.command_id)
        return Reply("done")

    commands.register("ping", ping)
    assert commands.handle(body("ping", expires_at=NOW - 5)) == "expired"
    assert ran == []
    assert events.recorded[0][0] == "command.expired"
    assert "not run" in events.recorded[0][1]
    assert commands.handle(body("ping", expires_at=None)) == "done"


def test_unknown_and_failing_handlers() -> None:
    commands, events = registry()
    commands.register("ping", lambda b: Reply("done"))

    def broken(b: CommandBody) -> Reply:
        raise RuntimeError("disk on fire")

    commands.register("flush_outbox", broken)
    assert commands.handle(body("report_status")) == "unknown"
    assert "handles: ping" in events.recorded[-1][1] or "flush_outbox, ping" in events.recorded[-1][1]
    assert commands.handle(body("flush_outbox")) == "failed"
    assert events.recorded[-1][2] == "error"
    assert "disk on fire" in events.recorded[-1][3]["reason"]
    assert commands.outcomes["unknown"] == 1
    assert commands.outcomes["failed"] == 1


def test_no_store_yet_does_not_raise() -> None:
    commands = CommandRegistry(lambda: None, clock=lambda: NOW)
    commands.register("ping", lambda b: Reply("done"))
    assert commands.handle(body()) == "done"


def test_deferred_commands_finish_after_the_reload() -> None:
    commands, events = registry()
    commands.defer(body("restart_pipeline"))
    commands.defer(body("set_config"))
    waiting = commands.take_deferred()
    assert commands.take_deferred() == []
    commands.finish(waiting[:1], None)
    commands.finish(waiting[1:], "new configuration failed to start: boom")
    assert [(e[0], e[3].get("reason")) for e in events.recorded] == [
        ("command.done", "pipeline reloaded"),
        ("command.failed", "new configuration failed to start: boom"),
    ]
