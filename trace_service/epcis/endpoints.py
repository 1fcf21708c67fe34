"""HTTP endpoints of EPCIS 2.0 (contract section 10): capture, capture jobs, events, in the REST binding's
shapes. Errors leave as problem details (``epcis/problems.py``)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response

from trace_service.access.http import CurrentPrincipal
from trace_service.epcis import models, problems
from trace_service.epcis.models import problem_answers
from trace_service.epcis.service import DEFAULT_PER_PAGE, LIST_PARAMETERS, MAX_PER_PAGE, TIME_PARAMETERS, EpcisService

router = APIRouter(prefix="/epcis", tags=["epcis"])

CAPTURE_TYPES = ("application/json", "application/ld+json")
ANSWER_TYPES = ("application/json", "application/ld+json", "application/problem+json")


def _service(request: Request) -> EpcisService:
    svc: EpcisService = request.app.state.epcis
    return svc


def _json(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json", headers=headers)


def _check_accept(request: Request) -> None:
    """406 when the client accepts no JSON answer (no Accept header accepts anything)."""
    accept = request.headers.get("accept")
    if not accept:
        return
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("*/*", "application/*", *ANSWER_TYPES):
            return
    raise HTTPException(406, f"the answers are JSON ({', '.join(ANSWER_TYPES[:2])}); Accept allows none of them")


_LINK = {
    "Link": {
        "description": 'the next page, `<...&nextPageToken=...>; rel="next"`; absent on the last page',
        "schema": {"type": "string"},
    }
}
_VERSIONS_HEADERS = {
    "GS1-EPCIS-Version": {"description": "the EPCIS version spoken", "schema": {"type": "string"}, "example": "2.0.0"},
    "GS1-CBV-Version": {"description": "the CBV version spoken", "schema": {"type": "string"}, "example": "2.0.0"},
}
_LIMIT_HEADER = {
    "GS1-EPCIS-Capture-Limit": {
        "description": "the most events one capture request may hold",
        "schema": {"type": "integer"},
        "example": 1000,
    }
}


def _ok(description: str, example: Any, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The example and headers of a success answer (its schema is the route's ``response_model``)."""
    return {
        "description": description,
        "content": {"application/json": {"example": example}},
        "headers": {**_VERSIONS_HEADERS, **(headers or {})},
    }


# The parameters of GET /epcis/events, documented here; the service reads them from the query string itself
# (repeatable, comma-separated, unknown names refused), so FastAPI does not parse them.
_DESCRIPTIONS = {
    "eventType": "event types, e.g. `ObjectEvent,TransformationEvent`",
    "EQ_action": "`ADD`, `OBSERVE`, `DELETE`",
    "EQ_bizStep": "CBV short names, `https://ref.gs1.org/cbv/BizStep-…` URIs or `urn:epcglobal:cbv:bizstep:…` URNs",
    "EQ_disposition": "CBV short names or URIs",
    "EQ_readPoint": "the `id` of the read point",
    "EQ_bizLocation": "the `id` of the business location",
    "MATCH_epc": "EPCs of `epcList` or `childEPCs`",
    "MATCH_anyEPC": "EPCs of any list and `parentID`, e.g. `urn:zs-trace:lot:IM2026120100017`",
    "MATCH_parentID": "the `parentID`",
    "MATCH_inputEPC": "EPCs of `inputEPCList`",
    "MATCH_outputEPC": "EPCs of `outputEPCList`",
    "MATCH_epcClass": "`epcClass` of `quantityList` or `childQuantityList`",
    "MATCH_anyEPCClass": "`epcClass` of any quantity list",
    "EQ_eventID": "eventIDs",
}
QUERY_PARAMETERS: list[dict[str, Any]] = (
    [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{_DESCRIPTIONS[name]}; a comma-separated value is an OR of its parts",
            "schema": {"type": "string", "maxLength": 2000},
        }
        for name in LIST_PARAMETERS
    ]
    + [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": "a time with an offset",
            "schema": {"type": "string", "format": "date-time"},
            "example": "2026-12-01T00:00:00+08:00",
        }
        for name in TIME_PARAMETERS
    ]
    + [
        {
            "name": "perPage",
            "in": "query",
            "required": False,
            "description": f"events per page (default {DEFAULT_PER_PAGE})",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": DEFAULT_PER_PAGE},
        },
        {
            "name": "nextPageToken",
            "in": "query",
            "required": False,
            "description": "from the `Link` of the previous page, with the same other parameters",
            "schema": {"type": "string", "maxLength": 200},
        },
    ]
)


