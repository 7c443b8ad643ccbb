"""The process itself: health, Prometheus metrics, and the live event stream the pages follow."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from edgefleet import __version__
from edgefleet.controller.dependencies import Context, Reader
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.metrics import controller_metrics

__all__ = ["Health", "router"]

_KEEPALIVE_S = 15.0
_MAX_STREAM_DEVICES = 1000

router = APIRouter()


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: str
    schema_version: int
    mqtt_connected: bool | None


@router.get("/healthz", tags=["service"])
def health(context: Context) -> Health:
    version = context.database.schema_version()
    mqtt_ok = context.mqtt_connected() if context.mqtt_connected else None
    return Health(
        status="ok" if mqtt_ok is not False else "degraded",
        version=__version__,
        database=context.database.dialect,
        schema_version=version,
        mqtt_connected=mqtt_ok,
    )


@router.get("/metrics", tags=["service"], response_class=PlainTextResponse)
def metrics(found: Reader, context: Context) -> PlainTextResponse:
    """Prometheus text format: devices by state, ingest counters, queue depth, lag."""
    body = controller_metrics(context.database, context.ingest_counters, context.queue_depth)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4")


@router.get(
    "/api/stream",
    tags=["fleet"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
)
async def stream(request: Request, found: Reader, context: Context) -> StreamingResponse:
    """Server-Sent Events: ``hello`` once, then ``fleet`` whenever devices change (see docs)."""
    return StreamingResponse(
        _events(request, context.changes, context.config.http.stream_interval_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(request: Request, changes: FleetChanges, interval: float) -> AsyncIterator[str]:
    version = changes.version
    yield f"event: hello\ndata: {json.dumps({'version': version})}\n\n"
    last_sent = time.monotonic()
    while not await request.is_disconnected():
        await asyncio.sleep(interval)
        found = changes.since(version)
        if found:
            version = found.version
            payload = {
                "version": found.version,
                "devices": found.devices[:_MAX_STREAM_DEVICES],
                "devices_truncated": len(found.devices) > _MAX_STREAM_DEVICES or found.truncated,
                "new_devices": found.new_devices[:_MAX_STREAM_DEVICES],
                "status": dict(list(found.status.items())[:_MAX_STREAM_DEVICES]),
                "commands": found.commands[:_MAX_STREAM_DEVICES],
            }
            yield f"event: fleet\ndata: {json.dumps(payload)}\n\n"
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= _KEEPALIVE_S:
            yield ": keepalive\n\n"
            last_sent = time.monotonic()
