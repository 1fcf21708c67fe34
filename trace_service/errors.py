"""Domain errors with a stable ``code``.

The API maps each class to an HTTP status and the contract's error body in one table
(:mod:`trace_service.api.errors`); the worker maps them to retry or dead-letter.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, details: list[Any] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code is not None:
            self.code = code


class BadRequest(DomainError):
    code = "bad_request"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    code = "forbidden"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class InvalidInput(DomainError):
    code = "invalid"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class Overloaded(DomainError):
    """Too much in flight: the client should retry after a pause."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DependencyDown(DomainError):
    """Postgres or the broker does not answer."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