def _next_link(request: Request, token: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
    params.append(("nextPageToken", token))
    return f'<{request.url.path}?{urlencode(params)}>; rel="next"'


@router.get(
    "",
    response_model=models.EpcisVersions,
    summary="The EPCIS and CBV versions this service speaks",
    responses={200: _ok("the versions", models.VERSIONS_EXAMPLE, _LIMIT_HEADER)},
)
async def versions() -> Any:
    return _json({"epcisVersion": problems.EPCIS_VERSION, "cbvVersion": problems.CBV_VERSION})


@router.post(
    "/capture",
    status_code=202,
    response_class=Response,
    summary="Capture an EPCIS 2.0 document (JSON or JSON-LD)",
    responses={
        202: {
            "description": "accepted: the events go to the worker; follow the job at `Location`",
            "headers": {
                "Location": {
                    "description": "the capture job, `/epcis/capture/{captureID}`",
                    "schema": {"type": "string"},
                    "example": "/epcis/capture/6c0d7e0e-2f39-4d56-9a53-2b1f0f3b1c55",
                },
                **_VERSIONS_HEADERS,
                **_LIMIT_HEADER,
            },
        },
        **problem_answers(400, 401, 403, 406, 409, 413, 415, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "An EPCISDocument of at most `GS1-EPCIS-Capture-Limit` (1000) events, checked whole "
            "against the standard's JSON Schema; any problem refuses all of it",
            "content": {
                t: {"schema": {"$ref": models.DOCUMENT_REF}, "examples": models.CAPTURE_EXAMPLES[t]}
                for t in CAPTURE_TYPES
            },
        }
    },
)
async def capture(request: Request, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in CAPTURE_TYPES:
        raise HTTPException(415, f"send the document as {' or '.join(CAPTURE_TYPES)}")
    body = await request.body()
    captured = await _service(request).capture(body, principal)
    return Response(status_code=202, headers={"Location": f"/epcis/capture/{captured.capture_id}"})


@router.get(
    "/capture",
    response_model=list[models.EpcisCaptureJob],
    summary="This key's capture jobs, newest first",
    responses={
        200: _ok("a page of jobs", [models.JOB_EXAMPLE], {**_LINK, **_LIMIT_HEADER}),
        **problem_answers(400, 401, 403, 406, 503, refused="query"),
    },
)
async def capture_jobs(
    request: Request,
    principal: CurrentPrincipal,
    per_page: Annotated[int, Query(alias="perPage", ge=1, le=MAX_PER_PAGE)] = DEFAULT_PER_PAGE,
    next_page_token: Annotated[str | None, Query(alias="nextPageToken", max_length=200)] = None,
) -> Any:
    _check_accept(request)
    page = await _service(request).capture_jobs(principal, per_page=min(per_page, 100), token=next_page_token)
    headers = {"Link": _next_link(request, page.next_token)} if page.next_token else None
    return _json(page.body["captureJobs"], headers=headers)


@router.get(
    "/capture/{capture_id}",
    response_model=models.EpcisCaptureJob,
    summary="A capture job and the state of its events",
    responses={
        200: _ok("the job", models.JOB_EXAMPLE, _LIMIT_HEADER),
        **problem_answers(400, 401, 403, 404, 406, 503, refused="path"),
    },
)
async def capture_job(request: Request, capture_id: str, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    return _json(await _service(request).capture_job(principal, capture_id))


@router.get(
    "/events",
    response_model=models.EpcisQueryDocument,
    summary="Query events: an EPCISQueryDocument, filtered by the standard's parameters, paged",
    responses={
        200: _ok("a page of events", models.QUERY_EXAMPLE, _LINK),
        **problem_answers(400, 401, 403, 406, 503, refused="query"),
    },
    openapi_extra={"parameters": QUERY_PARAMETERS},
)
async def query_events(request: Request, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    page = await _service(request).query(principal, request.query_params.multi_items())
    headers = {"Link": _next_link(request, page.next_token)} if page.next_token else None
    return _json(page.body, headers=headers)


@router.get(
    "/events/{event_id:path}",
    response_model=models.EpcisEventWithContext,
    summary="One event by its eventID (URL-encoded)",
    responses={
        200: _ok("the event, with its `@context`", models.EVENT_EXAMPLE),
        **problem_answers(400, 401, 403, 404, 406, 503, refused="path"),
    },
)
async def event(request: Request, event_id: str, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    return _json(await _service(request).event(principal, event_id))
