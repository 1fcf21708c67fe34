"""The error shape of the EPCIS REST binding under ``/epcis``: RFC 7807 problem details.

Everything below ``/epcis`` fails like the rest of the API first (the domain errors, the one table in
``api/errors.py``, the body and header limits, the boundary for the unexpected), and :class:`EpcisShape`,
an ASGI middleware around all of it, rewrites the contract's ``{"error": {...}}`` body of those answers into
``application/problem+json``::

    {"type": "epcisException:ValidationException", "title": "...", "status": 400, "errors": [...]}

So the classification of failures stays in one place, and no answer under ``/epcis`` leaves in the other
shape, whichever layer produced it. The middleware also puts the versions headers (``GS1-EPCIS-Version``,
``GS1-CBV-Version``, and ``GS1-EPCIS-Capture-Limit`` on capture) on every answer under ``/epcis``.

An EPCIS exception type that the status alone does not tell (a query parameter against a validation
problem) travels as the domain error's ``code``: :class:`Problem` builds such errors.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trace_service.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
)

PREFIX = "/epcis"
EPCIS_VERSION = "2.0.0"
CBV_VERSION = "2.0.0"
MEDIA_TYPE = "application/problem+json"

VALIDATION = "epcisException:ValidationException"
QUERY_PARAMETER = "epcisException:QueryParameterException"
SECURITY = "epcisException:SecurityException"
NO_SUCH_RESOURCE = "epcisException:NoSuchResourceException"
NOT_ACCEPTABLE = "epcisException:NotAcceptableException"
CAPTURE_LIMIT = "epcisException:CaptureLimitExceededException"
QUERY_TOO_COMPLEX = "epcisException:QueryTooComplexException"
URI_TOO_LONG = "epcisException:URITooLongException"
UNSUPPORTED_MEDIA_TYPE = "epcisException:UnsupportedMediaTypeException"
ALREADY_EXISTS = "epcisException:ResourceAlreadyExistsException"
IMPLEMENTATION = "epcisException:ImplementationException"


def _by_status(status: int, path: str) -> str:
    capture = path.startswith(f"{PREFIX}/capture")
    if status in (400, 422):
        return VALIDATION if capture else QUERY_PARAMETER
    if status == 413:
        return CAPTURE_LIMIT if capture else QUERY_TOO_COMPLEX
    return {
        401: SECURITY,
        403: SECURITY,
        404: NO_SUCH_RESOURCE,
        406: NOT_ACCEPTABLE,
        409: ALREADY_EXISTS,
        414: URI_TOO_LONG,
        415: UNSUPPORTED_MEDIA_TYPE,
    }.get(status, IMPLEMENTATION if status >= 500 or status == 429 else "about:blank")


def problem(
    status: int, type_: str, title: str, *, errors: list[Any] | None = None, detail: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return body


def reshape(status: int, body: bytes, path: str) -> tuple[int, bytes]:
    """The problem-details answer for a contract error body (any other body is kept as it is)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return status, body
    code = str(error.get("code") or "")
    type_ = code if code.startswith("epcisException:") else _by_status(status, path)
    # The binding answers a document or a parameter it refuses with 400, where the contract says 422.
    if status == 422:
        status = 400
    details = error.get("details") or None
    return status, orjson.dumps(problem(status, type_, str(error.get("message") or type_), errors=details))


class EpcisShape:
    """Rewrites error answers under ``/epcis`` into problem details, and adds the versions headers."""

    def __init__(self, app: ASGIApp, capture_limit: int) -> None:
        self.app = app
        self.capture_limit = capture_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        extra = [(b"gs1-epcis-version", EPCIS_VERSION.encode()), (b"gs1-cbv-version", CBV_VERSION.encode())]
        if path.startswith(f"{PREFIX}/capture") or path == PREFIX:
            extra.append((b"gs1-epcis-capture-limit", str(self.capture_limit).encode()))
        held: Message | None = None
        chunks: list[bytes] = []

        async def shaped_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                content_type = dict(headers).get(b"content-type", b"")
                if message["status"] >= 400 and content_type.startswith(b"application/json"):
                    held = {**message, "headers": headers}  # answered once the whole body is here
                    return
                await send({**message, "headers": headers + extra})
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = reshape(held["status"], b"".join(chunks), path)
            kept = [(k, v) for k, v in held["headers"] if k not in (b"content-type", b"content-length")]
            headers = [
                *kept,
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, shaped_send)


# -- errors the EPCIS endpoints raise ----------------------------------------------------------------------


def invalid(message: str, errors: list[Any] | None = None) -> DomainError:
    """400 ``ValidationException``: the document (or an event of it) is refused; nothing was captured."""
    return BadRequest(message, details=errors, code=VALIDATION)


def bad_query(message: str, errors: list[Any] | None = None) -> DomainError:
    """400 ``QueryParameterException``."""
    return BadRequest(message, details=errors, code=QUERY_PARAMETER)


def forbidden(message: str, errors: list[Any] | None = None) -> DomainError:
    return Forbidden(message, details=errors, code=SECURITY)


def not_found(message: str) -> DomainError:
    return NotFound(message, code=NO_SUCH_RESOURCE)


def too_many(message: str) -> DomainError:
    return PayloadTooLarge(message, code=CAPTURE_LIMIT)


def conflict(message: str, errors: list[Any] | None = None) -> DomainError:
    return Conflict(message, details=errors, code=ALREADY_EXISTS)
