"""HTTP endpoints of the trace graph: lot, trace, recall, and the consumer's public view."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.access.http import CurrentPrincipal, ReadOnly, get_read_engine
from trace_service.chain.models import LotView, PublicTrace, Recall, Trace
from trace_service.chain.service import RECALL_PAGE, ChainService, PublicView, fresh_public_view
from trace_service.contract.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/v1", tags=["lineage"])
ReadEngine = Annotated[AsyncEngine, Depends(get_read_engine)]

# Lot and sale codes share one format; anything else cannot name a lot, so it is refused early. Codes are
# case-insensitive on input (contract section 1): `sa01...` names the lot `SA01...`.
Code = Annotated[
    str,
    Path(pattern=r"^[0-9A-Za-z]{8,32}$", description="a lot code or a sale (receipt) code, in any letter case"),
    AfterValidator(str.upper),
]


_RECALL_CSV = (
    "code,kind,depth,product_code,product_name,status,holder,holder_name,holder_kind,holder_parent,kg_in,"
    "kg_on_hand,kg_sold,sold_at\r\n"
    "PK2026112500101,carcass,0,pork.carcass,白条猪肉（片猪肉）,stopped,442000100001,中山市定点屠宰厂,slaughterhouse,,"
    "318.0,0.0,0.0,\r\n"
)


@router.get(
    "/lots/{code}",
    response_model=None,
    responses={200: {"model": LotView}, **errors(*AUTHENTICATED, 404, 422, 503)},
)
async def read_lot(code: Code, principal: CurrentPrincipal, conn: ReadOnly) -> Any:
    """The lot: status, holder, product, quantities, documents, facts and its creating event."""
    return await ChainService(conn).lot(principal, code)


@router.get(
    "/lots/{code}/trace",
    response_model=Trace,
    responses=errors(*AUTHENTICATED, 404, 422, 503),
)
async def trace_lot(
    code: Code,
    principal: CurrentPrincipal,
    conn: ReadOnly,
    direction: Literal["up", "down", "both"] = "both",
    max_depth: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Any:
    """Lineage: ``up`` to the farm or base, ``down`` to every stall and sale, or both."""
    return _json(await ChainService(conn).trace(principal, code, direction, max_depth))


@router.get(
    "/lots/{code}/recall",
    response_model=Recall,
    responses={
        200: {
            "description": "JSON, or with `format=csv` a spreadsheet (UTF-8 with a byte-order mark)",
            "content": {"text/csv": {"schema": {"type": "string"}, "example": _RECALL_CSV}},
        },
        **errors(*AUTHENTICATED, 404, 422, 503),
    },
)
async def recall_lot(
    code: Code,
    principal: CurrentPrincipal,
    conn: ReadOnly,
    engine: ReadEngine,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    cursor: Annotated[str | None, Query(max_length=80, description="`next_cursor` of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="lots per page (JSON)")] = RECALL_PAGE,
) -> Any:
    """Every downstream lot and sale with its holder, kg on hand and kg sold (regulators). The JSON has the
    holders and totals of the whole recall and its lots a page at a time; the CSV has every lot."""
    service = ChainService(conn)
    if format == "csv":
        return recall_csv_response(await service.recall_csv(principal, code, engine.connect), code)
    return _json(await service.recall(principal, code, cursor, limit))


def recall_csv_response(rows: AsyncIterator[str], code: str, **headers: str) -> StreamingResponse:
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="recall-{code}.csv"', **headers},
    )


def _json(text: str) -> Response:
    return Response(text, media_type="application/json")


public_router = APIRouter(prefix="/v1/public", tags=["public"])


@public_router.get(
    "/trace/{code}",
    response_model=None,
    responses={200: {"model": PublicTrace}, **errors(404, 422, 503)},
)
async def public_trace(
    code: Code, engine: ReadEngine, if_none_match: Annotated[str | None, Header(include_in_schema=False)] = None
) -> Any:
    """What a consumer sees for the code on a receipt or label. No key needed; nothing private. Cacheable for
    a few seconds: the `ETag` changes at once with a hold, a release, a recall, a new event on the chain or a
    cold-chain alert, and `If-None-Match` with the current one answers 304. A view is read from the database at
    most every half second per process, so a hold shows within a second of being applied."""
    found = await fresh_public_view(engine, code)
    if not_modified(found, if_none_match):
        return Response(status_code=304, headers=cache_headers(found))
    return Response(found.body, media_type="application/json", headers=cache_headers(found))


# Short: a scan storm is served from caches in front of the service, and a hold reaches every phone in seconds.
PUBLIC_MAX_AGE = 5


def cache_headers(found: PublicView, etag_suffix: str = "") -> dict[str, str]:
    etag = found.etag[:-1] + etag_suffix + '"' if etag_suffix else found.etag
    return {"ETag": etag, "Cache-Control": f"public, max-age={PUBLIC_MAX_AGE}"}


def not_modified(found: PublicView, if_none_match: str | None, etag_suffix: str = "") -> bool:
    """Does ``If-None-Match`` name the current version (weak or strong, or ``*``)?"""
    if not if_none_match:
        return False
    current = cache_headers(found, etag_suffix)["ETag"]
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return current in tags or "*" in tags
