"""Use cases of market supply monitoring.

* :func:`apply` runs inside the worker's batch transaction: it adds the batch's figures, notes when each
  day's figures last changed, and judges the cells (day, market, product) of the day in progress that the
  batch touched by the rules more data can make fire (``supply_surge``, ``price_spike``: the *early
  warning*), once the days they are compared with have settled.
* :func:`sweep` runs on the worker's tick: it judges what only the clock can reveal, an *absence*: a
  market that received nothing (or too little) by the hour it usually has most of its day
  (``supply_drop``, ``slaughter_drop``, once per settled hour); and every past day whose data has
  *settled* (over, and nothing for it arrived anywhere in the city for ``settle_quiet_seconds``): every
  cell of that day on its totals and ``stock_out``, and again the later days it is compared from. A rule
  the settled totals do not bear out has its alert withdrawn (resolved by ``system`` with the final
  figures).
* :func:`supply` serves ``GET /v1/monitor/supply``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access.models import Principal
from trace_service.access.scopes import MARKET, require_flag
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.models import Finding, alert_id
from trace_service.contract.events import Event
from trace_service.errors import InvalidInput
from trace_service.market import emergency, projection, rules
from trace_service.market import repository as repo
from trace_service.market.rules import CITY, LIVE_PIG, Cell, Figures, MarketThresholds, Settled, SiteSales
from trace_service.settings import Settings, section
from trace_service.sharing import service as sharing

PRODUCT_PATTERN = r"^[0-9A-Za-z._-]{1,32}$"  # the contract's product code
MAX_DAYS = 366
MAX_DAYS_UNFILTERED = 31  # without a product or a market the answer covers every series: keep it small
DEFAULT_DAYS = 28

CellKey = tuple[date, str, str]


def thresholds_of(settings: Settings) -> MarketThresholds:
    """The market thresholds: ``settings.market`` once settings carry them, else read from the environment
    once (``TRACE_MARKET_*``)."""
    return section(settings, "market", MarketThresholds)


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


@dataclass(frozen=True)
class Settling:
    """Which past days count as settled: over, and nothing for them arrived after ``quiet_before``."""

    quiet_before: datetime
    last_day: date  # the last day that is over and ended at least a quiet period ago

    @classmethod
    def at(cls, now: datetime, tz: ZoneInfo, t: MarketThresholds) -> Settling:
        over = Clock.at(now, tz, t.settle_minutes).day
        quiet_before = now - timedelta(seconds=t.settle_quiet_seconds)
        return cls(quiet_before, min(over, quiet_before.astimezone(tz).date()) - timedelta(days=1))


def _backs(t: MarketThresholds) -> list[int]:
    """The days a cell is compared with, as days back: itself, the day before, the same weekday of each
    baseline week."""
    return [0, 1, *(7 * week for week in range(1, t.baseline_weeks + 1))]


async def apply(
    conn: AsyncConnection,
    events: Sequence[Event],
    settings: Settings,
    *,
    now: datetime | None = None,
    thresholds: MarketThresholds | None = None,
    shard: int = 0,
    changed: list[CellKey] | None = None,
) -> list[Finding]:
    """Add the figures of a batch's fresh events and judge the cells of the day in progress they touched.

    Call it after the chain projection of the same batch (the product of a receipt or a sale is read
    from the lots), with the events stored for the first time only: the figures are sums, so an event
    counted twice would count double. ``shard``: a Kafka partition the calling worker owns (its rolled-up
    rows; see ``repository.add``). ``changed`` receives the (day, market, product) cells whose figures changed,
    for the shared stream.
    """
    if not events:
        return []
    t = thresholds or thresholds_of(settings)
    tz = ZoneInfo(settings.timezone)
    now = now or datetime.now(UTC)
    touched = await repo.add(conn, projection.plan(events, tz), now=now, shard=shard)
    if changed is not None:
        changed.extend((row.day, row.market, row.product) for row in touched)
    if not t.enabled or not touched:
        return []
    # Only the day in progress is judged as the data arrives, by the rules more data can make fire; a past
    # day waits until its data has settled.
    live = await _judge_live(conn, _cells(touched), now, tz, t, only=rules.AS_DATA_ARRIVES)
    findings = await _throttled(conn, live, t)
    # The city's emergency levels move with the market alerts, in this transaction (market/emergency.py).
    await emergency.follow(conn, findings, settings, now=now)
    return findings


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

    Counts the figures that were waiting for their product; judges the days whose data settled since their
    last judgement (at most ``settle_days_per_sweep``, oldest first) on their totals, withdrawing what the
    totals refute, and the later days they are compared from; and once per settled hour of the day, the
    shortfall rules for every market with a baseline (a market that received nothing sends no event that
    could trigger them).
    """
    t = thresholds or thresholds_of(settings)
    tz = ZoneInfo(settings.timezone)
    now = now or datetime.now(UTC)
    clock = Clock.at(now, tz, t.settle_minutes)
    waiting = await repo.add(conn, [], now=now)
    if not t.enabled:
        return []
    findings = await _judge_live(conn, _cells(waiting), now, tz, t, only=rules.AS_DATA_ARRIVES) if waiting else []
    settling = Settling.at(now, tz, t)
    days = await repo.claim_settled(conn, settling.last_day, settling.quiet_before, t.settle_days_per_sweep)
    if days:
        findings += await _settle(conn, days, now, tz, t)
    # A silent market is news only on a day the rest of the city reports: a day without any data at all is
    # one whose records have not been delivered (a backfill that has not reached it), not a city-wide famine.
    if (
        clock.cutoff.hour >= 1
        and clock.day in await repo.day_states(conn, [clock.day], settling.quiet_before)
        and await repo.claim_sweep(conn, clock.day, clock.cutoff.hour)
    ):
        findings += await _judge_live(conn, await _cells_of(conn, [clock.day], t), now, tz, t, only=rules.SHORTFALLS)
    findings = await _throttled(conn, findings, t)
    # Levels follow these findings, and fall when their days leave the window (market/emergency.py).
    await emergency.follow(conn, findings, settings, now=now, sweep=True)
    return findings


