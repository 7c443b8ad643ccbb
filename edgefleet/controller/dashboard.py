"""Server-side help for the web dashboard: one overview endpoint for the fleet table.

The pages themselves are static files (``edgefleet/controller/static``, served at ``/static``).
The fleet table needs, per device, the registry row plus the latest throughput, p95 latency,
fallback share and drift score. Fetching those per device would be thousands of requests for a
large fleet, so ``GET /api/dashboard/overview`` answers a filtered, sorted page of them with
correlated subqueries over the ``(device_id, metric, ts)`` index: one statement for the page,
one for the fleet totals. ``api.create_app`` calls :func:`register` (see docs/controller.md).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgefleet.controller.auth import Principal
from edgefleet.controller.dal.sql import SqlConnection, SqlDatabase
from edgefleet.errors import EdgefleetError

if TYPE_CHECKING:
    from edgefleet.controller.api import ControllerContext

__all__ = [
    "OVERVIEW_METRICS",
    "PAGE_HEADERS",
    "TOTALS_TTL_S",
    "DashboardError",
    "OverviewCounts",
    "OverviewDevice",
    "OverviewPage",
    "OverviewSort",
    "PageHeadersMiddleware",
    "fleet_overview",
    "register",
    "router",
]

OverviewSort = Literal[
    "device_id",
    "online",
    "model_version",
    "last_seen",
    "throughput",
    "p95_latency_ms",
    "fallback_share",
    "drifted",
    "results_recent",
]

# Telemetry names from docs/architecture.md; the unlabelled series is the device-wide figure.
OVERVIEW_METRICS: dict[str, str] = {
    "throughput": "throughput_windows_per_s",
    "p95_latency_ms": "inference_latency_ms_p95",
    "fallback_share": "fallback_share",
}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OverviewDevice(_Out):
    device_id: str
    online: bool
    last_seen: float
    status_changed_at: float | None
    agent_version: str | None
    model_name: str | None
    model_version: str | None
    drifted: bool
    drift_score: float | None
    throughput: float | None
    p95_latency_ms: float | None
    fallback_share: float | None
    metrics_at: float | None
    results_recent: int
    """Results stored for this device in the last ``window_s`` seconds."""
    top_label: str | None


class OverviewCounts(_Out):
    total: int
    online: int
    offline: int
    drifted: int
    throughput: float
    """Sum of the latest throughput (windows/s) of the online devices."""
    fallback_share: float | None
    """Throughput-weighted mean of the online devices' latest fallback share."""


class OverviewPage(_Out):
    ts: float
    counts: OverviewCounts
    model_versions: dict[str, int]
    matched: int
    offset: int
    limit: int
    window_s: int
    devices: list[OverviewDevice]


class DashboardError(EdgefleetError):
    """The overview needs the SQL data-access layer."""


