"""HTTP endpoints of the trace graph: lot, trace, recall, and the consumer's public view."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import AfterValidator

from trace_service.access.http import CurrentPrincipal, ReadOnly
from trace_service.chain.models import LotView, PublicTrace, Recall, Trace
from trace_service.chain.service import ChainService
from trace_service.contract.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/v1", tags=["lineage"])

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


@public_router.get(
    "/trace/{code}",
    response_model=None,
    responses={200: {"model": PublicTrace}, **errors(404, 422, 503)},
)
async def public_trace(code: Code, conn: ReadOnly) -> Any:
    """What a consumer sees for the code on a receipt or label. No key needed; nothing private."""
    return await ChainService(conn).public(code)
