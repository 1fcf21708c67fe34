"""Use cases of market supply monitoring.

* :func:`apply` runs inside the worker's batch transaction: it adds the batch's figures and judges the
  cells (day, market, product) the batch touched, as the data arrives.
* :func:`sweep` runs on the worker's tick: it judges what only the clock can reveal, an *absence*: a
  market that received nothing at all by the hour it usually has most of its day (``supply_drop``,
  ``slaughter_drop``), and, once a day is over (and settled), every cell of that day on its totals and
  ``stock_out`` (no sale of a product at N sample sites during the whole day).
* :func:`supply` serves ``GET /v1/monitor/supply``.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access import service as access
from trace_service.access.models import Principal, Role
from trace_service.alerts.models import Finding
from trace_service.errors import InvalidInput
from trace_service.market import projection, rules
from trace_service.market import repository as repo
from trace_service.market.rules import CITY, LIVE_PIG, Cell, Figures, MarketThresholds, Settled, SiteSales
from trace_service.settings import Settings

PRODUCT_PATTERN = r"^[0-9A-Za-z._-]{1,32}$"  # the contract's product code
MAX_DAYS = 366
MAX_DAYS_UNFILTERED = 31  # without a product or a market the answer covers every series: keep it small
DEFAULT_DAYS = 28

CellKey = tuple[date, str, str]


@functools.cache
def _default_thresholds() -> MarketThresholds:
    return MarketThresholds()


def thresholds_of(settings: Settings) -> MarketThresholds:
    """The market thresholds: ``settings.market`` once settings carry them, else read from the environment
    once (``TRACE_MARKET_*``)."""
    given = getattr(settings, "market", None)
    return given if isinstance(given, MarketThresholds) else _default_thresholds()


@dataclass(frozen=True)
class Clock:
    """Which hours of which day are settled: an hour counts ``settle_minutes`` after it ends."""

    cutoff: datetime  # local time

    @classmethod
    def at(cls, now: datetime, tz: ZoneInfo, settle_minutes: int) -> Clock:
        return cls((now - timedelta(minutes=settle_minutes)).astimezone(tz))

    @property
    def day(self) -> date:
        return self.cutoff.date()

    def through_hour(self, day: date) -> int | None:
        """None for a finished day (judged on its totals); else the hours before this one are settled."""
        if day < self.day:
            return None
        return self.cutoff.hour if day == self.day else 0


def _backs(t: MarketThresholds) -> list[int]:
    return [0, 1, *(7 * week for week in range(1, t.baseline_weeks + 1))]


async def apply(
    conn: AsyncConnection,
    events: list[BaseModel],
    settings: Settings,
    *,
    now: datetime | None = None,
    thresholds: MarketThresholds | None = None,
    shard: int = 0,
) -> list[Finding]:
    """Add the figures of a batch's fresh events and judge the cells they touched.

    Call it after the chain projection of the same batch (the product of a receipt or a sale is read
    from the lots), with the events stored for the first time only: the figures are sums, so an event
    counted twice would count double. ``shard``: a Kafka partition the calling worker owns (its rolled-up
    rows; see ``repository.add``).
    """
    if not events:
        return []
    t = thresholds or thresholds_of(settings)
    tz = ZoneInfo(settings.timezone)
    touched = await repo.add(conn, projection.plan(events, tz), shard=shard)
    if not t.enabled or not touched:
        return []
    return await _judge(conn, _cells(touched), Clock.at(now or datetime.now(UTC), tz, t.settle_minutes), t)


def _cells(touched: Iterable[repo.Touched]) -> dict[CellKey, set[uuid.UUID]]:
    cells: dict[CellKey, set[uuid.UUID]] = {}
    for row in touched:
        cells.setdefault((row.day, row.market, row.product), set()).update(row.event_ids)
        if row.heads:  # slaughtered heads are judged for the whole city
            cells.setdefault((row.day, CITY, row.product), set()).update(row.event_ids)
    return cells


async def sweep(
    conn: AsyncConnection,
    settings: Settings,
    *,
    now: datetime | None = None,
    thresholds: MarketThresholds | None = None,
) -> list[Finding]:
    """Judgements due by the clock (call it on the worker's tick; it does nothing most of the time).

    Once per settled hour of the day, the shortfall rules for every market with a baseline (a market that
    received nothing sends no event that could trigger them); once per finished day, every rule on the
    day's totals, and ``stock_out``. Also counts the figures that were waiting for their product.
    """
    t = thresholds or thresholds_of(settings)
    tz = ZoneInfo(settings.timezone)
    clock = Clock.at(now or datetime.now(UTC), tz, t.settle_minutes)
    settled = await repo.add(conn, [])
    if not t.enabled:
        return []
    findings = await _judge(conn, _cells(settled), clock, t) if settled else []
    history = [7 * week for week in range(1, t.baseline_weeks + 1)]
    yesterday = clock.day - timedelta(days=1)
    if await repo.claim_sweep(conn, yesterday, 24):
        days = [yesterday - timedelta(days=b) for b in (0, *history)]
        cells: dict[CellKey, set[uuid.UUID]] = {(yesterday, m, p): set() for m, p in await repo.cells_on(conn, days)}
        cells[(yesterday, CITY, LIVE_PIG)] = set()
        findings += await _judge(conn, cells, clock, t)
        findings += await _stock_out(conn, yesterday, t)
    if clock.cutoff.hour >= 1 and await repo.claim_sweep(conn, clock.day, clock.cutoff.hour):
        days = [clock.day - timedelta(days=b) for b in history]
        cells = {(clock.day, m, p): set() for m, p in await repo.cells_on(conn, days)}
        cells[(clock.day, CITY, LIVE_PIG)] = set()
        findings += await _judge(conn, cells, clock, t, shortfall_only=True)
    return findings


async def _judge(
    conn: AsyncConnection,
    cells: dict[CellKey, set[uuid.UUID]],
    clock: Clock,
    t: MarketThresholds,
    *,
    shortfall_only: bool = False,
) -> list[Finding]:
    keys = sorted(cells)
    through = {key: clock.through_hour(key[0]) for key in keys}
    backs = _backs(t)
    hours = [24 if (h := through[key]) is None else h for key in keys]  # 24: the whole day
    rows = await repo.figures(conn, [(*key, hour) for key, hour in zip(keys, hours, strict=True)], backs)
    figures: dict[tuple[CellKey, int], repo.CellRow] = {((r.day, r.market, r.product), r.back): r for r in rows}
    names = await repo.market_names(conn, sorted({key[1] for key in keys if key[1] != CITY}))
    findings: list[Finding] = []
    for key in keys:
        if not any((key, b) in figures for b in backs[1:]):
            continue  # no earlier day: nothing to compare with
        day, market, product = key
        history = tuple(_figures(figures.get((key, b))) for b in backs[2:])
        cell = Cell(
            day=day,
            market=market,
            product=product,
            today=_figures(figures.get((key, 0))),
            history=history,
            previous=_figures(figures.get((key, 1))),
            through_hour=through[key],
            today_settled=_settled(figures.get((key, 0))),
            history_settled=tuple(_settled(figures.get((key, b))) for b in backs[2:]),
            market_name=names.get(market),
            event_ids=tuple(sorted(cells[key])),
        )
        findings += rules.judge(cell, t, shortfall_only=shortfall_only)
    return findings


def _figures(row: repo.CellRow | None) -> Figures:
    if row is None:
        return Figures()
    return Figures(
        kg_received=Decimal(row.kg_received or 0),
        kg_sold=Decimal(row.kg_sold or 0),
        sales_amount=Decimal(row.sales_amount or 0),
        sale_count=int(row.sale_count or 0),
        head=int(row.head or 0),
    )


def _settled(row: repo.CellRow | None) -> Settled:
    if row is None:
        return Settled()
    return Settled(kg_received=Decimal(row.settled_kg or 0), head=int(row.settled_head or 0))


async def _stock_out(conn: AsyncConnection, day: date, t: MarketThresholds) -> list[Finding]:
    backs = [0, *(7 * week for week in range(1, t.baseline_weeks + 1))]
    rows = await repo.site_sales(conn, day, [day - timedelta(days=b) for b in backs], t.monitored_products)
    sales: dict[str, dict[str, dict[int, int]]] = {}
    for product, site, back, count in rows:
        sales.setdefault(product, {}).setdefault(site, {})[back] = count
    findings = []
    for product in sorted(sales):
        sites = [
            SiteSales(site, by_back.get(0, 0), tuple(by_back.get(b, 0) for b in backs[1:]))
            for site, by_back in sorted(sales[product].items())
        ]
        found = rules.stock_out(product, day, sites, t)
        if found is not None:
            findings.append(found)
    return findings


# -- the supply series -----------------------------------------------------------------------------


def _num(value: Decimal | None, places: int = 3) -> float | None:
    return None if value is None else round(float(value), places)


def _validate(
    product: str | None, market: str | None, first: date | None, last: date | None, settings: Settings
) -> tuple[date, date]:
    problems: list[dict[str, str]] = []
    if product is not None and not re.fullmatch(PRODUCT_PATTERN, product):
        problems.append({"field": "product", "message": f"product must match {PRODUCT_PATTERN}"})
    if market is not None and market != CITY and not re.fullmatch(settings.codes.operator, market):
        problems.append(
            {"field": "market", "message": f"market must be an operator code ({settings.codes.operator}) or {CITY!r}"}
        )
    today = datetime.now(ZoneInfo(settings.timezone)).date()
    last = last or (first + timedelta(days=DEFAULT_DAYS - 1) if first else today)
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    span = (last - first).days + 1
    limit = MAX_DAYS if product or market else MAX_DAYS_UNFILTERED
    if span < 1:
        problems.append({"field": "to", "message": "to must not be before from"})
    elif span > limit:
        problems.append(
            {
                "field": "to",
                "message": f"at most {limit} days" + ("" if product or market else " without a product or a market"),
            }
        )
    if problems:
        raise InvalidInput("the supply query is not valid", details=problems)
    return first, last


async def supply(
    conn: AsyncConnection,
    principal: Principal,
    settings: Settings,
    *,
    product: str | None = None,
    market: str | None = None,
    first: date | None = None,
    last: date | None = None,
) -> dict[str, Any]:
    """Daily figures per market and product with their same-weekday baseline, band and market alerts."""
    access.require(principal, Role.ADMIN, Role.REGULATOR)
    first, last = _validate(product, market, first, last, settings)
    t = thresholds_of(settings)
    weeks = t.baseline_weeks
    rows = await repo.series(conn, first - timedelta(days=7 * weeks), last, product, market, CITY)
    by_series: dict[tuple[str, str], dict[date, Figures]] = {}
    for m, p, day, kg_in, kg_sold, amount, sales, head in rows:
        by_series.setdefault((m, p), {})[day] = Figures(
            Decimal(kg_in or 0), Decimal(kg_sold or 0), Decimal(amount or 0), int(sales or 0), int(head or 0)
        )
    alerts = await repo.market_alerts(conn, rules.MARKET_RULES, first, last, product, market)
    names = await repo.market_names(conn, sorted({m for m, _ in by_series if m != CITY}))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    series = []
    for (m, p), figures in sorted(by_series.items(), key=lambda item: (item[0][1], item[0][0] == CITY, item[0][0])):
        series.append(
            {
                "market": m,
                "market_name": "全市 (city)" if m == CITY else names.get(m),
                "product": p,
                "days": [_day(day, m, p, figures, alerts, t) for day in days],
            }
        )
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "timezone": settings.timezone,
        "product": product,
        "market": market,
        "thresholds": {
            "baseline_weeks": weeks,
            "min_baseline_points": t.min_baseline_points,
            "supply_drop": [t.supply_drop_iv, t.supply_drop_iii],
            "supply_surge": t.supply_surge_iv,
            "price_spike": [t.price_spike_iv, t.price_spike_iii, t.price_spike_ii, t.price_spike_i],
            "slaughter_drop": t.slaughter_drop_iii,
        },
        "series": series,
    }


def _day(
    day: date,
    market: str,
    product: str,
    figures: dict[date, Figures],
    alerts: dict[str, list[dict[str, Any]]],
    t: MarketThresholds,
) -> dict[str, Any]:
    f = figures.get(day, Figures())
    history = [figures.get(day - timedelta(days=7 * w), Figures()) for w in range(1, t.baseline_weeks + 1)]
    kg = rules.baseline([h.kg_received for h in history], t.min_baseline_points)
    head = rules.baseline([h.head for h in history], t.min_baseline_points)
    baseline: dict[str, Any] = {"kg_received": None, "head": None}
    if kg is not None:
        low, high = rules.band(kg.value, t)
        baseline["kg_received"] = {"value": _num(kg.value), "points": kg.points, "low": _num(low), "high": _num(high)}
    if head is not None:
        low = head.value * (1 - Decimal(str(t.slaughter_drop_iii)))
        baseline["head"] = {"value": _num(head.value, 1), "points": head.points, "low": _num(low, 1), "high": None}
    return {
        "day": day.isoformat(),
        "kg_received": _num(f.kg_received),
        "kg_sold": _num(f.kg_sold),
        "head": f.head,
        "sales": f.sale_count,
        "avg_price": _num(f.avg_price),
        "baseline": baseline,
        "alerts": alerts.get(rules.subject_code(market, product, day), []),
    }
