"""The regulator's morning board (the console's supply view): one row per product with its emergency level,
today so far against the same hours of the baseline days, yesterday against its band, the stock and its
days of cover, and the average retail price.

It composes the other market use cases (levels, stock) with two reads of the city's rolled-up figures;
the console calls it through ``/console/api/market/board``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access.models import Principal
from trace_service.access.scopes import MARKET, require_flag
from trace_service.market import emergency, stock
from trace_service.market.levels import city_levels
from trace_service.market.rules import CITY, LIVE_PIG, MarketThresholds, band, baseline
from trace_service.settings import Settings

# The city's figures of some days, whole days and the hours before ``$3`` of them.
_CITY_DAYS = """
SELECT product_code, day, sum(kg_received), sum(kg_sold), sum(sales_amount), sum(sale_count), sum(head)
FROM market_rollup_daily WHERE market = $1::text AND day = ANY($2::date[])
GROUP BY 1, 2
"""
_CITY_HOURS = """
SELECT product_code, day, sum(kg_received), sum(head)
FROM market_rollup_hourly WHERE market = $1::text AND day = ANY($2::date[]) AND hour < $3::int
GROUP BY 1, 2
"""

Day = dict[str, Decimal]


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


def _num(value: Decimal | None, places: int = 1) -> float | None:
    return None if value is None else round(float(value), places)


def _price(day: Day | None) -> float | None:
    if not day or not day["kg_sold"]:
        return None
    return round(float(day["amount"] / day["kg_sold"]), 2)


def _compare(value: Decimal, history: list[Decimal], t: MarketThresholds) -> dict[str, Any] | None:
    base = baseline(history, t.min_baseline_points)
    if base is None:
        return None
    low, high = band(base.value, t)
    return {
        "value": _num(base.value),
        "points": base.points,
        "low": _num(low),
        "high": _num(high),
        "change": round(float((value - base.value) / base.value), 4) if base.value else None,
    }


async def board(
    conn: AsyncConnection, principal: Principal, settings: Settings, *, now: datetime | None = None
) -> dict[str, Any]:
    granted = require_flag(principal, MARKET)
    moment = now or datetime.now(UTC)
    tz = ZoneInfo(settings.timezone)
    local = moment.astimezone(tz)
    today, hour = local.date(), local.hour
    t = emergency.market_thresholds(settings)
    lt = emergency.thresholds_of(settings)
    weeks = [7 * w for w in range(1, t.baseline_weeks + 1)]
    yesterday = today - timedelta(days=1)
    days = sorted({today, yesterday, *(today - timedelta(days=b) for b in weeks),
                   *(yesterday - timedelta(days=b) for b in weeks)})  # fmt: skip
    daily: dict[tuple[str, date], Day] = {}
    for product, d, kg_in, kg_sold, amount, sales, head in _rows(await conn.exec_driver_sql(_CITY_DAYS, (CITY, days))):
        daily[(product, d)] = {
            "kg_received": Decimal(kg_in or 0),
            "kg_sold": Decimal(kg_sold or 0),
            "amount": Decimal(amount or 0),
            "sales": Decimal(sales or 0),
            "head": Decimal(head or 0),
        }
    hours: dict[tuple[str, date], Day] = {}
    same_hours = [today, *(today - timedelta(days=b) for b in weeks)]
    for product, d, kg_in, head in _rows(await conn.exec_driver_sql(_CITY_HOURS, (CITY, same_hours, hour))):
        hours[(product, d)] = {"kg_received": Decimal(kg_in or 0), "head": Decimal(head or 0)}

    now_levels, stored, first, last = await emergency.current_levels(conn, settings, now=moment)
    names = await emergency.operator_names(
        conn, sorted({a.market for pl in now_levels.values() for a in pl.standing if a.market != CITY})
    )
    described = {p["product"]: p for p in emergency.describe(now_levels, stored, names, with_alerts=granted.alerts)}
    rows, sales_first, sales_last = await stock.stock_rows(conn, stock.StockQuery(), moment, settings)
    held: dict[str, list[stock.StockRow]] = {}
    for row in rows:
        held.setdefault(row.product, []).append(row)
    sales_days = stock.stock_settings(settings).sales_days

    products = sorted({p for p, _ in daily} | set(described) | set(held))
    out = []
    for product in products:
        measure = "head" if product == LIVE_PIG else "kg_received"
        zero: Day = {"kg_received": Decimal(0), "kg_sold": Decimal(0), "amount": Decimal(0), "head": Decimal(0)}
        t_day = daily.get((product, today), zero)
        y_day = daily.get((product, yesterday), zero)
        so_far = hours.get((product, today), zero)[measure]
        same = [hours.get((product, today - timedelta(days=b)), zero)[measure] for b in weeks]
        full = [daily.get((product, today - timedelta(days=b)), zero)[measure] for b in weeks]
        y_hist = [daily.get((product, yesterday - timedelta(days=b)), zero)[measure] for b in weeks]
        level = described.get(product) or emergency.describe(city_levels([], [product], lt), {}, {})[0]
        mine = held.get(product, [])
        out.append(
            {
                **level,
                "unit": "head" if product == LIVE_PIG else "kg",
                "today": {
                    "day": today.isoformat(),
                    "through_hour": hour,
                    "value": _num(t_day[measure]),
                    "value_by_hour": _num(so_far) if hour > 0 else None,
                    "same_hours": _compare(so_far, same, t) if hour > 0 else None,
                    "day_baseline": _compare(t_day[measure], full, t),
                    "kg_sold": _num(t_day["kg_sold"]),
                    "avg_price": _price(t_day),
                },
                "yesterday": {
                    "day": yesterday.isoformat(),
                    "value": _num(y_day[measure]),
                    "baseline": _compare(y_day[measure], y_hist, t),
                    "kg_sold": _num(y_day["kg_sold"]),
                    "avg_price": _price(y_day),
                },
                "stock": stock.total(mine, sales_days) if mine else None,
            }
        )
    order = {"I": 0, "II": 1, "III": 2, "IV": 3}
    out.sort(key=lambda p: (order.get(p["level"] or "", 9), not str(p["product"]).startswith(("PIG", "PORK")),
                            p["product"]))  # fmt: skip
    return {
        "as_of": local.isoformat(timespec="seconds"),
        "timezone": settings.timezone,
        "window": {"from": first.isoformat(), "to": last.isoformat()},
        "sales": {"from": sales_first.isoformat(), "to": sales_last.isoformat(), "days": sales_days},
        "products": out,
    }