async def _cells_of(conn: AsyncConnection, days: list[date], t: MarketThresholds) -> dict[CellKey, set[uuid.UUID]]:
    """Every cell of these days worth judging: the markets' products with figures on the day or on its
    baseline days (a market gone silent shows its zeros), and the city's slaughtered heads."""
    weeks = _backs(t)[2:]
    cells: dict[CellKey, set[uuid.UUID]] = {key: set() for key in await repo.cells_for(conn, days, [0, *weeks])}
    for day in days:
        cells[(day, CITY, LIVE_PIG)] = set()
    return cells


async def _unsettled(conn: AsyncConnection, days: Iterable[date], settling: Settling) -> set[date]:
    """The days (of these) whose data may still change: not over yet, or with an arrival in the quiet period."""
    wanted = sorted(set(days))
    states = await repo.day_states(conn, [d for d in wanted if d <= settling.last_day], settling.quiet_before)
    return {d for d in wanted if d > settling.last_day or (d in states and not states[d].quiet)}


def _allowed(cell: Cell, unsettled: set[date], t: MarketThresholds) -> frozenset[str]:
    """The rules this cell may be judged by now: none while a baseline day may still change (its verdict
    could be refuted), and no ``price_spike`` while the day before may."""
    if any(cell.day - timedelta(days=b) in unsettled for b in _backs(t)[2:]):
        return frozenset()
    names = rules.rules_of(cell)
    return names - {rules.PRICE_SPIKE} if cell.day - timedelta(days=1) in unsettled else names


