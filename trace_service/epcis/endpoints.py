"""HTTP endpoints of EPCIS 2.0 (contract section 10): capture, capture jobs, events, in the REST binding's
shapes. Errors leave as problem details (``epcis/problems.py``)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, HTTPException, Query, Request, Response

from trace_service.access.http import CurrentPrincipal
from trace_service.epcis import problems
from trace_service.epcis.service import DEFAULT_PER_PAGE, MAX_PER_PAGE, EpcisService

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


def _next_link(request: Request, token: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "nextPageToken"]
    params.append(("nextPageToken", token))
    return f'<{request.url.path}?{urlencode(params)}>; rel="next"'


@router.get("", include_in_schema=True, summary="The EPCIS and CBV versions this service speaks")
async def versions() -> Any:
    return _json({"epcisVersion": problems.EPCIS_VERSION, "cbvVersion": problems.CBV_VERSION})


@router.post(
    "/capture",
    status_code=202,
    response_model=None,
    summary="Capture an EPCIS 2.0 document (JSON or JSON-LD)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "An EPCISDocument of at most 1000 events",
            "content": {t: {"schema": {"type": "object"}} for t in CAPTURE_TYPES},
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


@router.get("/capture", response_model=None, summary="This key's capture jobs, newest first")
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


@router.get("/capture/{capture_id}", response_model=None, summary="A capture job and the state of its events")
async def capture_job(request: Request, capture_id: str, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    return _json(await _service(request).capture_job(principal, capture_id))


@router.get(
    "/events",
    response_model=None,
    summary="Query events: an EPCISQueryDocument, filtered by the standard's parameters, paged",
)
async def query_events(request: Request, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    page = await _service(request).query(principal, request.query_params.multi_items())
    headers = {"Link": _next_link(request, page.next_token)} if page.next_token else None
    return _json(page.body, headers=headers)


@router.get("/events/{event_id:path}", response_model=None, summary="One event by its eventID (URL-encoded)")
async def event(request: Request, event_id: str, principal: CurrentPrincipal) -> Any:
    _check_accept(request)
    return _json(await _service(request).event(principal, event_id))
