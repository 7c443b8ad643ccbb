"""Staged OTA campaigns (issue 16): create, list, show, roll back (edgefleet/controller/ota_campaigns.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from edgefleet.controller.dependencies import Admin, Context, Reader
from edgefleet.controller.http_errors import ErrorBody, error_response
from edgefleet.controller.ota_campaign_schemas import CampaignRequest, CampaignView
from edgefleet.controller.ota_campaigns import CampaignError, campaign_view, create_campaign, request_rollback

__all__ = ["router"]

router = APIRouter(prefix="/api/ota/campaigns", tags=["ota"])
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.get("")
def list_campaigns(
    found: Reader, context: Context, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[CampaignView]:
    """Newest first, each with its devices' states."""
    return [
        campaign_view(context.database, c.campaign_id) for c in context.database.list_campaigns(limit=limit)
    ]


@router.post("", status_code=201, responses=_ERRORS)
def start_campaign(body: CampaignRequest, found: Admin, context: Context) -> JSONResponse:
    """Start a staged campaign; the controller offers the first stage within a second."""
    if context.ota is None:
        return error_response(
            503, "ota_unavailable", "this controller process hosts no OTA bundles", "use `controller serve`"
        )
    try:
        view = create_campaign(context.database, context.ota, body, created_by=f"{found.via}:{found.name}")
    except CampaignError as exc:
        return error_response(exc.status, "invalid_campaign", exc.message, exc.hint)
    return JSONResponse(view.model_dump(mode="json"), status_code=201)


@router.get("/{campaign_id}", responses={404: {"model": ErrorBody}})
def show_campaign(campaign_id: str, found: Reader, context: Context) -> JSONResponse:
    try:
        view = campaign_view(context.database, campaign_id)
    except CampaignError as exc:
        return error_response(exc.status, "unknown_campaign", exc.message, exc.hint)
    return JSONResponse(view.model_dump(mode="json"))


@router.post("/{campaign_id}/rollback", responses={404: {"model": ErrorBody}})
def rollback_campaign(campaign_id: str, found: Admin, context: Context) -> JSONResponse:
    """Send ``rollback_model`` to every device of the campaign that activated its bundle."""
    try:
        view = request_rollback(context.database, campaign_id)
    except CampaignError as exc:
        return error_response(exc.status, "unknown_campaign", exc.message, exc.hint)
    return JSONResponse(view.model_dump(mode="json"))
