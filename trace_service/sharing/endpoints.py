"""HTTP endpoints of sharing: the pull feed, the streamed exports and the audit (contract section 9)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from trace_service.access.http import CurrentPrincipal, CurrentSettings, UnitOfWork, get_engine, get_read_engine
from trace_service.contract.events import Time
from trace_service.contract.responses import errors
from trace_service.sharing import service
from trace_service.sharing.models import AuditPage, FeedPage

router = APIRouter(prefix="/v1", tags=["sharing"])

MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_NDJSON_EXAMPLE = (
    '{"event_id":"7f0c1c5e-6a6b-4a8e-9a51-0d1b0f3a9b11","event_type":"lot.tested",'
    '"occurred_at":"2026-11-25T03:40:00+08:00","operator":"442000300001","data":{"lot":"VG20261125000001",'
    '"test":"pesticide_rapid","method":"enzyme inhibition","value":12.5,"result":"pass"},'
    '"recorded_at":"2026-11-25T03:40:01.204+08:00","source":"api"}\n'
)
_CSV_EXAMPLE = (
    "event_id,event_type,occurred_at,operator,recorded_at,source,data\r\n"
    "7f0c1c5e-6a6b-4a8e-9a51-0d1b0f3a9b11,lot.tested,2026-11-25T03:40:00+08:00,442000300001,"
    '2026-11-25T03:40:01.204+08:00,api,"{""lot"":""VG20261125000001"",""result"":""pass""}"\r\n'
)


@router.get("/feed", response_model=FeedPage, responses=errors(401, 403, 422, 503))
async def feed(
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    settings: CurrentSettings,
    after: Annotated[int, Query(ge=0, le=2**62, description="the `next` of the previous page; 0 to start")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    """The shared stream after a cursor, within the key's scopes (departments, regulators and admins).

    Loop: start with ``after=0``, then pass each answer's ``next`` as ``after``. An empty page means nothing
    new yet: ask again later with the same ``after``. ``next`` may move past items the key's scopes skip.
    """
    body = await service.feed(conn, principal, after, limit, scan=settings.feed_scan_rows)
    return Response(body, media_type="application/json")


@router.get(
    "/exports/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the events, oldest first: one JSON envelope a line (ndjson) or one CSV row each",
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}, "example": _NDJSON_EXAMPLE},
                "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
            },
        },
        **errors(401, 403, 422, 503),
    },
)
async def export_events(
    request: Request,
    conn: UnitOfWork,
    principal: CurrentPrincipal,
    settings: CurrentSettings,
    from_: Annotated[Time, Query(alias="from", description="occurred at or after (RFC 3339 with offset)")],
    to: Annotated[Time | None, Query(description="occurred before (RFC 3339 with offset); default: now")] = None,
    types: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="comma-separated event-type patterns within the key's scopes, e.g. `lot.tested,slaughter.*`; "
            "default: every type the key covers",
        ),
    ] = None,
    format: Literal["ndjson", "csv"] = "ndjson",
) -> StreamingResponse:
    """Stored events by ``occurred_at`` for analysts (departments and regulators), streamed as NDJSON or CSV.

    Without the ``personal`` scope the personal fields are removed, as on the feed. Each export is audited
    with the number of events sent.
    """
    patterns = [p.strip() for p in types.split(",") if p.strip()] if types else None
    plan = service.plan_export(principal, from_, to or datetime.now(UTC), patterns, format)
    audit_id = await service.open_export(conn, principal, plan, str(request.url.path))
    body = service.export_body(
        await get_read_engine(request), await get_engine(request), plan, audit_id, page_rows=settings.export_page_rows
    )
    name = f"events-{plan.start.date().isoformat()}.{'csv' if format == 'csv' else 'ndjson'}"
    return StreamingResponse(
        body,
        media_type=MEDIA[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/audit", response_model=AuditPage, responses=errors(401, 403, 422, 503))
async def audit(
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    actor: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$", description="a key id")] = None,
    action: Annotated[str | None, Query(pattern=r"^[a-z_]{2,32}$", description="feed, export, read, delivery")] = None,
    since: Annotated[Time | None, Query(description="at or after (RFC 3339 with offset)")] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    """Who read or received what, newest first (regulators and admins)."""
    return await service.audit(conn, principal, actor=actor, action=action, since=since, cursor=cursor, limit=limit)
