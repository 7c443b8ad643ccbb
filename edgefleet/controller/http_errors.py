"""One error shape for every route: ``{"error": "<code>", "message": "...", "hint": "..."}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet.controller.auth import AuthError
from edgefleet.controller.commands import CommandError
from edgefleet.controller.login_throttle import LoginThrottledError

__all__ = ["ErrorBody", "error_response", "install_error_handlers"]


class ErrorBody(BaseModel):
    error: str
    message: str
    hint: str | None = None


def error_response(
    status: int, code: str, message: str, hint: str | None = None, **extra: Any
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body: dict[str, Any] = {"error": code, "message": message, "hint": hint, **extra}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Turn every error the routes raise into :class:`ErrorBody`'s shape."""

    @app.exception_handler(LoginThrottledError)
    async def _throttled(request: Request, exc: LoginThrottledError) -> JSONResponse:
        reply = error_response(429, "too_many_requests", exc.message, exc.hint)
        reply.headers["Retry-After"] = str(int(exc.retry_after_s + 0.999))
        return reply

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        code = "unauthorized" if exc.status == 401 else "forbidden"
        return error_response(exc.status, code, exc.message, exc.hint)

    @app.exception_handler(CommandError)
    async def _command_error(request: Request, exc: CommandError) -> JSONResponse:
        code = "not_found" if exc.status == 404 else "invalid_command"
        return error_response(exc.status, code, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [
            {"where": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]} for err in exc.errors()
        ]
        summary = "; ".join(f"{i['where']}: {i['problem']}" for i in issues[:5])
        return error_response(
            422, "invalid_request", f"the request is invalid: {summary}", None, issues=issues
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))
