"""The web dashboard: its pages (static files under ``/static``, ``/`` redirects there), the
headers they are served with, and the one endpoint the fleet table needs.

The pages load nothing from elsewhere; the fleet table reads ``GET /api/dashboard/overview``,
which ``Database.fleet_overview`` answers (see docs/controller.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefleet.controller.dependencies import Context, Reader
from edgefleet.controller.overview import OverviewPage, OverviewSort

__all__ = ["PAGE_HEADERS", "STATIC_DIR", "PageHeadersMiddleware", "install_pages", "router"]

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter()


@router.get("/api/dashboard/overview", tags=["dashboard"], response_model=OverviewPage)
def overview(
    found: Reader,
    context: Context,
    online: bool | None = None,
    model_version: Annotated[str | None, Query(max_length=200)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    drifted: bool | None = None,
    sort: OverviewSort = "device_id",
    order: Literal["asc", "desc"] = "asc",
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    window_s: Annotated[int, Query(ge=10, le=86_400)] = 300,
) -> Response:
    """The fleet table: a page of devices with their latest figures, and fleet-wide counts."""
    page = context.database.fleet_overview(
        online=online,
        model_version=model_version,
        search=search,
        drifted=drifted,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
        window_s=window_s,
        now=context.clock(),
    )
    # The model is already validated: serialize once instead of letting FastAPI validate it again.
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/", include_in_schema=False)
def root() -> Response:
    if (STATIC_DIR / "index.html").is_file():
        return RedirectResponse("/static/index.html")
    return JSONResponse({"name": "edgefleet controller", "api_docs": "/docs", "openapi": "/openapi.json"})


# The pages load nothing from elsewhere and run no inline code, so the policy can be strict: an
# injected <script> or a hostile device id rendered as markup would not run.
PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class PageHeadersMiddleware:
    """Adds :data:`PAGE_HEADERS` to ``/static/`` responses; everything else passes untouched (plain
    ASGI, so the event stream keeps its streaming and disconnect detection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/static/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_pages(app: FastAPI) -> None:
    """Serve the page files at ``/static`` with :data:`PAGE_HEADERS` (routes come from ``router``)."""
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    app.add_middleware(PageHeadersMiddleware)
