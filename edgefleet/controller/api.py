"""The controller's HTTP API (FastAPI; the OpenAPI document is served at ``/openapi.json``).

Every ``/api`` route needs a bearer token (``Authorization: Bearer <token>``) or a page session
cookie; ``POST /api/devices/{id}/commands`` needs the ``admin`` role. Errors are JSON:
``{"error": "<code>", "message": "...", "hint": "..."}``. See docs/controller.md.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet import __version__
from edgefleet.controller.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    AuthError,
    Principal,
    authenticate_bearer,
    authenticate_session,
    hash_secret,
)
from edgefleet.controller.commands import CommandError, CommandService
from edgefleet.controller.config import ControllerConfig
from edgefleet.controller.dal import Database
from edgefleet.controller.ingest import IngestStats
from edgefleet.controller.live import FleetChanges
from edgefleet.controller.login_throttle import LoginThrottle, LoginThrottledError, throttled_login
from edgefleet.controller.metrics import controller_metrics
from edgefleet.controller.schemas import (
    CommandRecord,
    CommandRequest,
    DeviceDetail,
    DeviceList,
    DeviceSort,
    DriftReport,
    EventRecord,
    FleetSummary,
    IngestStatsOut,
    ResultsSummary,
    Role,
    TelemetrySeries,
)

__all__ = ["ControllerContext", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_KEEPALIVE_S = 15.0
_MAX_STREAM_DEVICES = 1000


@dataclass
class ControllerContext:
    """What the routes need; the service builds one, tests may build their own."""

    config: ControllerConfig
    database: Database
    commands: CommandService
    changes: FleetChanges
    ingest_stats: Callable[[], IngestStatsOut] | None = None
    ingest_counters: IngestStats | None = None
    queue_depth: Callable[[], int] | None = None
    mqtt_connected: Callable[[], bool] | None = None
    clock: Callable[[], float] = time.time


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class Me(BaseModel):
    name: str
    role: Role
    via: Literal["token", "session"]
    csrf_token: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: str
    schema_version: int
    mqtt_connected: bool | None


class MetricList(BaseModel):
    device_id: str
    metrics: list[str]


class ErrorBody(BaseModel):
    error: str
    message: str
    hint: str | None = None


def _error(status: int, code: str, message: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body: dict[str, Any] = {"error": code, "message": message, "hint": hint, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def _since(value: float | None, now: float, default_window: float) -> float:
    """Epoch seconds; a negative value is relative to now (``since=-3600``: the last hour)."""
    if value is None:
        return now - default_window
    return now + value if value < 0 else value


def _context(request: Request) -> ControllerContext:
    context: ControllerContext = request.app.state.context
    return context


def _principal(request: Request) -> Principal:
    db = _context(request).database
    header = request.headers.get("authorization")
    if header:
        return authenticate_bearer(db, header)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        found = authenticate_session(db, session)
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            expected = request.cookies.get(CSRF_COOKIE, "")
            if not expected or not secrets.compare_digest(sent, expected):
                raise AuthError(
                    f"cookie-authenticated {request.method} requests need the {CSRF_HEADER} header",
                    status=403,
                    hint=f"send the value of the {CSRF_COOKIE} cookie in {CSRF_HEADER}",
                )
        return found
    raise AuthError(
        "authentication required",
        status=401,
        hint="send Authorization: Bearer <token> (edgefleet controller token create) or log in",
    )


def _admin(found: Annotated[Principal, Depends(_principal)]) -> Principal:
    found.require("admin")
    return found


def _known_device(request: Request, device_id: str) -> str:
    if _context(request).database.get_device(device_id) is None:
        raise StarletteHTTPException(404, f"no device {device_id!r} is known to this controller")
    return device_id


Reader = Annotated[Principal, Depends(_principal)]
Admin = Annotated[Principal, Depends(_admin)]
Device = Annotated[str, Depends(_known_device)]


def create_app(context: ControllerContext) -> FastAPI:
    app = FastAPI(
        title="edgefleet controller",
        version=__version__,
        description="Fleet registry, telemetry, results, drift, events and commands of edgefleet devices.",
        responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}},
    )
    app.state.context = context
    db: Database = context.database
    http = context.config.http

    throttle = LoginThrottle(context.config.auth.login_throttle)

    @app.exception_handler(LoginThrottledError)
    async def _throttled(request: Request, exc: LoginThrottledError) -> JSONResponse:
        reply = _error(429, "too_many_requests", exc.message, exc.hint)
        reply.headers["Retry-After"] = str(int(exc.retry_after_s + 0.999))
        return reply

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        code = "unauthorized" if exc.status == 401 else "forbidden"
        return _error(exc.status, code, exc.message, exc.hint)

    @app.exception_handler(CommandError)
    async def _command_error(request: Request, exc: CommandError) -> JSONResponse:
        return _error(
            exc.status, "not_found" if exc.status == 404 else "invalid_command", exc.message, exc.hint
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            {"where": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]} for err in exc.errors()
        ]
        summary = "; ".join(f"{i['where']}: {i['problem']}" for i in issues[:5])
        return _error(422, "invalid_request", f"the request is invalid: {summary}", None, issues=issues)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    # --- dashboard hook: its routes win over the defaults below -------------------------------------
    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    try:
        dashboard = importlib.import_module("edgefleet.controller.dashboard")
    except ModuleNotFoundError as exc:
        if exc.name != "edgefleet.controller.dashboard":
            raise
    else:
        register = getattr(dashboard, "register", None)
        if callable(register):
            register(app, context)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        if (STATIC_DIR / "index.html").is_file():
            return RedirectResponse("/static/index.html")
        return JSONResponse({"name": "edgefleet controller", "api_docs": "/docs", "openapi": "/openapi.json"})

    @app.get("/healthz", tags=["service"])
    def health() -> Health:
        version = db.schema_version()
        mqtt_ok = context.mqtt_connected() if context.mqtt_connected else None
        return Health(
            status="ok" if mqtt_ok is not False else "degraded",
            version=__version__,
            database=db.dialect,
            schema_version=version,
            mqtt_connected=mqtt_ok,
        )

    # --- auth -------------------------------------------------------------------------------------
    @app.post("/api/auth/login", tags=["auth"])
    def auth_login(body: LoginRequest, request: Request, response: Response) -> Me:
        source = request.client.host if request.client else "unknown"
        session, found = throttled_login(
            throttle, db, body.username, body.password, source=source, ttl_s=http.session_ttl_s
        )
        csrf = secrets.token_urlsafe(24)
        common: dict[str, Any] = {
            "max_age": http.session_ttl_s,
            "secure": http.cookie_secure,
            "samesite": "strict",
            "path": "/",
        }
        response.set_cookie(SESSION_COOKIE, session, httponly=True, **common)
        response.set_cookie(CSRF_COOKIE, csrf, httponly=False, **common)
        return Me(name=found.name, role=found.role, via="session", csrf_token=csrf)

    @app.post("/api/auth/logout", tags=["auth"], status_code=204)
    def auth_logout(request: Request, found: Reader) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            db.delete_session(hash_secret(session))
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    @app.get("/api/auth/me", tags=["auth"])
    def auth_me(found: Reader) -> Me:
        return Me(name=found.name, role=found.role, via=found.via)

    # --- devices ----------------------------------------------------------------------------------
    @app.get("/api/devices", tags=["devices"])
    def list_devices(
        found: Reader,
        online: bool | None = None,
        model_version: str | None = None,
        search: Annotated[str | None, Query(max_length=200)] = None,
        sort: DeviceSort = "device_id",
        order: Literal["asc", "desc"] = "asc",
        limit: Annotated[int, Query(ge=1, le=5000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> DeviceList:
        return db.list_devices(
            online=online,
            model_version=model_version,
            search=search,
            sort=sort,
            descending=order == "desc",
            limit=limit,
            offset=offset,
        )

    @app.get("/api/devices/{device_id}", tags=["devices"])
    def get_device(device_id: str, found: Reader) -> DeviceDetail:
        detail = db.device_detail(device_id)
        if detail is None:
            raise StarletteHTTPException(404, f"no device {device_id!r} is known to this controller")
        return detail

    @app.get("/api/devices/{device_id}/metrics", tags=["devices"])
    def device_metrics(device_id: Device, found: Reader) -> MetricList:
        return MetricList(device_id=device_id, metrics=db.telemetry_metrics(device_id))

    @app.get("/api/devices/{device_id}/telemetry", tags=["devices"])
    def device_telemetry(
        device_id: Device,
        found: Reader,
        metric: Annotated[str, Query(min_length=1, max_length=300)],
        since: float | None = None,
        until: float | None = None,
        resolution: Literal["auto", "raw", "minute", "hour"] = "auto",
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> TelemetrySeries:
        now = context.clock()
        return db.telemetry(
            device_id,
            metric,
            since=_since(since, now, 3600),
            until=until if until is not None else now + 1,
            resolution=resolution,
            raw_horizon=now - context.config.retention.raw_telemetry_s,
            limit=limit,
        )

    @app.get("/api/devices/{device_id}/drift", tags=["devices"])
    def device_drift(
        device_id: Device,
        found: Reader,
        since: float | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[DriftReport]:
        return db.drift_reports(device_id, since=_since(since, context.clock(), 86_400), limit=limit)

    @app.get("/api/devices/{device_id}/events", tags=["devices"])
    def device_events(
        device_id: Device,
        found: Reader,
        since: float | None = None,
        kind: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[EventRecord]:
        return db.events(device_id, since=_since(since, context.clock(), 86_400), kind=kind, limit=limit)

    @app.get("/api/devices/{device_id}/results/summary", tags=["devices"])
    def device_results(
        device_id: Device,
        found: Reader,
        since: float | None = None,
        until: float | None = None,
        bucket_s: Annotated[int | None, Query(ge=1, le=86_400)] = None,
    ) -> ResultsSummary:
        return _results(device_id, since, until, bucket_s)

    def _results(
        device_id: str | None, since: float | None, until: float | None, bucket_s: int | None
    ) -> ResultsSummary:
        now = context.clock()
        stored_bucket = context.config.ingest.result_bucket_s
        bucket = max(stored_bucket, bucket_s or stored_bucket)
        return db.results_summary(
            device_id,
            since=_since(since, now, 3600),
            until=until if until is not None else now + 1,
            bucket_s=bucket,
        )

    @app.get("/api/devices/{device_id}/commands", tags=["commands"])
    def device_commands(
        device_id: Device, found: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> list[CommandRecord]:
        return db.list_commands(device_id, limit=limit)

    @app.post(
        "/api/devices/{device_id}/commands",
        tags=["commands"],
        status_code=202,
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
    def send_command(device_id: str, body: CommandRequest, found: Admin) -> Response:
        record = context.commands.send(device_id, body, created_by=f"{found.via}:{found.name}")
        context.changes.command_changed(record.command_id)
        if record.status == "failed":
            return _error(
                503,
                "broker_unavailable",
                f"command {record.command_id} could not be published: {record.detail}",
                "check the controller's MQTT connection (GET /healthz) and retry",
                command=record.model_dump(mode="json"),
            )
        return JSONResponse(record.model_dump(mode="json"), status_code=202)

    @app.get("/api/commands/{command_id}", tags=["commands"])
    def get_command(command_id: str, found: Reader) -> CommandRecord:
        record = db.get_command(command_id)
        if record is None:
            raise StarletteHTTPException(404, f"no command {command_id!r}")
        return record

    # --- fleet ------------------------------------------------------------------------------------
    @app.get("/api/fleet/summary", tags=["fleet"])
    def fleet_summary(
        found: Reader, window_s: Annotated[int, Query(ge=60, le=7 * 86_400)] = 300
    ) -> FleetSummary:
        summary = db.fleet_summary(now=context.clock(), window_s=window_s)
        if context.ingest_stats is not None:
            summary.ingest = context.ingest_stats()
        return summary

    @app.get("/api/results/summary", tags=["fleet"])
    def fleet_results(
        found: Reader,
        since: float | None = None,
        until: float | None = None,
        bucket_s: Annotated[int | None, Query(ge=1, le=86_400)] = None,
    ) -> ResultsSummary:
        return _results(None, since, until, bucket_s)

    @app.get("/api/events", tags=["fleet"])
    def fleet_events(
        found: Reader,
        since: float | None = None,
        kind: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[EventRecord]:
        return db.events(None, since=_since(since, context.clock(), 86_400), kind=kind, limit=limit)

    @app.get("/api/ingest/stats", tags=["fleet"])
    def ingest_stats(found: Reader) -> IngestStatsOut:
        if context.ingest_stats is None:
            raise StarletteHTTPException(404, "this controller runs no ingest")
        return context.ingest_stats()

    @app.get("/metrics", tags=["service"], response_class=PlainTextResponse)
    def metrics(found: Reader) -> PlainTextResponse:
        """Prometheus text format: devices by state, ingest counters, queue depth, lag."""
        body = controller_metrics(db, context.ingest_counters, context.queue_depth)
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @app.get(
        "/api/stream",
        tags=["fleet"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}},
    )
    async def stream(request: Request, found: Reader) -> StreamingResponse:
        """Server-Sent Events: ``hello`` once, then ``fleet`` whenever devices change (see docs)."""
        return StreamingResponse(
            _events(request, context.changes, http.stream_interval_s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


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
