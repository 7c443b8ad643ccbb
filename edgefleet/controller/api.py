"""The controller's HTTP API (FastAPI; the OpenAPI document is served at ``/openapi.json``).

Every ``/api`` route needs a bearer token (``Authorization: Bearer <token>``) or a page session
cookie; ``POST /api/devices/{id}/commands`` needs the ``admin`` role. Errors are JSON:
``{"error": "<code>", "message": "...", "hint": "..."}``. See docs/controller.md.

The routes live in :mod:`edgefleet.controller.routers`, one module per resource; authentication
is in :mod:`edgefleet.controller.dependencies`; this module only assembles the app.
"""

from __future__ import annotations

from fastapi import FastAPI

from edgefleet import __version__
from edgefleet.controller.context import ControllerContext
from edgefleet.controller.http_errors import ErrorBody, install_error_handlers
from edgefleet.controller.login_throttle import LoginThrottle
from edgefleet.controller.routers import ROUTERS
from edgefleet.controller.routers.dashboard import install_pages

__all__ = ["ControllerContext", "create_app"]


def create_app(context: ControllerContext) -> FastAPI:
    app = FastAPI(
        title="edgefleet controller",
        version=__version__,
        description="Fleet registry, telemetry, results, drift, events and commands of edgefleet devices.",
        responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
    )
    app.state.context = context
    # One throttle per app: its failure counts must outlive a single request.
    app.state.login_throttle = LoginThrottle(context.config.auth.login_throttle)
    install_error_handlers(app)
    install_pages(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
