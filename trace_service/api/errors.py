"""One table from failures to HTTP status, and the contract's error body for every failure.

Every error leaves as ``{"error": {"code", "message", "details"}}``:

* domain errors by the :data:`STATUS` table;
* a dependency that does not answer (Postgres or the broker, however its driver says so) as 503
  ``unavailable`` with ``Retry-After``, decided by :func:`dependency_down` alone;
* a value Postgres refuses (SQLSTATE class 22) as 422: validation should have caught it first, so it
  is also logged with its traceback;
* anything else as a bare 500 ``internal``, logged with its traceback, never shown.

:class:`ErrorBoundary` answers what escapes the exception handlers. It sits inside Starlette's
``ServerErrorMiddleware``, which answers and then re-raises, so that uvicorn closes the kept-alive
connection after every 500; the boundary answers without re-raising, and the connection stays usable.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import asyncpg
import orjson
import sqlalchemy.exc
import structlog
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
from trace_service.web.pages import is_page, unavailable_page

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
    431: "headers_too_large",
    503: "unavailable",
}

# Seconds a client is asked to wait when a dependency is down and no setting is at hand.
DEFAULT_RETRY_AFTER = 5

# What drivers raise when the other side is not there. asyncpg raises the OS's own errors while it
# connects (a refused TCP port, a missing Unix socket file: FileNotFoundError), its protocol classes
# once connected, and SQLAlchemy wraps some of them (DBAPIError, with the original as ``orig``).
_DOWN_CLASSES: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,  # also asyncio.TimeoutError: a connect or statement that did not finish in time
    socket.gaierror,  # the database host's name does not resolve
    asyncpg.PostgresConnectionError,  # class 08: connection failure, ConnectionDoesNotExistError
    asyncpg.InterfaceError,  # "connection is closed", "connection was released", ...
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutting down, starting up, statement timeout
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full, out of memory
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # the connection pool had nothing to lend in time
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    KafkaConnectionError,
    KafkaTimeoutError,
)
_DOWN_ERRNOS = {
    errno.ENOENT,  # a Unix socket path whose server is stopped
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.EHOSTDOWN,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EADDRNOTAVAIL,
}


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps: SQLAlchemy's ``orig``, explicit causes, implicit contexts."""
    seen: list[BaseException] = []
    pending = [exc]
    while pending and len(seen) < 32:  # a bound, should a chain ever loop
        current = pending.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException):
            pending.append(orig)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
        if current.__context__ is not None and not current.__suppress_context__:
            pending.append(current.__context__)
    return seen


def _is_down(exc: BaseException) -> bool:
    if isinstance(exc, _DOWN_CLASSES):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OSError) and exc.errno in _DOWN_ERRNOS


def dependency_down(exc: BaseException) -> bool:
    """Whether ``exc`` says that Postgres or the broker does not answer (anywhere in its chain)."""
    if isinstance(exc, BaseExceptionGroup):
        # Task groups (streaming responses) gather failures: every one must be an outage, as a bug next
        # to an outage is still a bug.
        return all(dependency_down(e) for e in exc.exceptions)
    return any(_is_down(e) for e in _causes(exc))


def _refused_value(exc: BaseException) -> bool:
    """Postgres (or asyncpg encoding a parameter) refused a value: SQLSTATE class 22."""
    return any(isinstance(e, asyncpg.exceptions.DataError) for e in _causes(exc))


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _retry_after(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return int(getattr(settings, "retry_after_seconds", DEFAULT_RETRY_AFTER))


def unavailable(
    request: Request, message: str, retry_after: int, *, code: str = "unavailable", details: list[Any] | None = None
) -> Response:
    """The 503 of a dependency that is down: JSON for the API, a small page for a browser's page."""
    headers = {"Retry-After": str(retry_after), "Cache-Control": "no-store"}
    if is_page(request.url.path):
        return unavailable_page(retry_after, headers)
    return error_response(503, code, message, details, headers)


def response_for(request: Request, exc: Exception) -> Response:
    """The answer to a failure that no specific handler took."""
    if isinstance(exc, DomainError):
        return _domain_response(request, exc)
    if dependency_down(exc):
        log.warning(
            "dependency_unavailable", path=request.url.path, method=request.method, error=type(exc).__name__,
            detail=str(exc)[:200],
        )  # fmt: skip
        message = "a dependency (database or broker) is unavailable; retry later"
        return unavailable(request, message, _retry_after(request))
    if _refused_value(exc):
        # Validation let through a value the store cannot take: a defect worth its traceback, but the
        # client sent the value, so it hears 422 rather than 500.
        log.error("value_refused_by_store", path=request.url.path, method=request.method, exc_info=exc)
        return error_response(422, "invalid", "a value in the request cannot be stored", [{"message": str(exc)[:200]}])
    log.error("unhandled_error", path=request.url.path, method=request.method, exc_info=exc)
    return error_response(500, "internal", "an internal error occurred; it has been logged")


def _domain_response(request: Request, exc: DomainError) -> Response:
    if isinstance(exc, DependencyDown | Overloaded):
        return unavailable(request, exc.message, exc.retry_after, code=exc.code, details=exc.details)
    status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return error_response(status, exc.code, exc.message, exc.details, headers)


async def _domain(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return _domain_response(request, exc)


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


async def _any(request: Request, exc: Exception) -> Response:
    return response_for(request, exc)


class ErrorBoundary:
    """Answers every exception that reaches it, then returns normally so the connection stays open.

    Once a response has started (a stream that failed half-way) there is nothing honest left to send:
    the exception goes on, and the server closes the connection, which tells the client the answer is
    incomplete.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            if started:
                raise
            response = response_for(Request(scope, receive), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """The handlers of known failures, and the boundary for the rest (add it after other middleware, so
    that it wraps them all)."""
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    # Drivers' errors are classified in one place, whatever class the driver picked.
    for cls in (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, sqlalchemy.exc.SQLAlchemyError):
        app.add_exception_handler(cls, _any)
    # The last resort of Starlette's ServerErrorMiddleware, should anything fail outside the boundary.
    app.add_exception_handler(Exception, _any)
