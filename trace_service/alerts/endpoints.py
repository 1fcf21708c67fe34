"""HTTP endpoints of the alert queue and its live stream (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from trace_service.access.http import CurrentPrincipal, UnitOfWork, database_answers
from trace_service.access.scopes import ALERTS, require_flag
from trace_service.alerts import service
from trace_service.alerts.models import Alert, AlertPage
from trace_service.alerts.service import AlertStream
from trace_service.contract.events import Time
from trace_service.contract.responses import AUTHENTICATED, errors
from trace_service.sharing import service as sharing

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

AlertId = Annotated[str, Path(pattern=r"^al_[0-9a-f]{24}$")]
HEARTBEAT_SECONDS = 15.0


class Note(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "已通知屠宰厂封存该批次 (slaughterhouse told to seal the batch)"}]},
    )
    note: Annotated[str, Field(max_length=2000)] | None = None


# On the wire: "retry: 3000", a ": connected" comment, then per alert "id: 418\nevent: alert\ndata: {...}",
# and ": keep-alive" comments. The example is one parsed event, as the schema describes it.
_STREAM_EXAMPLE = {
    "id": "418",
    "event": "alert",
    "data": '{"id": "al_3f9c0a4b1d2e5f60718293a4", "rule": "asf_positive", "severity": "critical", "status": "open"}',
}
_ALERT_CONFLICT = {
    409: {
        "conflict": {
            "summary": "the alert is already past that state",
            "value": {
                "error": {
                    "code": "conflict",
                    "message": "the alert is resolved; it cannot become acknowledged",
                    "details": [],
                }
            },
        }
    }
}


@router.get(
    "",
    response_model=None,
    responses={200: {"model": AlertPage}, **errors(*AUTHENTICATED, 422, 503)},
)
async def list_alerts(
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z_]{3,40}$")] = None,
    operator: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{6,20}$")] = None,
    # The contract's time: RFC 3339 with an offset, in the range the store keeps (unix seconds, naive
    # times and year 1 are 422, not a query Postgres cannot run).
    since: Annotated[Time | None, Query(description="changed at or after (RFC 3339 with offset)")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    level: Annotated[
        Literal["IV", "III", "II", "I"] | None, Query(description="market alerts at this emergency level")
    ] = None,
    product: Annotated[
        str | None,
        Query(pattern=r"^[0-9A-Za-z._-]{1,32}$", description="market alerts about this product, and its level"),
    ] = None,
) -> Any:
    """The alert queue, newest first, paged with ``next_cursor``."""
    return await service.list_alerts(
        conn, principal, status=status, severity=severity, rule=rule, operator=operator, since=since,
        cursor=cursor, limit=limit, level=level, product=product,
    )  # fmt: skip


# One Server-Sent Event as a client library parses it (the fields of the text/event-stream format); its data
# is an Alert as JSON. Keep-alive comments carry no event.
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["alert"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {"type": "string", "description": "the Alert, as JSON"},
        "retry": {"type": "integer"},
    },
}


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-Sent Events: one `alert` event per new or changed alert, its data an Alert as JSON, "
            "with keep-alive comments; the schema and the example describe one event",
            "content": {"text/event-stream": {"schema": _SSE_EVENT, "example": _STREAM_EXAMPLE}},
        },
        **errors(*AUTHENTICATED, 422, 503),
    },
    dependencies=[Depends(database_answers)],
)
async def stream(
    request: Request,
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Server-Sent Events: one ``alert`` event per new or changed alert; ``Last-Event-ID`` resumes."""
    require_flag(principal, ALERTS)
    await sharing.record_read(conn, principal, "/v1/alerts/stream", 0)
    hub: AlertStream = request.app.state.alert_stream
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None

    return alert_event_stream(hub, resume)


def alert_event_stream(hub: AlertStream, resume: int | None) -> StreamingResponse:
    """Server-Sent Events of new and changed alerts, with keep-alives; used by the API and the console."""

    async def events() -> AsyncIterator[bytes]:
        yield b"retry: 3000\n: connected\n\n"
        source = hub.subscribe(resume).__aiter__()
        pending: asyncio.Task[tuple[int, str]] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(source.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
                if not done:
                    yield b": keep-alive\n\n"
                    continue
                row_id, payload = pending.result()
                pending = None
                yield f"id: {row_id}\nevent: alert\ndata: {payload}\n\n".encode()
        finally:
            # The client went away: let the step in hand finish cancelling before closing the generator
            # (closing a generator that is still running raises).
            with anyio.CancelScope(shield=True):
                if pending is not None:
                    pending.cancel()
                    await asyncio.wait({pending})
                await source.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.get(
    "/{alert_id}",
    response_model=None,
    responses={200: {"model": Alert}, **errors(*AUTHENTICATED, 404, 422, 503)},
)
async def read_alert(alert_id: AlertId, principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    return await service.read_alert(conn, principal, alert_id)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=None,
    responses={
        200: {"model": Alert},
        **errors(400, *AUTHENTICATED, 404, 409, 413, 422, 503, examples=_ALERT_CONFLICT),
    },
)
async def acknowledge(
    alert_id: AlertId, principal: CurrentPrincipal, conn: UnitOfWork, body: Note | None = None
) -> Any:
    """Record that a regulator has seen the alert (who, when, a note)."""
    return await service.change_status(conn, principal, alert_id, "acknowledged", body.note if body else None)


@router.post(
    "/{alert_id}/resolve",
    response_model=None,
    responses={
        200: {"model": Alert},
        **errors(400, *AUTHENTICATED, 404, 409, 413, 422, 503, examples=_ALERT_CONFLICT),
    },
)
async def resolve(alert_id: AlertId, principal: CurrentPrincipal, conn: UnitOfWork, body: Note | None = None) -> Any:
    """Close the alert (who, when, a note). New evidence for the same finding re-opens it."""
    return await service.change_status(conn, principal, alert_id, "resolved", body.note if body else None)