_LATEST = (
    "(SELECT t.value FROM telemetry_raw t WHERE t.device_id = d.device_id AND t.metric = ?"
    " ORDER BY t.ts DESC LIMIT 1)"
)
_LATEST_TS = (
    "(SELECT t.ts FROM telemetry_raw t WHERE t.device_id = d.device_id AND t.metric = ?"
    " ORDER BY t.ts DESC LIMIT 1)"
)
_DRIFT_SCORE = (
    "(SELECT r.score FROM drift_reports r WHERE r.device_id = d.device_id ORDER BY r.ts DESC, r.id DESC"
    " LIMIT 1)"
)
_RESULTS = (
    "(SELECT SUM(b.count) FROM result_buckets b WHERE b.device_id = d.device_id AND b.bucket_start >= ?)"
)
_TOP_LABEL = (
    "(SELECT b.label FROM result_buckets b WHERE b.device_id = d.device_id AND b.bucket_start >= ?"
    " GROUP BY b.label ORDER BY SUM(b.count) DESC, b.label LIMIT 1)"
)
_METRIC_PARAMS: tuple[str, ...] = (
    OVERVIEW_METRICS["throughput"],
    OVERVIEW_METRICS["p95_latency_ms"],
    OVERVIEW_METRICS["fallback_share"],
    OVERVIEW_METRICS["throughput"],
)
_COLUMNS = (
    "d.device_id, d.online, d.last_seen, d.status_changed_at, d.agent_version, d.model_name,"
    f" d.model_version, d.drifted, {_DRIFT_SCORE} AS drift_score, {_LATEST} AS throughput,"
    f" {_LATEST} AS p95_latency_ms, {_LATEST} AS fallback_share, {_LATEST_TS} AS metrics_at,"
    f" {_RESULTS} AS results_recent, {_TOP_LABEL} AS top_label"
)
# Sort keys: (SQL over `devices d`, its parameter: a metric name, "since" or nothing, nullable).
_SORT_KEYS: dict[str, tuple[str, str | None, bool]] = {
    "device_id": ("d.device_id", None, False),
    "online": ("d.online", None, False),
    "model_version": ("COALESCE(d.model_version, '')", None, False),
    "last_seen": ("d.last_seen", None, False),
    "drifted": ("d.drifted", None, False),
    "throughput": (_LATEST, OVERVIEW_METRICS["throughput"], True),
    "p95_latency_ms": (_LATEST, OVERVIEW_METRICS["p95_latency_ms"], True),
    "fallback_share": (_LATEST, OVERVIEW_METRICS["fallback_share"], True),
    "results_recent": (_RESULTS, "since", True),
}

# Fleet totals need only two figures per device: skip the page's other subqueries.
_TOTALS = (
    "SELECT COUNT(*), COALESCE(SUM(online), 0), COALESCE(SUM(drifted), 0),"
    " SUM(CASE WHEN online = 1 THEN throughput END),"
    " SUM(CASE WHEN online = 1 AND fallback_share IS NOT NULL THEN throughput * fallback_share END),"
    " SUM(CASE WHEN online = 1 AND fallback_share IS NOT NULL THEN throughput END)"
    f" FROM (SELECT d.online, d.drifted, {_LATEST} AS throughput, {_LATEST} AS fallback_share"
    " FROM devices d) o"
)
_TOTALS_PARAMS = (OVERVIEW_METRICS["throughput"], OVERVIEW_METRICS["fallback_share"])
_VERSIONS = "SELECT COALESCE(model_version, ''), COUNT(*) FROM devices GROUP BY 1 ORDER BY 1"


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(
    online: bool | None, model_version: str | None, search: str | None, drifted: bool | None
) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    if online is not None:
        where.append("online = ?")
        params.append(int(online))
    if drifted is not None:
        where.append("drifted = ?")
        params.append(int(drifted))
    if model_version is not None:
        where.append("COALESCE(model_version, '') = ?")
        params.append(model_version)
    if search:
        fields = (
            "device_id",
            "COALESCE(model_name, '')",
            "COALESCE(model_version, '')",
            "COALESCE(agent_version, '')",
        )
        where.append("(" + " OR ".join(f"LOWER({f}) LIKE ? ESCAPE '\\'" for f in fields) + ")")
        params.extend([_like(search)] * len(fields))
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


