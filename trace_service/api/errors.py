"""One table from domain errors to HTTP status, and the contract's error body for every failure.

Every error leaves as ``{"error": {"code", "message", "details"}}``; an unexpected exception is
logged with its traceback and answered with a bare 500, never the trace.
"""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from trace_service.errors import (
    BadRequest,
    Conflict,
    DependencyDown,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
)

log = structlog.get_logger(__name__)

STATUS: dict[type[DomainError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    InvalidInput: 422,
    Overloaded: 503,
    DependencyDown: 503,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    headers = {}
    if isinstance(exc, DependencyDown | Overloaded):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = []
    malformed = False
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            malformed = True
        loc = [str(p) for p in err.get("loc", ())]
        details.append(
            {
                "field": ".".join(loc[1:]) or None,
                "in": loc[0] if loc else None,
                "type": err.get("type"),
                "message": err.get("msg"),
            }
        )
    if malformed:
        return error_response(400, "malformed_json", "the body is not valid JSON", details)
    return error_response(422, "invalid", "the request is not valid", details)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _database_down(request: Request, exc: Exception) -> Response:
    # Any request that needs Postgres (authentication included) while it does not answer.
    log.warning("database_unavailable", path=request.url.path, error=type(exc).__name__)
    return error_response(503, "unavailable", "the database is unavailable; retry later", headers={"Retry-After": "5"})


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
    return error_response(500, "internal", "an internal error occurred; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(InterfaceError, _database_down)
    app.add_exception_handler(ConnectionError, _database_down)
    app.add_exception_handler(Exception, _unexpected)
