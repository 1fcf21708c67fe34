"""One check, on every route, that the text of a request is text Postgres can store.

Postgres refuses the NUL character in ``text`` and ``jsonb``, and a lone surrogate cannot even be
encoded to UTF-8 for it; a value with either that reached a query used to be a 500. The contract's
event models refuse them field by field (``contract.events.storable_text``); this dependency applies the
same rule to what the other routes take: path parameters, query parameters and JSON bodies. The answer
is the usual 422 naming the field (``{"field", "in", "type", "message"}``).

The body is walked only when its bytes hold a ``\\u0000`` or surrogate escape (JSON has no other way of
carrying either), so an ordinary body costs one scan. ``POST /v1/events`` declares no body model: it
validates its raw body with the contract's own models, which already say which item and field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from trace_service.contract.events import storable_text

# A \u escape of NUL or of a surrogate half, preceded by an even number of backslashes (an odd number
# would make it the literal text "\u0000").
_SUSPECT_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_MAX_PROBLEMS = 20


def _problem(where: str, loc: tuple[str | int, ...], value: str) -> dict[str, Any] | None:
    try:
        storable_text(value)
    except ValueError as exc:
        return {"type": "string_not_storable", "loc": (where, *loc), "msg": str(exc), "input": None}
    return None


def _strings(value: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string of a parsed JSON value, keys included, with where it lies."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*loc, str(key)), str(key)
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*loc, index))


async def storable_request_text(request: Request) -> None:
    """An app-wide dependency: refuse a request whose text Postgres cannot store, before any query."""
    problems: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and (found := _problem("path", (name,), value)):
            problems.append(found)
    for name, value in request.query_params.multi_items():
        if found := _problem("query", (name,), value):
            problems.append(found)
    route = request.scope.get("route")
    json_body = "json" in request.headers.get("content-type", "")
    if isinstance(route, APIRoute) and route.body_field is not None and json_body:
        body = await request.body()  # already read (and kept) by FastAPI for the body model
        if _SUSPECT_ESCAPE.search(body):
            try:
                parsed = await request.json()
            except ValueError:
                parsed = None  # not JSON: FastAPI has said so already, or will
            for loc, value in _strings(parsed):
                if found := _problem("body", loc, value):
                    problems.append(found)
                if len(problems) >= _MAX_PROBLEMS:
                    break
    if problems:
        raise RequestValidationError(problems[:_MAX_PROBLEMS])
