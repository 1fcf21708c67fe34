"""HTTP endpoints of the trace graph: lot, trace, recall, and the consumer's public view."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from trace_service.access.http import CurrentPrincipal, ReadOnly
from trace_service.chain.service import ChainService

router = APIRouter(prefix="/v1", tags=["lineage"])

# Lot and sale codes share one format; anything else cannot name a lot, so it is refused early.
Code = Annotated[str, Path(pattern=r"^[0-9A-Z]{8,32}$", description="a lot code or a sale (receipt) code")]


@router.get("/lots/{code}")
async def read_lot(code: Code, principal: CurrentPrincipal, conn: ReadOnly) -> Any:
    """The lot: status, holder, product, quantities, documents, facts and its creating event."""
    return await ChainService(conn).lot(principal, code)


@router.get("/lots/{code}/trace")
async def trace_lot(
    code: Code,
    principal: CurrentPrincipal,
    conn: ReadOnly,
    direction: Literal["up", "down", "both"] = "both",
    max_depth: Annotated[int, Query(ge=1, le=50)] = 20,
) -> Any:
    """Lineage: ``up`` to the farm or base, ``down`` to every stall and sale, or both."""
    return _json(await ChainService(conn).trace(principal, code, direction, max_depth))


@router.get("/lots/{code}/recall", responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
async def recall_lot(
    code: Code,
    principal: CurrentPrincipal,
    conn: ReadOnly,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    """Every downstream lot and sale with its holder, kg on hand and kg sold (regulators)."""
    service = ChainService(conn)
    result = await service.recall(principal, code)
    if format == "csv":
        return Response(
            "\ufeff" + service.recall_csv(result),  # the BOM makes spreadsheet programs read UTF-8 Chinese
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="recall-{code}.csv"'},
        )
    return _json(result)


def _json(text: str) -> Response:
    return Response(text, media_type="application/json")


public_router = APIRouter(prefix="/v1/public", tags=["public"])


@public_router.get("/trace/{code}")
async def public_trace(code: Code, conn: ReadOnly) -> Any:
    """What a consumer sees for the code on a receipt or label. No key needed; nothing private."""
    return await ChainService(conn).public(code)
