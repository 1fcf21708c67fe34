"""Stock on hand and days of cover (contract section 11): ``GET /v1/monitor/stock``.

What the city's markets hold now is read from the trace graph itself: every active lot knows its holder
and its kg on hand (``kg_in - kg_out``). A tenant's stock (a stall's, a wholesaler's) counts for its market
(its ``parent``); an operator without a parent (a supermarket, a slaughterhouse's cold store) is its own
market. Beside it, the kg sold at retail over the last finished days (``market_rollup_daily``, the figures
the market rules keep), and their ratio: how many days the stock lasts at that pace.

The SQL lives here with its one use case (one statement: stock and sales joined per market and product);
the rules of what counts are the settings below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access.models import Principal
from trace_service.access.scopes import MARKET, require_flag
from trace_service.contract.codes import is_real_region
from trace_service.contract.regions import region_name
from trace_service.errors import InvalidInput
from trace_service.market.products import names
from trace_service.market.rules import CITY
from trace_service.settings import Settings, section
from trace_service.sharing import service as sharing

PRODUCT_PATTERN = r"^[0-9A-Za-z._-]{1,32}$"  # the contract's product code, as the supply query takes it


class StockSettings(BaseSettings):
    """What counts as stock, overridable as ``TRACE_STOCK_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TRACE_STOCK_", extra="ignore")

    # The average daily sales are those of this many finished days before today.
    sales_days: int = Field(default=7, ge=1, le=31)
    # A lot older than this (days since it was received or created) is no longer stock: chilled pork sells
    # within 7 days of slaughter, leafy vegetables within a few; what a lot still shows after that was
    # sold or thrown away without a record.
    max_age_days_pork: int = Field(default=7, ge=1, le=60)
    max_age_days_produce: int = Field(default=3, ge=1, le=60)
    # Holders whose goods are not the city's market supply: origins, and canteens that consume what they buy.
    not_markets: list[str] = ["farm", "planting_base", "canteen"]


def stock_settings(settings: Settings) -> StockSettings:
    return section(settings, "stock", StockSettings)


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


# -- SQL ---------------------------------------------------------------------------------------------------

# Stock: the active lots created since the cutoff of their category (the partial index ix_lots_stock holds
# exactly the active non-sale lots, by creation time), rolled up to their holder's market. Sales: the
# markets' rolled-up daily figures of the finished days. Joined per market and product, the market's row
# filters applied last (a market with sales and no stock shows 0 kg on hand, with its cover 0).
_STOCK = """
WITH held AS (
    SELECT COALESCE(o.parent, l.holder) AS market, l.product_code AS product,
           sum(l.kg_in - l.kg_out) AS kg, count(*) AS lots
    FROM lots l JOIN operators o ON o.code = l.holder
    WHERE l.status = 'active' AND l.kind <> 'sale'
      AND l.created_at >= $1::timestamptz
      AND (l.category IS DISTINCT FROM 'produce' OR l.created_at >= $2::timestamptz)
      AND l.kg_in > l.kg_out AND l.product_code IS NOT NULL
      AND ($3::text IS NULL OR l.product_code = $3::text)
    GROUP BY 1, 2
),
sold AS (
    SELECT r.market, r.product_code AS product, sum(r.kg_sold) AS kg
    FROM market_rollup_daily r
    WHERE r.day BETWEEN $4::date AND $5::date AND r.market <> $6::text AND r.kg_sold > 0
      AND ($3::text IS NULL OR r.product_code = $3::text)
    GROUP BY 1, 2
)
SELECT m.code, m.name, m.kind, m.region, m.emergency_outlet, COALESCE(h.product, s.product) AS product,
       COALESCE(h.kg, 0) AS kg_on_hand, COALESCE(h.lots, 0) AS lots, COALESCE(s.kg, 0) AS kg_sold
FROM held h
FULL JOIN sold s ON s.market = h.market AND s.product = h.product
JOIN operators m ON m.code = COALESCE(h.market, s.market)
WHERE m.kind <> ALL($7::text[])
  AND ($8::text IS NULL OR m.code = $8::text)
  AND ($9::text IS NULL OR m.region LIKE $9::text || '%')
  AND ($10::boolean IS NULL OR m.emergency_outlet = $10::boolean)
ORDER BY 6, 1
"""


@dataclass(frozen=True)
class StockRow:
    market: str
    market_name: str
    kind: str
    region: str
    emergency_outlet: bool
    product: str
    kg_on_hand: Decimal
    lots: int
    kg_sold: Decimal


@dataclass(frozen=True)
class StockQuery:
    product: str | None = None
    market: str | None = None
    region: str | None = None  # a district code; a prefecture or province code covers its districts
    emergency_outlet: bool | None = None


