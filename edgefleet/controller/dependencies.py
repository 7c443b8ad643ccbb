"""FastAPI dependencies every router shares: the controller context and who is calling.

A route states what it needs in its signature::

    @router.get("/api/things/{device_id}")
    def things(device_id: Device, found: Reader, context: Context) -> ...

``Reader`` accepts any authenticated caller (bearer token, or page session cookie with the CSRF
header on unsafe methods); ``Admin`` also needs the ``admin`` role; ``Device`` answers 404 for a
device the controller has never heard of. Failures raise :class:`AuthError`, which the app turns
into ``{"error": "unauthorized" | "forbidden", ...}`` (see :mod:`edgefleet.controller.http_errors`).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet.controller.auth import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    AuthError,
    Principal,
    authenticate_bearer,
    authenticate_session,
)
from edgefleet.controller.context import ControllerContext

__all__ = [
    "Admin",
    "Context",
    "Device",
    "Reader",
    "authenticate",
    "get_context",
    "known_device",
    "require_admin",
]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_context(request: Request) -> ControllerContext:
    """The :class:`ControllerContext` that ``create_app`` stored on the app."""
    context: ControllerContext = request.app.state.context
    return context


Context = Annotated[ControllerContext, Depends(get_context)]


def authenticate(request: Request, context: Context) -> Principal:
    """The caller, from ``Authorization: Bearer <token>`` or the session cookie (plus CSRF check)."""
    db = context.database
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


Reader = Annotated[Principal, Depends(authenticate)]


def require_admin(found: Reader) -> Principal:
    found.require("admin")
    return found


Admin = Annotated[Principal, Depends(require_admin)]


def known_device(context: Context, device_id: str) -> str:
    if context.database.get_device(device_id) is None:
        raise StarletteHTTPException(404, f"no device {device_id!r} is known to this controller")
    return device_id


Device = Annotated[str, Depends(known_device)]