async def _judge_live(
    conn: AsyncConnection,
    cells: dict[CellKey, set[uuid.UUID]],
    now: datetime,
    tz: ZoneInfo,
    t: MarketThresholds,
    *,
    only: frozenset[str] | None = None,
) -> list[Finding]:
    """The early warning: cells of the day in progress, by ``only`` of the rules (all by default), a shortfall
    hour for hour (see ``rules.shortfall``)."""
    clock = Clock.at(now, tz, t.settle_minutes)
    live = {key: ids for key, ids in cells.items() if key[0] >= clock.day}
    if not live:
        return []
    # Without a shortfall rule the hours are not needed: the day so far is its daily row.
    loaded = await _load(conn, live, clock.through_hour, t, hourly=only is None or bool(only & rules.SHORTFALLS))
    unsettled = await _unsettled(
        conn, {c.day - timedelta(days=b) for c in loaded for b in _backs(t)[1:]}, Settling.at(now, tz, t)
    )
    findings: list[Finding] = []
    for cell in loaded:
        allowed = _allowed(cell, unsettled, t)
        findings += rules.judge(cell, t, only=allowed if only is None else allowed & only)
    return findings


async def _settle(
    conn: AsyncConnection, claimed: list[date], now: datetime, tz: ZoneInfo, t: MarketThresholds
) -> list[Finding]:
    """Judge days whose data settled, and the days their figures are compared from: the day after (its price
    against this one) and the same weekday of the following weeks (their baseline)."""
    settling = Settling.at(now, tz, t)
    later = {x + timedelta(days=b) for x in claimed for b in _backs(t)}
    past = sorted(d for d in later if d <= settling.last_day)
    states = await repo.day_states(conn, past, settling.quiet_before)
    # A later day is judged again if it has data and was judged before; one still pending is judged when
    # its own data settles, and one without data has not been delivered yet.
    final = [d for d in past if d in claimed or (d in states and not states[d].pending)]
    findings = await _judge_final(conn, final, settling, t)
    clock = Clock.at(now, tz, t.settle_minutes)
    # The day in progress, if one of them, and if anybody reported for it yet (see the hourly sweep).
    today = [d for d in later if clock.day <= d <= now.astimezone(tz).date()]
    live = sorted(set(today) & set(await repo.day_states(conn, today, settling.quiet_before)))
    if live:
        findings += await _judge_live(conn, await _cells_of(conn, live, t), now, tz, t)
    return findings


async def _judge_final(
    conn: AsyncConnection, days: list[date], settling: Settling, t: MarketThresholds
) -> list[Finding]:
    """Every rule on the totals of these finished days, and the withdrawal of alerts the totals refute."""
    unsettled = await _unsettled(conn, {d - timedelta(days=b) for d in days for b in _backs(t)[1:]}, settling)
    ready = [d for d in days if not any(d - timedelta(days=b) in unsettled for b in _backs(t)[2:])]
    if not ready:
        return []  # each waits for its last baseline day to settle, which judges it again
    findings: list[Finding] = []
    refuted: dict[str, tuple[str, Cell]] = {}
    for cell in await _load(conn, await _cells_of(conn, ready, t), lambda _: None, t):
        allowed = _allowed(cell, unsettled, t)
        fired = rules.judge(cell, t, only=allowed)
        findings += fired
        for rule in allowed - {f.rule for f in fired}:
            refuted[alert_id(rule, "market", rules.subject_code(cell.market, cell.product, cell.day))] = (rule, cell)
    notes: dict[str, str] = {}
    for day in ready:
        found, refuted_stock = await _stock_out(conn, day, t)
        findings += found
        notes.update(refuted_stock)
    still_open = await repo.open_alerts(conn, [*refuted, *notes])
    withdrawn = {aid: notes[aid] for aid in still_open if aid in notes}
    withdrawn |= {aid: rules.settled_note(*refuted[aid], t) for aid in still_open if aid in refuted}
    await alerts_repo.resolve_by_system(conn, withdrawn)
    return findings


async def _throttled(conn: AsyncConnection, findings: list[Finding], t: MarketThresholds) -> list[Finding]:
    """The findings that are news about their alert (``rules.worth_a_version``): an ongoing alert is not
    re-versioned, with an outbox row, for every batch that moves its figures a little."""
    if not findings:
        return []
    unique = {f.alert_id: f for f in findings}  # the last word about a subject wins, as in write_findings
    states = await repo.alert_states(conn, list(unique))
    return [f for f in unique.values() if rules.worth_a_version(f, states.get(f.alert_id), t)]


