"""HTTP endpoints of intake: post events, read an event's status."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from trace_service.access.http import CurrentPrincipal
from trace_service.contract.events import DEAD_LETTER_CODES
from trace_service.ingest.service import IntakeService

DEAD_LETTER_CODE = "^(" + "|".join(DEAD_LETTER_CODES) + ")$"

router = APIRouter(prefix="/v1", tags=["events"])


def _json(body: Any, status_code: int) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _service(request: Request) -> IntakeService:
    svc: IntakeService = request.app.state.intake
    return svc


@router.post(
    "/events",
    status_code=202,
    responses={
        200: {"description": "wait=true: every event applied or rejected"},
        202: {"description": "accepted: the broker acknowledged every event"},
        400: {"description": "malformed JSON"},
        403: {"description": "an event reports for an operator this key does not cover"},
        409: {"description": "an event_id is known with different content"},
        413: {"description": "body over the limit"},
        422: {"description": "an event is invalid; nothing was accepted"},
        503: {"description": "broker or database unavailable; retry after Retry-After"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One event envelope, or a JSON array of 1 to 1000 envelopes (contract section 2).",
            "content": {
                "application/json": {
                    "schema": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]}
                }
            },
        }
    },
)
async def post_events(
    request: Request,
    principal: CurrentPrincipal,
    wait: Annotated[bool, Query(description="wait (at most 10 s) until the events are applied")] = False,
) -> Any:
    body = await request.body()
    result = await _service(request).accept(body, principal, wait=wait)
    if result.statuses is None:
        return _json({"accepted": [str(i) for i in result.ids]}, 202)
    return _json(
        {"accepted": [str(i) for i in result.ids], "complete": result.complete, "events": result.statuses},
        200 if result.complete else 202,
    )


@router.get("/events/{event_id}")
async def event_status(request: Request, event_id: uuid.UUID, principal: CurrentPrincipal) -> Any:
    return await _service(request).status(principal, event_id)


@router.get("/dead-letters", tags=["events"])
async def dead_letters(
    request: Request,
    principal: CurrentPrincipal,
    cursor: Annotated[str | None, Query(max_length=20, description="next_cursor of the previous page")] = None,
    error_code: Annotated[
        str | None,
        Query(
            pattern="^(malformed_json|invalid_event|conflicting_duplicate|unapplicable|not_holder|lot_taken|lot_unknown|unauthenticated|forbidden)$"
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    """Messages of the events topic that could not be applied, newest first (regulators)."""
    return await _service(request).dead_letters(principal, cursor=cursor, code=error_code, limit=limit)
