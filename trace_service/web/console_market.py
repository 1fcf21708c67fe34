"""The console's supply routes (``/console/api/market/...``) and its filterable alert queue
(``/console/api/queue``): the console's cookie instead of a bearer header, the market and alert services
behind them, as the other console routes in :mod:`trace_service.web.pages`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from trace_service.access.http import CurrentSettings
from trace_service.alerts import service as alerts
from trace_service.market import board, stock
from trace_service.web.pages import ConsoleSession, UnitOfWork

router = APIRouter(include_in_schema=False)

OperatorCode = Annotated[str | None, Query(pattern=r"^[0-9A-Z]{6,20}$")]
ProductCode = Annotated[str | None, Query(pattern=r"^[0-9A-Za-z._-]{1,32}$")]


@router.get("/console/api/market/board")
async def console_board(current: ConsoleSession, conn: UnitOfWork, settings: CurrentSettings) -> Any:
    """The morning board: every product with its level, today against its baseline, stock and cover."""
    return await board.board(conn, current.principal, settings)


@router.get("/console/api/market/stock")
async def console_stock(
    current: ConsoleSession,
    conn: UnitOfWork,
    settings: CurrentSettings,
    product: ProductCode = None,
    market: OperatorCode = None,
    emergency_outlet: bool | None = None,
) -> Any:
    query = stock.StockQuery(product=product, market=market, emergency_outlet=emergency_outlet)
    return await stock.stock(conn, current.principal, settings, query)


@router.get("/console/api/queue")
async def console_queue(
    current: ConsoleSession,
    conn: UnitOfWork,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    rule: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$")] = None,
    level: Literal["IV", "III", "II", "I"] | None = None,
    operator: OperatorCode = None,
    product: ProductCode = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """The alert queue filtered by status, rule, severity, level, market (the alert's operator) and product."""
    return await alerts.list_alerts(
        conn, current.principal, status=status, severity=severity, rule=rule, operator=operator, since=None,
        cursor=cursor, limit=limit, level=level, product=product,
    )  # fmt: skip
