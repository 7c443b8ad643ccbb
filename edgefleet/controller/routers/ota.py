"""OTA transfer (issue 16): hosted bundles and each device's OTA state (campaigns build on these)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from edgefleet.controller.dependencies import Admin, Context, Device, Reader
from edgefleet.controller.http_errors import ErrorBody, error_response
from edgefleet.controller.ota_hosting import OtaError
from edgefleet.controller.ota_schemas import BundleInfo, BundleRegistration, OtaDeviceState

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["ota"])


@router.get("/ota/bundles")
def list_bundles(found: Reader, context: Context) -> list[BundleInfo]:
    return context.database.list_ota_bundles()


@router.post(
    "/ota/bundles",
    status_code=201,
    responses={400: {"model": ErrorBody}, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
def register_bundle(body: BundleRegistration, found: Admin, context: Context) -> JSONResponse:
    """Register a bundle ``.tar`` already on the controller host (checked: manifest and every file's
    sha256); devices can then be offered it."""
    if context.ota is None:
        return error_response(
            503, "ota_unavailable", "this controller process hosts no OTA bundles", "use `controller serve`"
        )
    try:
        info = context.ota.register(Path(body.path))
    except OtaError as exc:
        return error_response(exc.status, "invalid_bundle", exc.message, exc.hint)
    return JSONResponse(info.model_dump(mode="json"), status_code=201)


@router.get("/devices/{device_id}/ota")
def device_ota(
    device_id: Device, found: Reader, context: Context, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[OtaDeviceState]:
    """The device's reported OTA state per offer, newest first."""
    return context.database.ota_states(device_id, limit=limit)
