"""HTTP endpoints of market supply monitoring (regulators)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query

from trace_service.access.http import CurrentPrincipal, CurrentSettings, UnitOfWork
from trace_service.market import service

router = APIRouter(prefix="/v1/monitor", tags=["monitor"])


@router.get("/supply")
async def supply(
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    settings: CurrentSettings,
    product: Annotated[str | None, Query(max_length=32, description="a product code, e.g. PORK-CARCASS")] = None,
    market: Annotated[
        str | None, Query(max_length=40, description="a market's operator code, or `city` for the whole city")
    ] = None,
    from_: Annotated[date | None, Query(alias="from", description="first local day (default: 4 weeks to `to`)")] = None,
    to: Annotated[date | None, Query(description="last local day (default: today)")] = None,
) -> Any:
    """Daily kg received and sold, slaughtered heads, average retail price, the same-weekday baseline and
    its band, and the market alerts of each day, per product and market."""
    return await service.supply(conn, principal, settings, product=product, market=market, first=from_, last=to)
