"""The public market bulletin (contract section 11): ``GET /v1/public/market`` and the page ``/market``.

The city's retail kg sold and kg-weighted average retail price per product for a finished day, and the 30
days up to it, from the city's rolled-up figures (``market_rollup_daily``, market ``city``: every retail
sale counted once). Live pigs are published as the heads slaughtered in the city.

City-wide figures only, never one operator's: a product-day is published only when at least
``min_sellers`` markets sold it (slaughtered, for pigs) that day; otherwise its figures are null. Where
fewer sold, the city's figure would be that market's own figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.errors import InvalidInput
from trace_service.market.products import name_of, names
from trace_service.market.rules import CITY, LIVE_PIG
from trace_service.settings import Settings, section

DAYS = 30
# Late uploads may still change a finished day for a while: caches may keep an answer five minutes.
CACHE_CONTROL = "public, max-age=300"


class BulletinSettings(BaseSettings):
    """``TRACE_BULLETIN_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TRACE_BULLETIN_", extra="ignore")

    min_sellers: int = Field(default=3, ge=1)


def bulletin_settings(settings: Settings) -> BulletinSettings:
    return section(settings, "bulletin", BulletinSettings)


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


# -- SQL ---------------------------------------------------------------------------------------------------

# The city's sums per product and day, and how many markets sold (or slaughtered) each product that day.
_BULLETIN = """
WITH city AS (
    SELECT product_code, day, sum(kg_sold) AS kg_sold, sum(sales_amount) AS amount, sum(head) AS head
    FROM market_rollup_daily
    WHERE market = $1::text AND day BETWEEN $2::date AND $3::date
    GROUP BY 1, 2
),
sellers AS (
    SELECT product_code, day,
           count(DISTINCT market) FILTER (WHERE kg_sold > 0) AS sellers,
           count(DISTINCT market) FILTER (WHERE head > 0) AS slaughterers
    FROM market_rollup_daily
    WHERE market <> $1::text AND day BETWEEN $2::date AND $3::date
    GROUP BY 1, 2
)
SELECT c.product_code, c.day, c.kg_sold, c.amount, c.head, COALESCE(s.sellers, 0), COALESCE(s.slaughterers, 0)
FROM city c LEFT JOIN sellers s USING (product_code, day)
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class DayFigures:
    kg_sold: Decimal
    amount: Decimal
    head: int
    sellers: int
    slaughterers: int


# -- the use case ------------------------------------------------------------------------------------------


def last_finished_day(settings: Settings, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone)).date() - timedelta(days=1)


def check_date(day: date | None, settings: Settings, now: datetime | None = None) -> date:
    """The bulletin's day: a finished day (default yesterday, local time)."""
    latest = last_finished_day(settings, now)
    if day is None:
        return latest
    if day > latest:
        raise InvalidInput(
            "the bulletin covers finished days only",
            details=[{"field": "date", "in": "query", "message": f"must be {latest.isoformat()} or earlier"}],
        )
    if day < date(2000, 1, 1):
        raise InvalidInput(
            "the bulletin starts in 2000",
            details=[{"field": "date", "in": "query", "message": "must be 2000-01-01 or later"}],
        )
    return day


def _published(f: DayFigures | None, product: str, min_sellers: int) -> dict[str, Any]:
    if product == LIVE_PIG:
        ok = f is not None and f.slaughterers >= min_sellers and f.head > 0
        return {"kg_sold": None, "avg_price": None, "head": f.head if ok and f is not None else None}
    ok = f is not None and f.sellers >= min_sellers and f.kg_sold > 0
    if not ok or f is None:
        return {"kg_sold": None, "avg_price": None, "head": None}
    return {"kg_sold": round(float(f.kg_sold), 1), "avg_price": round(float(f.amount / f.kg_sold), 2), "head": None}


async def bulletin(
    conn: AsyncConnection, settings: Settings, day: date | None = None, *, now: datetime | None = None
) -> dict[str, Any]:
    """The bulletin of one finished day, with the 30 days up to it."""
    last = check_date(day, settings, now)
    first = last - timedelta(days=DAYS - 1)
    min_sellers = bulletin_settings(settings).min_sellers
    result = await conn.exec_driver_sql(_BULLETIN, (CITY, first, last))
    figures: dict[str, dict[date, DayFigures]] = {}
    for product, d, kg_sold, amount, head, sellers, slaughterers in _rows(result):
        figures.setdefault(product, {})[d] = DayFigures(
            Decimal(kg_sold or 0), Decimal(amount or 0), int(head or 0), int(sellers), int(slaughterers)
        )
    days = [first + timedelta(days=i) for i in range(DAYS)]
    products = []
    for product, by_day in figures.items():
        series = [{"day": d.isoformat(), **_published(by_day.get(d), product, min_sellers)} for d in days]
        if not any(s["kg_sold"] is not None or s["head"] is not None for s in series):
            continue  # nothing of it may be published in the period
        today, before = series[-1], series[-2]
        change = None
        if today["avg_price"] is not None and before["avg_price"]:
            change = round((today["avg_price"] - before["avg_price"]) / before["avg_price"], 4)
        products.append(
            {
                "product": product,
                "product_name": names(product),
                "unit": "head" if product == LIVE_PIG else "kg",
                "today": today,
                "price_change": change,
                "days": series,
            }
        )
    # Pork and pigs first (the city's first concern), then vegetables by their Chinese name.
    products.sort(key=lambda p: (not str(p["product"]).startswith(("PIG", "PORK")), name_of(str(p["product"])).zh))
    return {
        "date": last.isoformat(),
        "timezone": settings.timezone,
        "from": first.isoformat(),
        "min_sellers": min_sellers,
        "products": products,
    }
