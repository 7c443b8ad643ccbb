"""``/api/auth``: page login and logout (session cookie plus CSRF cookie), and who am I."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from edgefleet.controller.auth import CSRF_COOKIE, SESSION_COOKIE, hash_secret
from edgefleet.controller.dependencies import Context, Reader
from edgefleet.controller.login_throttle import LoginThrottle, throttled_login
from edgefleet.controller.schemas import Role

__all__ = ["LoginRequest", "Me", "router"]

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class Me(BaseModel):
    name: str
    role: Role
    via: Literal["token", "session"]
    csrf_token: str | None = None


@router.post("/login")
def auth_login(body: LoginRequest, request: Request, response: Response, context: Context) -> Me:
    http = context.config.http
    throttle: LoginThrottle = request.app.state.login_throttle
    source = request.client.host if request.client else "unknown"
    session, found = throttled_login(
        throttle, context.database, body.username, body.password, source=source, ttl_s=http.session_ttl_s
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


@router.post("/logout", status_code=204)
def auth_logout(request: Request, found: Reader, context: Context) -> Response:
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        context.database.delete_session(hash_secret(session))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/me")
def auth_me(found: Reader) -> Me:
    return Me(name=found.name, role=found.role, via=found.via)