# The totals cost two index lookups per device in the fleet; pages refresh on every live event
# from every open browser, so they share one computation for this long.
TOTALS_TTL_S = 2.0
_totals_cache: weakref.WeakKeyDictionary[SqlDatabase, tuple[float, tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary()
)


def _fleet_totals(database: SqlDatabase, conn: SqlConnection) -> tuple[Any, ...]:
    cached = _totals_cache.get(database)
    if cached is not None and time.monotonic() - cached[0] < TOTALS_TTL_S:
        return cached[1]
    totals = tuple(conn.rows(_TOTALS, _TOTALS_PARAMS)[0])
    _totals_cache[database] = (time.monotonic(), totals)
    return totals


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def fleet_overview(
    database: Any,
    *,
    online: bool | None = None,
    model_version: str | None = None,
    search: str | None = None,
    drifted: bool | None = None,
    sort: OverviewSort = "device_id",
    descending: bool = False,
    limit: int = 100,
    offset: int = 0,
    window_s: int = 300,
    now: float | None = None,
) -> OverviewPage:
    """The fleet table's page plus fleet-wide counts, from the SQL database behind the controller."""
    if not isinstance(database, SqlDatabase):
        raise DashboardError(
            f"the dashboard overview needs a SQL database, got {type(database).__name__}",
            hint="run the controller with SQLite or PostgreSQL (database.url / database.sqlite_path)",
        )
    clause, params = _filters(online, model_version, search, drifted)
    now = time.time() if now is None else now
    since = now - window_s
    key, key_param, nullable = _SORT_KEYS[sort]
    key_params: list[object] = [] if key_param is None else [since if key_param == "since" else key_param]
    # Devices that never reported a figure sort last either way (only where a key can be NULL: the
    # clause keeps SQLite from walking an index in order).
    direction = f"{'DESC' if descending else 'ASC'}{' NULLS LAST' if nullable else ''}"
    # The inner select picks the page by one key; only the page's rows get every figure computed.
    page_sql = (
        f"SELECT {_COLUMNS} FROM (SELECT d.device_id AS page_id, {key} AS sort_key FROM devices d{clause}"
        f" ORDER BY sort_key {direction}, d.device_id LIMIT ? OFFSET ?) p"
        f" JOIN devices d ON d.device_id = p.page_id ORDER BY p.sort_key {direction}, d.device_id"
    )
    metric_params: Sequence[object] = (*_METRIC_PARAMS, since, since)
    with database._conn() as conn:
        rows = conn.rows(page_sql, [*metric_params, *key_params, *params, limit, offset])
        matched = int(conn.rows(f"SELECT COUNT(*) FROM devices{clause}", params)[0][0])
        totals = _fleet_totals(database, conn)
        versions = conn.rows(_VERSIONS)
    total, up, drift_count = int(totals[0]), int(totals[1]), int(totals[2])
    weighted, weight = _float(totals[4]), _float(totals[5])
    counts = OverviewCounts(
        total=total,
        online=up,
        offline=total - up,
        drifted=drift_count,
        throughput=_float(totals[3]) or 0.0,
        fallback_share=(weighted / weight) if weighted is not None and weight else None,
    )
    devices = [
        OverviewDevice(
            device_id=str(r[0]),
            online=bool(r[1]),
            last_seen=float(r[2]),
            status_changed_at=_float(r[3]),
            agent_version=r[4],
            model_name=r[5],
            model_version=r[6],
            drifted=bool(r[7]),
            drift_score=_float(r[8]),
            throughput=_float(r[9]),
            p95_latency_ms=_float(r[10]),
            fallback_share=_float(r[11]),
            metrics_at=_float(r[12]),
            results_recent=int(r[13] or 0),
            top_label=r[14],
        )
        for r in rows
    ]
    return OverviewPage(
        ts=now,
        counts=counts,
        model_versions={str(r[0]): int(r[1]) for r in versions},
        matched=matched,
        offset=offset,
        limit=limit,
        window_s=window_s,
        devices=devices,
    )


def _reader(request: Request) -> Principal:
    # The API's own authentication (bearer token or session cookie), imported late: api imports us.
    from edgefleet.controller.api import _principal

    return _principal(request)


router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])


@router.get("/overview", response_model=OverviewPage)
def overview(
    request: Request,
    found: Annotated[Principal, Depends(_reader)],
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
    context: ControllerContext = request.app.state.context
    page = fleet_overview(
        context.database,
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


def register(app: FastAPI, context: ControllerContext) -> None:
    """Called by ``api.create_app``: mount the dashboard's API routes and the pages' headers."""
    del context  # routes read it from app.state, like the API's own
    app.include_router(router)
    app.add_middleware(PageHeadersMiddleware)