async def _load(
    conn: AsyncConnection,
    cells: dict[CellKey, set[uuid.UUID]],
    through_of: Callable[[date], int | None],
    t: MarketThresholds,
    *,
    hourly: bool = True,
) -> list[Cell]:
    """The cells with their figures and history (those with any earlier figures: the others have nothing to
    be compared with). ``through_of``: None for a day judged on its totals, else its settled hours, whose
    figures are read too unless not ``hourly``."""
    keys = sorted(cells)
    through = {key: through_of(key[0]) for key in keys}
    backs = _backs(t)
    hours = [24 if (h := through[key]) is None or not hourly else h for key in keys]  # 24: the whole day only
    rows = await repo.figures(conn, [(*key, hour) for key, hour in zip(keys, hours, strict=True)], backs)
    figures: dict[tuple[CellKey, int], repo.CellRow] = {((r.day, r.market, r.product), r.back): r for r in rows}
    names = await repo.market_names(conn, sorted({key[1] for key in keys if key[1] != CITY}))
    loaded: list[Cell] = []
    for key in keys:
        if not any((key, b) in figures for b in backs[1:]):
            continue
        day, market, product = key
        loaded.append(
            Cell(
                day=day,
                market=market,
                product=product,
                today=_figures(figures.get((key, 0))),
                history=tuple(_figures(figures.get((key, b))) for b in backs[2:]),
                previous=_figures(figures.get((key, 1))),
                through_hour=through[key],
                today_settled=_settled(figures.get((key, 0))),
                history_settled=tuple(_settled(figures.get((key, b))) for b in backs[2:]),
                market_name=names.get(market),
                event_ids=tuple(sorted(cells[key])),
            )
        )
    return loaded


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


async def _stock_out(conn: AsyncConnection, day: date, t: MarketThresholds) -> tuple[list[Finding], dict[str, str]]:
    """``stock_out`` of a finished day for every product with sample sites; and, for those that do not fire,
    the withdrawal note of their alert (by alert id)."""
    backs = [0, *(7 * week for week in range(1, t.baseline_weeks + 1))]
    rows = await repo.site_sales(conn, day, [day - timedelta(days=b) for b in backs], t.monitored_products)
    sales: dict[str, dict[str, dict[int, int]]] = {}
    for product, site, back, count in rows:
        sales.setdefault(product, {}).setdefault(site, {})[back] = count
    findings = []
    refuted: dict[str, str] = {}
    for product in sorted(sales):
        sites = [
            SiteSales(site, by_back.get(0, 0), tuple(by_back.get(b, 0) for b in backs[1:]))
            for site, by_back in sorted(sales[product].items())
        ]
        found = rules.stock_out(product, day, sites, t)
        if found is not None:
            findings.append(found)
        else:
            refuted[alert_id(rules.STOCK_OUT, "market", rules.subject_code(CITY, product, day))] = rules.stock_out_note(
                product, day, sites, t
            )
    return findings, refuted


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
    granted = require_flag(principal, MARKET)  # regulators, admins, departments with `market`
    first, last = _validate(product, market, first, last, settings)
    t = thresholds_of(settings)
    weeks = t.baseline_weeks
    rows = await repo.series(conn, first - timedelta(days=7 * weeks), last, product, market, CITY)
    by_series: dict[tuple[str, str], dict[date, Figures]] = {}
    for m, p, day, kg_in, kg_sold, amount, sales, head in rows:
        by_series.setdefault((m, p), {})[day] = Figures(
            Decimal(kg_in or 0), Decimal(kg_sold or 0), Decimal(amount or 0), int(sales or 0), int(head or 0)
        )
    # A department without `alerts` gets the figures, not the alerts about them.
    alerts = await repo.market_alerts(conn, rules.MARKET_RULES, first, last, product, market) if granted.alerts else {}
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
    await sharing.record_read(conn, principal, "/v1/monitor/supply", len(series))
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