async def stock_rows(
    conn: AsyncConnection, query: StockQuery, now: datetime, settings: Settings
) -> tuple[list[StockRow], date, date]:
    """The rows of the stock answer, and the first and last day of the sales averaged."""
    s = stock_settings(settings)
    tz = ZoneInfo(settings.timezone)
    today = now.astimezone(tz).date()
    first, last = today - timedelta(days=s.sales_days), today - timedelta(days=1)
    result = await conn.exec_driver_sql(
        _STOCK,
        (
            now - timedelta(days=max(s.max_age_days_pork, s.max_age_days_produce)),
            now - timedelta(days=s.max_age_days_produce),
            query.product,
            first,
            last,
            CITY,
            list(s.not_markets),
            query.market,
            _region_prefix(query.region),
            query.emergency_outlet,
        ),
    )
    return [StockRow(*r) for r in _rows(result)], first, last


def _region_prefix(region: str | None) -> str | None:
    """A county-level code is itself; ``442000`` (a prefecture) covers ``4420xx``; ``440000`` covers ``44xxxx``."""
    if region is None:
        return None
    if region.endswith("0000"):
        return region[:2]
    if region.endswith("00"):
        return region[:4]
    return region


# -- the use case ------------------------------------------------------------------------------------------


def _kg(value: Decimal) -> float:
    return round(float(value), 3)


def _figures(on_hand: Decimal, sold: Decimal, days: int) -> dict[str, Any]:
    per_day = sold / days
    return {
        "kg_on_hand": _kg(on_hand),
        "kg_sold_per_day": _kg(per_day),
        "days_of_cover": round(float(on_hand / per_day), 1) if per_day > 0 else None,
    }


def total(rows: list[StockRow], days: int) -> dict[str, Any]:
    return _figures(sum((r.kg_on_hand for r in rows), Decimal(0)), sum((r.kg_sold for r in rows), Decimal(0)), days)


def _validate(query: StockQuery, settings: Settings) -> None:
    problems: list[dict[str, str]] = []
    if query.product is not None and not re.fullmatch(PRODUCT_PATTERN, query.product):
        problems.append({"field": "product", "message": f"product must match {PRODUCT_PATTERN}"})
    if query.market is not None and not re.fullmatch(settings.codes.operator, query.market):
        problems.append({"field": "market", "message": f"market must be an operator code ({settings.codes.operator})"})
    if query.region is not None and not is_real_region(query.region):
        problems.append({"field": "region", "message": "region must be a 6-digit GB/T 2260 code of a real province"})
    if problems:
        raise InvalidInput("the stock query is not valid", details=problems)


async def stock(
    conn: AsyncConnection,
    principal: Principal,
    settings: Settings,
    query: StockQuery,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Kg on hand per product, for the city, per district and per market, with the average daily retail
    sales of the last finished days and the days of cover."""
    require_flag(principal, MARKET)  # as GET /v1/monitor/supply: staff, or a department with `market`
    _validate(query, settings)
    moment = now or datetime.now(UTC)
    s = stock_settings(settings)
    rows, first, last = await stock_rows(conn, query, moment, settings)
    days = s.sales_days
    by_product: dict[str, list[StockRow]] = {}
    for row in rows:
        by_product.setdefault(row.product, []).append(row)
    products = []
    for product, mine in sorted(by_product.items()):
        districts: dict[str, list[StockRow]] = {}
        for row in mine:
            districts.setdefault(row.region, []).append(row)
        markets = sorted(mine, key=lambda r: (-r.kg_on_hand, r.market))
        products.append(
            {
                "product": product,
                "product_name": names(product),
                **total(mine, days),
                "lots": sum(r.lots for r in mine),
                "districts": [
                    {
                        "region": region,
                        "region_name": region_name(region),
                        "markets": len(group),
                        **total(group, days),
                    }
                    for region, group in sorted(districts.items())
                ],
                "markets": [
                    {
                        "market": r.market,
                        "market_name": r.market_name,
                        "kind": r.kind,
                        "region": r.region,
                        "region_name": region_name(r.region),
                        "emergency_outlet": r.emergency_outlet,
                        "lots": r.lots,
                        **_figures(r.kg_on_hand, r.kg_sold, days),
                    }
                    for r in markets
                ],
            }
        )
    tz = ZoneInfo(settings.timezone)
    await sharing.record_read(conn, principal, "/v1/monitor/stock", len(products))
    return {
        "as_of": moment.astimezone(tz).isoformat(timespec="seconds"),
        "timezone": settings.timezone,
        "sales": {"from": first.isoformat(), "to": last.isoformat(), "days": days},
        "max_age_days": {"pork": s.max_age_days_pork, "produce": s.max_age_days_produce},
        "filters": {
            "product": query.product,
            "market": query.market,
            "region": query.region,
            "emergency_outlet": query.emergency_outlet,
        },
        "products": products,
    }
