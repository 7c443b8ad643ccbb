"""``/api/hard-examples``: the windows devices sent to the cloud, with the edge's and the cloud's answers."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from edgefleet.controller.dependencies import Context, Reader
from edgefleet.controller.hard_examples import HardExample

__all__ = ["HardExampleOut", "HardExamplePage", "router"]

router = APIRouter(prefix="/api", tags=["hard examples"])


class HardExampleOut(BaseModel):
    id: int
    device_id: str
    request_id: str
    answered_at: float
    stream: str
    window_start: float
    window_end: float
    fallback_reason: str
    edge_label: str | None
    edge_score: float | None
    cloud_label: str
    cloud_score: float | None
    model_name: str
    model_version: str
    shape: list[int]
    window_f32_base64: str | None = None
    """With ``windows=true``: the raw window, little-endian float32, ``shape`` = [length, channels]."""


class HardExamplePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[HardExampleOut]


def _out(example: HardExample) -> HardExampleOut:
    data = base64.b64encode(example.data).decode() if example.data is not None else None
    return HardExampleOut(
        id=example.id or 0,
        device_id=example.device_id,
        request_id=example.request_id,
        answered_at=example.answered_at,
        stream=example.stream,
        window_start=example.window_start,
        window_end=example.window_end,
        fallback_reason=example.fallback_reason,
        edge_label=example.edge_label,
        edge_score=example.edge_score,
        cloud_label=example.cloud_label,
        cloud_score=example.cloud_score,
        model_name=example.model_name,
        model_version=example.model_version,
        shape=list(example.shape),
        window_f32_base64=data,
    )


@router.get("/hard-examples")
def hard_examples(
    found: Reader,
    context: Context,
    device_id: Annotated[str | None, Query(max_length=200)] = None,
    since: float | None = None,
    until: float | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    windows: bool = False,
) -> HardExamplePage:
    """Oldest first. ``since``/``until``: epoch seconds of the answer (a negative ``since`` counts back
    from now)."""
    if since is not None and since < 0:
        since = context.clock() + since
    items, total = context.database.hard_examples(
        device_id=device_id, since=since, until=until, limit=limit, offset=offset, with_windows=windows
    )
    return HardExamplePage(total=total, limit=limit, offset=offset, items=[_out(e) for e in items])
