"""Commands to devices: validated, recorded with an id, published QoS 1 on ``<prefix>/<id>/cmd``.

Status moves ``pending`` -> ``sent`` (the broker acknowledged the publish) -> ``acked`` or
``failed`` (the device reported back with a ``command.*`` event carrying the ``command_id``).
A command that cannot be published is recorded ``failed`` with the reason.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from edgefleet.cloud_sync.codec import encode_message
from edgefleet.cloud_sync.protocol import CommandBody, make_envelope
from edgefleet.cloud_sync.topics import device_topic
from edgefleet.controller.dal import Database
from edgefleet.controller.schemas import CommandRecord, CommandRequest
from edgefleet.errors import EdgefleetError

__all__ = ["CommandError", "CommandService", "Publisher", "validate_command"]

Publisher = Callable[[str, bytes], "str | None"]
"""Publishes ``payload`` on ``topic`` at QoS 1; returns None when the broker acknowledged, else why not."""

_COMMAND_TTL_S = 3600.0


class CommandError(EdgefleetError):
    """A command request is invalid (400) or names an unknown device (404)."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def validate_command(request: CommandRequest) -> dict[str, Any]:
    """The args to send, or CommandError naming what is wrong."""
    args = dict(request.args)
    if request.name == "set_config":
        key = args.get("key")
        if not isinstance(key, str) or not key.strip():
            raise CommandError(
                f"set_config needs args.key, a non-empty configuration key string; got {key!r}",
                hint='send {"name": "set_config", "args": {"key": "batching.max_batch_size", "value": 8}}',
            )
        if "value" not in args:
            raise CommandError("set_config needs args.value (any JSON value)", hint="add args.value")
        extra = sorted(set(args) - {"key", "value"})
        if extra:
            raise CommandError(f"set_config takes args key and value only; got also {extra}")
    elif args:
        raise CommandError(
            f"{request.name} takes no args; got {sorted(args)}", hint="send an empty args object"
        )
    return args


class CommandService:
    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        *,
        prefix: str = "edgefleet/v1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.publisher = publisher
        self.prefix = prefix
        self.clock = clock

    def send(self, device_id: str, request: CommandRequest, *, created_by: str | None) -> CommandRecord:
        args = validate_command(request)
        if self.database.get_device(device_id) is None:
            raise CommandError(
                f"no device {device_id!r} is known to this controller",
                status=404,
                hint="GET /api/devices lists the known devices",
            )
        now = self.clock()
        record = CommandRecord(
            command_id=uuid.uuid4().hex[:16],
            device_id=device_id,
            name=request.name,
            args=args,
            status="pending",
            created_at=now,
            updated_at=now,
            created_by=created_by,
        )
        self.database.insert_command(record)
        envelope = make_envelope(
            device_id,
            "cmd",
            CommandBody(
                command_id=record.command_id, command=request.name, args=args, expires_at=now + _COMMAND_TTL_S
            ),
            # Devices ignore a downlink message id they already handled: make each one unique.
            message_id=secrets.randbits(62) + 1,
            created_at=now,
        )
        failure = self.publisher(device_topic(device_id, "cmd", prefix=self.prefix), encode_message(envelope))
        if failure is None:
            self.database.set_command_status(record.command_id, "sent", at=self.clock())
        else:
            self.database.set_command_status(record.command_id, "failed", at=self.clock(), detail=failure)
        stored = self.database.get_command(record.command_id)
        return stored if stored is not None else record
