"""The controller's HTTP routes, one ``APIRouter`` per resource; ``create_app`` includes them all.

=================  ======================================================================
module             routes
=================  ======================================================================
``dashboard``      ``/`` and ``/static`` (the pages), ``GET /api/dashboard/overview``
``service``        ``/healthz``, ``/metrics``, ``/api/stream`` (Server-Sent Events)
``auth``           ``/api/auth/login``, ``/logout``, ``/me``
``devices``        ``/api/devices`` and each device's telemetry, drift, events, results
``commands``       ``/api/devices/{id}/commands`` (list, send), ``/api/commands/{id}``
``fleet``          ``/api/fleet/summary``, ``/api/results/summary``, ``/api/events``,
                   ``/api/ingest/stats``
``drift``          ``/api/fleet/drift``, ``/api/devices/{id}/drift/merged`` (merged counts)
``hard_examples``  ``/api/hard-examples`` (windows sent to the cloud, with both answers)
``fallback``       ``/api/fleet/fallback``, ``/api/devices/{id}/fallback`` (cloud share, reasons)
``ota``            ``/api/ota/bundles`` (list, register), ``/api/devices/{id}/ota`` (OTA state)
``ota_campaigns``  ``/api/ota/campaigns`` (list, start, show, ``/rollback``)
=================  ======================================================================

A new resource gets its own module here with a module-level ``router = APIRouter(...)`` and one
entry in :data:`ROUTERS`. Routes declare who may call them and what they read through the
dependencies of :mod:`edgefleet.controller.dependencies` (``Reader``, ``Admin``, ``Device``,
``Context``), and read data only through ``context.database`` (the ``Database`` interface).
Errors are raised (``AuthError``, ``CommandError``, ``HTTPException``) and shaped by
:mod:`edgefleet.controller.http_errors`. Adding a route changes the OpenAPI snapshot
(tests/fixtures/controller/openapi_routes.json): rewrite it as that test says.
"""

from __future__ import annotations

from fastapi import APIRouter

from edgefleet.controller.routers import (
    auth,
    commands,
    dashboard,
    devices,
    drift,
    fallback,
    fleet,
    hard_examples,
    ota,
    ota_campaigns,
    service,
)

__all__ = ["ROUTERS"]

# Included in this order: the first route that matches a request wins.
ROUTERS: tuple[APIRouter, ...] = (
    dashboard.router,
    service.router,
    auth.router,
    devices.router,
    commands.router,
    fleet.router,
    drift.router,
    hard_examples.router,
    fallback.router,
    ota.router,
    ota_campaigns.router,
)
