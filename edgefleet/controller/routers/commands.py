"""Commands: a device's command history, sending one (admin), and one command's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet.controller.dependencies import Admin, Context, Device, Reader
from edgefleet.controller.http_errors import ErrorBody, error_response
from edgefleet.controller.schemas import CommandRecord, CommandRequest

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["commands"])


@router.get("/devices/{device_id}/commands")
def device_commands(
    device_id: Device, found: Reader, context: Context, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[CommandRecord]:
    return context.database.list_commands(device_id, limit=limit)


@router.post(
    "/devices/{device_id}/commands",
    status_code=202,
    responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
def send_command(device_id: str, body: CommandRequest, found: Admin, context: Context) -> Response:
    record = context.commands.send(device_id, body, created_by=f"{found.via}:{found.name}")
    context.changes.command_changed(record.command_id)
    if record.status == "failed":
        return error_response(
            503,
            "broker_unavailable",
            f"command {record.command_id} could not be published: {record.detail}",
            "check the controller's MQTT connection (GET /healthz) and retry",
            command=record.model_dump(mode="json"),
        )
    return JSONResponse(record.model_dump(mode="json"), status_code=202)


@router.get("/commands/{command_id}")
def get_command(command_id: str, found: Reader, context: Context) -> CommandRecord:
    record = context.database.get_command(command_id)
    if record is None:
        raise StarletteHTTPException(404, f"no command {command_id!r}")
    return record
