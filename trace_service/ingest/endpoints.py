"""HTTP endpoints of intake: post events, read an event's status."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from trace_service.access.http import CurrentPrincipal
from trace_service.contract.events import DEAD_LETTER_CODES
from trace_service.contract.responses import AUTHENTICATED, errors
from trace_service.ingest.models import DeadLetterPage, EventsAccepted, EventStatus, EventsWaited
from trace_service.ingest.service import IntakeService

DEAD_LETTER_CODE = "^(" + "|".join(DEAD_LETTER_CODES) + ")$"

router = APIRouter(prefix="/v1", tags=["events"])


def _json(body: Any, status_code: int) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _service(request: Request) -> IntakeService:
    svc: IntakeService = request.app.state.intake
    return svc


def _error(code: str, message: str, details: list[Any]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


# What intake answers beyond the shared examples (docs/api.md, "POST /v1/events").
_EVENT_ERRORS = {
    403: {
        "forbidden": {
            "summary": "an event reports for an operator outside the key's tree",
            "value": _error(
                "forbidden",
                "this key may not report these events; nothing was accepted",
                [{"index": 0, "field": "operator", "message": "442000600099 is not this key's operator or under it"}],
            ),
        },
        "not_holder": {
            "summary": "an event speaks about another operator's lot",
            "value": _error(
                "not_holder",
                "these events speak about lots this key's operators do not hold; nothing was accepted",
                [{"index": 0, "field": "data.lot", "lot": "ST2026112500012", "message": "not held by this operator"}],
            ),
        },
        "operator_suspended": {
            "summary": "the key's own operator is suspended",
            "value": _error("operator_suspended", "the operator of this key is suspended", []),
        },
    },
    409: {
        "conflict": {
            "summary": "an event_id is known with other content",
            "value": _error(
                "conflict",
                "an event_id is already known with different content",
                [{"index": 0, "event_id": "a74950ea-b446-4356-b9f0-1188ccbdecd6", "message": "different content"}],
            ),
        },
        "lot_taken": {
            "summary": "an event creates a code another operator holds",
            "value": _error(
                "lot_taken",
                "these lot codes are held by another operator; nothing was accepted",
                [{"index": 0, "field": "data.sale_code", "lot": "RS20261125060012037", "message": "held by another"}],
            ),
        },
    },
    422: {
        "invalid": {
            "summary": "an item is invalid; nothing was accepted",
            "value": _error(
                "invalid",
                "the events are not valid; nothing was accepted",
                [
                    {
                        "index": 1,
                        "field": "data.weight_kg",
                        "type": "greater_than",
                        "message": "Input should be greater than 0",
                    }
                ],
            ),
        }
    },
}


@router.post(
    "/events",
    status_code=202,
    response_model=None,
    responses={
        200: {"model": EventsWaited, "description": "wait=true: every event applied or rejected in time"},
        202: {
            "model": EventsAccepted | EventsWaited,
            "description": "accepted: the broker acknowledged every event (with wait=true: not all decided in time)",
        },
        **errors(400, *AUTHENTICATED, 409, 413, 422, 503, examples=_EVENT_ERRORS),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One event envelope, or a JSON array of 1 to 1000 envelopes (contract section 2).",
            # The envelope schema depends on the deployment's code patterns: api/openapi.py fills it in,
            # with the files of events/examples/ as named examples.
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBody"}}},
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


@router.get(
    "/events/{event_id}",
    response_model=None,
    responses={200: {"model": EventStatus}, **errors(*AUTHENTICATED, 404, 422, 503)},
)
async def event_status(request: Request, event_id: uuid.UUID, principal: CurrentPrincipal) -> Any:
    return await _service(request).status(principal, event_id)


@router.get(
    "/dead-letters",
    tags=["events"],
    response_model=None,
    responses={200: {"model": DeadLetterPage}, **errors(*AUTHENTICATED, 422, 503)},
)
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
