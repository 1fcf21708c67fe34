"""The error body of the contract (section 4) as a model, and the OpenAPI answers built on it.

Every failure leaves the API as ``{"error": {"code", "message", "details"}}`` (see
:mod:`trace_service.api.errors`). :func:`errors` gives an endpoint decorator the ``responses=`` value
that documents the statuses it can answer with that body, one example each, so that a client generated
from the OpenAPI document gets the error type the API really sends. It is plain pydantic and dicts:
``contract`` imports no framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorInfo(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "not_found",
                    "message": "no operator 440100000001",
                    "details": [],
                }
            ]
        },
    )

    code: str = Field(
        description="stable, machine-readable reason (`invalid`, `not_found`, `lot_taken`, ...)",
        examples=["invalid"],
    )
    message: str = Field(
        description="what went wrong, for a person; not to be parsed", examples=["the request is not valid"]
    )
    details: list[Any] = Field(
        description="what the code needs to explain itself: for `invalid`, one entry per refused field "
        "(`field`, `in`, `type`, `message`); otherwise often empty",
        examples=[[]],
    )


class ErrorBody(BaseModel):
    """The body of every error answer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "invalid",
                        "message": "the request is not valid",
                        "details": [
                            {
                                "field": "limit",
                                "in": "query",
                                "type": "less_than_equal",
                                "message": "Input should be less than or equal to 500",
                            }
                        ],
                    }
                }
            ]
        },
    )

    error: ErrorInfo


def _body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


# Named examples per status, as the API words them (api/errors.py, api/limits.py, the domain errors).
# A status with several codes (503: a dependency down or too much in flight) shows each.
EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    400: {
        "malformed_json": {
            "summary": "the body is not JSON",
            "value": _body(
                "malformed_json",
                "the body is not valid JSON",
                [{"field": "12", "in": "body", "type": "json_invalid", "message": "JSON decode error"}],
            ),
        }
    },
    401: {
        "unauthorized": {
            "summary": "no key, or an unknown or revoked one",
            "value": _body("unauthorized", "an API key is required: Authorization: Bearer <key>"),
        }
    },
    403: {
        "forbidden": {
            "summary": "the key's role or operator does not allow this",
            "value": _body("forbidden", "this key may not do this"),
        }
    },
    404: {
        "not_found": {
            "summary": "unknown code or id",
            "value": _body("not_found", "no such code or id"),
        }
    },
    409: {
        "conflict": {
            "summary": "the state on the server does not allow it",
            "value": _body("conflict", "it already exists with other details"),
        }
    },
    413: {
        "payload_too_large": {
            "summary": "the body is over TRACE_BODY_LIMIT_BYTES",
            "value": _body("payload_too_large", "the body is over the limit of 5242880 bytes"),
        }
    },
    422: {
        "invalid": {
            "summary": "a field, parameter or value is refused",
            "value": _body(
                "invalid",
                "the request is not valid",
                [
                    {
                        "field": "limit",
                        "in": "query",
                        "type": "less_than_equal",
                        "message": "Input should be less than or equal to 500",
                    }
                ],
            ),
        }
    },
    429: {
        "rate_limited": {
            "summary": "too many requests from this key",
            "value": _body("rate_limited", "too many requests; retry later"),
        }
    },
    503: {
        "unavailable": {
            "summary": "Postgres or the broker does not answer",
            "value": _body("unavailable", "a dependency (database or broker) is unavailable; retry later"),
        },
        "overloaded": {
            "summary": "too many requests in flight",
            "value": _body("overloaded", "too many requests in flight; retry later"),
        },
    },
}

DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON or a request the operation cannot read",
    401: "No API key, or an unknown, malformed or revoked one",
    403: "The key's role or operator may not do this",
    404: "Unknown code, id or path",
    409: "Conflict with what the server holds",
    413: "The body is over the limit",
    422: "Invalid input (fields, parameters or values)",
    429: "Rate limited",
    503: "A dependency is down or the service is overloaded; retry after `Retry-After` seconds",
}

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "schema": {"type": "integer", "minimum": 0},
        "example": 5,
    }
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "the scheme the API expects",
        "schema": {"type": "string"},
        "example": "Bearer",
    }
}
_HEADERS: dict[int, dict[str, dict[str, Any]]] = {401: _WWW_AUTHENTICATE, 429: _RETRY_AFTER, 503: _RETRY_AFTER}


def errors(
    *statuses: int, examples: Mapping[int, Mapping[str, Mapping[str, Any]]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A ``responses=`` value documenting ``statuses`` with :class:`ErrorBody` and examples.

    ``examples`` replaces the default named examples of a status (``{409: {"lot_taken": {"summary":
    ..., "value": {...}}}}``) where an operation has more telling ones. Combine with other answers by
    unpacking: ``responses={**errors(404, 503), 200: {...}}``.
    """
    own = examples or {}
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status not in DESCRIPTIONS:
            raise ValueError(f"no error answer is defined for status {status}")
        named = own.get(status, EXAMPLES[status])
        answer: dict[str, Any] = {
            "model": ErrorBody,
            "description": DESCRIPTIONS[status],
            "content": {"application/json": {"examples": {name: dict(ex) for name, ex in named.items()}}},
        }
        if status in _HEADERS:
            answer["headers"] = _HEADERS[status]
        out[status] = answer
    return out


# The answers most operations share, for readability at the decorators.
AUTHENTICATED = (401, 403)
