"""HTTP endpoints of market supply monitoring: the supply series, stock and levels (regulators), and the
public market bulletin."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Response

from trace_service.access.http import CurrentPrincipal, CurrentSettings, ReadOnly, UnitOfWork
from trace_service.contract.responses import AUTHENTICATED, errors
from trace_service.market import bulletin, emergency, service, stock
from trace_service.market.models import Supply
from trace_service.market.monitor_models import Bulletin, Levels, Stock

router = APIRouter(prefix="/v1/monitor", tags=["monitor"])


@router.get(
    "/supply",
    response_model=None,
    responses={200: {"model": Supply}, **errors(*AUTHENTICATED, 422, 503)},
)
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


# The city-wide answer is half a megabyte at the city's scale: it is serialized once with orjson, not
# validated again against its model (which documents it, and which the tests check it against).
@router.get(
    "/stock",
    response_model=None,
    responses={200: {"model": Stock}, **errors(*AUTHENTICATED, 422, 503)},
)
async def stock_on_hand(
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    settings: CurrentSettings,
    product: Annotated[str | None, Query(max_length=32, description="a product code, e.g. PORK-CARCASS")] = None,
    market: Annotated[str | None, Query(max_length=40, description="a market's operator code")] = None,
    region: Annotated[
        str | None,
        Query(max_length=6, description="a district's GB/T 2260 code; a prefecture's (442000) covers its districts"),
    ] = None,
    emergency_outlet: Annotated[
        bool | None, Query(description="true: designated emergency outlets (应急投放网点) only; false: the others")
    ] = None,
) -> Any:
    """Kg on hand now per product, for the city, per district and per market, from the trace graph, with the
    average daily retail sales of the last 7 finished days and the days of cover."""
    query = stock.StockQuery(product=product, market=market, region=region, emergency_outlet=emergency_outlet)
    return Response(orjson.dumps(await stock.stock(conn, principal, settings, query)), media_type="application/json")


@router.get("/levels", response_model=Levels, responses=errors(*AUTHENTICATED, 503))
async def emergency_levels(principal: CurrentPrincipal, conn: UnitOfWork, settings: CurrentSettings) -> Any:
    """The city's emergency level per product now (none, IV, III, II, I), gravest first, with the market
    alerts behind each level."""
    return await emergency.levels_answer(conn, principal, settings)


public_router = APIRouter(prefix="/v1/public", tags=["public"])


@public_router.get("/market", response_model=Bulletin, responses=errors(422, 503))
async def market_bulletin(
    conn: ReadOnly,
    settings: CurrentSettings,
    response: Response,
    date_: Annotated[date | None, Query(alias="date", description="a finished local day (default: yesterday)")] = None,
) -> Any:
    """The city's daily retail volume and average price per product, with the 30 days up to the date.
    City-wide figures only, never one operator's. No key needed."""
    response.headers["Cache-Control"] = bulletin.CACHE_CONTROL
    return await bulletin.bulletin(conn, settings, date_)
