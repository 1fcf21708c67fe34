"""The market supply rules of domain.md, as pure functions: a cell's figures and its history in, findings out.

A *cell* is one market (or the whole city), one product and one local day. Its *baseline* is the mean of
the same weekday over the trailing weeks (4 by default), counting only the weeks on which the figure was
above zero (a day without receipts is a day the market did not trade or did not report, not a normal
day); with fewer points than ``min_baseline_points`` there is no judgement. The *band* is
``baseline x (1 - supply_drop_iv)`` .. ``baseline x (1 + supply_surge_iv)``: outside it a rule fires.

A day in progress is judged for a *shortfall* (``supply_drop``, ``slaughter_drop``) hour for hour: the
receipts of the settled hours of the day against the same hours of the baseline days, and only once the
baseline days had received most of their day by then (``partial_min_share``); before that the day is not
judged, because "less than usual so far" at 03:00 says nothing. A surge or a price jump is judged on the
figures so far. A finished day is judged on its totals once its data has settled (``service.py`` says when);
an alert of a rule that the totals no longer bear out is withdrawn with :func:`settled_note`, and an ongoing
alert gets a new version only when :func:`worth_a_version` says its level or figures really moved.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trace_service.alerts.models import Finding, Level, Severity

CITY = "city"  # the market code of city-wide cells (operator codes are upper case, so it cannot clash)
LIVE_PIG = "PIG-LIVE"
ZERO = Decimal(0)
MAX_EVENT_IDS = 50  # events linked to one market alert: enough to find the data, not every sale of a day

SUPPLY_DROP = "supply_drop"
SUPPLY_SURGE = "supply_surge"
PRICE_SPIKE = "price_spike"
STOCK_OUT = "stock_out"
SLAUGHTER_DROP = "slaughter_drop"
MARKET_RULES = (SUPPLY_DROP, SUPPLY_SURGE, PRICE_SPIKE, STOCK_OUT, SLAUGHTER_DROP)


class MarketThresholds(BaseSettings):
    """Thresholds of the market supply rules (domain.md), overridable as ``TRACE_MARKET_<NAME>``.

    Changes are fractions of the baseline (0.30 is 30 %).
    """

    model_config = SettingsConfigDict(env_prefix="TRACE_MARKET_", extra="ignore")

    enabled: bool = True
    baseline_weeks: int = Field(default=4, ge=1, le=12)
    min_baseline_points: int = Field(default=2, ge=1, le=12)
    supply_drop_iv: float = Field(default=0.30, gt=0, le=1)
    supply_drop_iii: float = Field(default=0.50, gt=0, le=1)
    supply_surge_iv: float = Field(default=1.00, gt=0)
    price_spike_iv: float = Field(default=0.30, gt=0)
    price_spike_iii: float = Field(default=0.50, gt=0)
    price_spike_ii: float = Field(default=0.70, gt=0)
    price_spike_i: float = Field(default=1.00, gt=0)
    # A day's average price from fewer sales than this is not compared (either side of the comparison).
    price_min_sales: int = Field(default=3, ge=1)
    # stock_out: this many sample sites without a sale of a monitored product in a day.
    stock_out_sites: int = Field(default=3, ge=1)
    # Products judged by stock_out; empty: every product that has sample sites.
    monitored_products: list[str] = []
    slaughter_drop_iii: float = Field(default=0.30, gt=0, le=1)
    # A day in progress is judged for a shortfall only through hours by which the baseline days had
    # received this share of their day.
    partial_min_share: float = Field(default=0.80, gt=0, le=1)
    # An hour (and a day) counts as over this long after it ends, for reports that come in late.
    settle_minutes: int = Field(default=30, ge=0, le=720)
    # A finished day is judged on its totals only once no event for that day has arrived anywhere in the city
    # for this long (a market back from an outage uploads hours of records at once). The default waits out
    # a market's evening uploads and judges yesterday at 02:00; tests and benchmarks use seconds.
    settle_quiet_seconds: float = Field(default=7200.0, ge=0, le=86400)
    # Days whose data settled that one sweep judges at most (each also re-judges the days it is a baseline
    # of); the rest wait for the next tick, so that a large backfill never makes one long transaction.
    settle_days_per_sweep: int = Field(default=4, ge=1, le=400)
    # An ongoing alert gets a new version (and an outbox row) only when its level changes, when its day's
    # judgement becomes final, or when its figures move by more than this share of the baseline.
    revise_step: float = Field(default=0.10, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.supply_drop_iii < self.supply_drop_iv:
            raise ValueError("supply_drop_iii must not be below supply_drop_iv")
        if not self.price_spike_i >= self.price_spike_ii >= self.price_spike_iii >= self.price_spike_iv:
            raise ValueError("price spike thresholds must grow from level IV to level I")
        return self


# -- the facts a rule judges -----------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """A cell's figures of one day (or of the day so far)."""

    kg_received: Decimal = ZERO
    kg_sold: Decimal = ZERO
    sales_amount: Decimal = ZERO
    sale_count: int = 0
    head: int = 0

    @property
    def avg_price(self) -> Decimal | None:
        return self.sales_amount / self.kg_sold if self.kg_sold > 0 else None


@dataclass(frozen=True)
class Settled:
    """Receipts and slaughtered heads of the first hours of a day (the hours before ``Cell.through_hour``)."""

    kg_received: Decimal = ZERO
    head: int = 0


@dataclass(frozen=True)
class Cell:
    day: date
    market: str  # a market's code, or CITY
    product: str
    today: Figures
    history: tuple[Figures, ...] = ()  # the same weekday 1, 2, ... weeks back
    previous: Figures = field(default_factory=Figures)  # the day before
    # None: the day is over and judged on its totals. Otherwise the hours before this one are settled.
    through_hour: int | None = None
    today_settled: Settled = field(default_factory=Settled)
    history_settled: tuple[Settled, ...] = ()  # the same hours of the history days
    market_name: str | None = None
    event_ids: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class SiteSales:
    """Sales of one product at one sample site (a market) on a day and on the same weekday before."""

    site: str
    sales: int
    history: tuple[int, ...]


@dataclass(frozen=True)
class Baseline:
    value: Decimal
    points: int


@dataclass(frozen=True)
class Comparison:
    value: Decimal
    baseline: Baseline
    through_hour: int | None

    @property
    def change(self) -> Decimal:
        return (self.value - self.baseline.value) / self.baseline.value


# -- pieces ----------------------------------------------------------------------------------------


def baseline(values: Sequence[Decimal | int], min_points: int) -> Baseline | None:
    """Mean of the values above zero; None with fewer than ``min_points`` of them."""
    points = [Decimal(v) for v in values if v > 0]
    if len(points) < min_points:
        return None
    return Baseline(sum(points, ZERO) / len(points), len(points))


def band(base: Decimal, t: MarketThresholds) -> tuple[Decimal, Decimal]:
    """The normal range around a baseline: below it is a drop, above it a surge."""
    return base * (1 - _d(t.supply_drop_iv)), base * (1 + _d(t.supply_surge_iv))


def severity_of(level: Level) -> Severity:
    return Severity.CRITICAL if level in (Level.II, Level.I) else Severity.WARNING


def subject_code(market: str, product: str, day: date) -> str:
    """One alert per market, product and day: each day's anomaly is its own alert, updated as the day's
    data grows, and acknowledging yesterday's does not hide today's."""
    return f"{market}/{product}/{day.isoformat()}"


def _d(value: float) -> Decimal:
    return Decimal(str(value))


def _measure(figures: Figures | Settled, measure: str) -> Decimal:
    return Decimal(getattr(figures, measure))


def shortfall(cell: Cell, measure: str, t: MarketThresholds) -> Comparison | None:
    """The day's figure against its baseline, hour for hour while the day is in progress; None when there is
    nothing to judge yet."""
    full = [_measure(h, measure) for h in cell.history]
    base = baseline(full, t.min_baseline_points)
    if base is None:
        return None
    if cell.through_hour is None:
        return Comparison(_measure(cell.today, measure), base, None)
    if cell.through_hour <= 0:
        return None
    weeks = [i for i, v in enumerate(full) if v > 0 and i < len(cell.history_settled)]
    if len(weeks) < t.min_baseline_points:
        return None
    part = sum((_measure(cell.history_settled[i], measure) for i in weeks), ZERO) / len(weeks)
    if part <= 0 or part < base.value * _d(t.partial_min_share):
        return None
    return Comparison(_measure(cell.today_settled, measure), Baseline(part, len(weeks)), cell.through_hour)


def _level(change: Decimal, steps: Sequence[tuple[float, Level]]) -> Level | None:
    for threshold, level in steps:  # gravest first
        if change >= _d(threshold):
            return level
    return None


def _r(value: Decimal, places: int = 3) -> float:
    return round(float(value), places)


def _kg(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'))}"


def _pct(change: Decimal) -> str:
    return f"{abs(change) * 100:.0f}"


def _where(cell: Cell) -> tuple[str, str]:
    if cell.market == CITY:
        return "全市", "City-wide"
    if cell.market_name:
        return f"{cell.market_name}（{cell.market}）", f"{cell.market_name} ({cell.market})"
    return f"市场 {cell.market}", f"Market {cell.market}"


def _when(cmp: Comparison) -> tuple[str, str]:
    if cmp.through_hour is None:
        return "全天", "over the day"
    return f"截至 {cmp.through_hour:02d}:00", f"by {cmp.through_hour:02d}:00"


def _evidence(cell: Cell, measure: str, cmp: Comparison, low: Decimal | None, high: Decimal | None) -> dict[str, Any]:
    return {
        "day": cell.day.isoformat(),
        "market": cell.market,
        "product": cell.product,
        "measure": measure,
        "value": _r(cmp.value),
        "baseline": _r(cmp.baseline.value),
        "change": _r(cmp.change, 4),
        "band": [None if low is None else _r(low), None if high is None else _r(high)],
        "points": cmp.baseline.points,
        "through_hour": cmp.through_hour,
    }


def _finding(rule: str, cell: Cell, level: Level, zh: str, en: str, evidence: dict[str, Any]) -> Finding:
    return Finding(
        rule=rule,
        subject_type="market",
        subject_code=subject_code(cell.market, cell.product, cell.day),
        severity=severity_of(level),
        message_zh=zh,
        message_en=en,
        level=level,
        operator=None if cell.market == CITY else cell.market,
        evidence=evidence,
        event_ids=cell.event_ids[:MAX_EVENT_IDS],
    )


# -- the rules -------------------------------------------------------------------------------------


def supply_drop(cell: Cell, t: MarketThresholds) -> Finding | None:
    """The kg received below the same-weekday baseline by >= 30 % (IV) / >= 50 % (III)."""
    if cell.market == CITY:
        return None
    cmp = shortfall(cell, "kg_received", t)
    if cmp is None:
        return None
    level = _level(-cmp.change, [(t.supply_drop_iii, Level.III), (t.supply_drop_iv, Level.IV)])
    if level is None:
        return None
    low, high = band(cmp.baseline.value, t)
    where_zh, where_en = _where(cell)
    when_zh, when_en = _when(cmp)
    return _finding(
        SUPPLY_DROP,
        cell,
        level,
        f"{where_zh} {cell.product} {cell.day} {when_zh}到货 {_kg(cmp.value)} kg，"
        f"比同星期基准 {_kg(cmp.baseline.value)} kg 低 {_pct(cmp.change)}%（{level.value}级）",
        f"{where_en}: {cell.product} received on {cell.day} {when_en} {_kg(cmp.value)} kg, "
        f"{_pct(cmp.change)}% below the same-weekday baseline of {_kg(cmp.baseline.value)} kg (level {level.value})",
        _evidence(cell, "kg_received", cmp, low, high),
    )


def supply_surge(cell: Cell, t: MarketThresholds) -> Finding | None:
    """The kg received (so far) above the same-weekday baseline by >= 100 % (IV): a glut."""
    if cell.market == CITY:
        return None
    base = baseline([h.kg_received for h in cell.history], t.min_baseline_points)
    if base is None:
        return None
    cmp = Comparison(cell.today.kg_received, base, None)
    if cmp.change < _d(t.supply_surge_iv):
        return None
    low, high = band(base.value, t)
    where_zh, where_en = _where(cell)
    evidence = _evidence(cell, "kg_received", cmp, low, high)
    evidence["through_hour"] = cell.through_hour  # a surge is judged on the day so far
    return _finding(
        SUPPLY_SURGE,
        cell,
        Level.IV,
        f"{where_zh} {cell.product} {cell.day} 到货 {_kg(cmp.value)} kg，"
        f"比同星期基准 {_kg(base.value)} kg 高 {_pct(cmp.change)}%（IV级，供应过剩）",
        f"{where_en}: {cell.product} received on {cell.day} {_kg(cmp.value)} kg, "
        f"{_pct(cmp.change)}% above the same-weekday baseline of {_kg(base.value)} kg (level IV, glut)",
        evidence,
    )


def price_spike(cell: Cell, t: MarketThresholds) -> Finding | None:
    """The average retail price up >= 30/50/70/100 % day on day or week on week (IV/III/II/I)."""
    if cell.market == CITY:
        return None
    price = cell.today.avg_price
    if price is None or cell.today.sale_count < t.price_min_sales:
        return None
    references: dict[str, Decimal] = {}
    week_ago = cell.history[0] if cell.history else None
    for name, figures in (("day_on_day", cell.previous), ("week_on_week", week_ago)):
        ref = figures.avg_price if figures is not None and figures.sale_count >= t.price_min_sales else None
        if ref is not None and ref > 0:
            references[name] = ref
    if not references:
        return None
    changes = {name: (price - ref) / ref for name, ref in references.items()}
    compared = max(changes, key=lambda name: changes[name])
    change = changes[compared]
    steps = [
        (t.price_spike_i, Level.I),
        (t.price_spike_ii, Level.II),
        (t.price_spike_iii, Level.III),
        (t.price_spike_iv, Level.IV),
    ]
    level = _level(change, steps)
    if level is None:
        return None
    ref = references[compared]
    where_zh, where_en = _where(cell)
    basis_zh = "环比前一日" if compared == "day_on_day" else "同比上周同日"
    basis_en = "day on day" if compared == "day_on_day" else "week on week"
    evidence: dict[str, Any] = {
        "day": cell.day.isoformat(),
        "market": cell.market,
        "product": cell.product,
        "measure": "avg_price",
        "value": _r(price),
        "baseline": _r(ref),
        "change": _r(change, 4),
        "band": [None, _r(ref * (1 + _d(t.price_spike_iv)))],
        "compared": compared,
        "sales": cell.today.sale_count,
    }
    for name in ("day_on_day", "week_on_week"):
        evidence[name] = (
            {"reference": _r(references[name]), "change": _r(changes[name], 4)} if name in references else None
        )
    return _finding(
        PRICE_SPIKE,
        cell,
        level,
        f"{where_zh} {cell.product} {cell.day} 零售均价 {price:.2f} 元/kg，{basis_zh}（{ref:.2f} 元/kg）"
        f"上涨 {_pct(change)}%（{level.value}级）",
        f"{where_en}: average retail price of {cell.product} on {cell.day} {price:.2f} yuan/kg, "
        f"up {_pct(change)}% {basis_en} (from {ref:.2f} yuan/kg; level {level.value})",
        evidence,
    )


def slaughter_drop(cell: Cell, t: MarketThresholds) -> Finding | None:
    """The city's slaughtered heads below the same-weekday baseline by >= 30 % (III)."""
    if cell.market != CITY or cell.product != LIVE_PIG:
        return None
    cmp = shortfall(cell, "head", t)
    if cmp is None or -cmp.change < _d(t.slaughter_drop_iii):
        return None
    low = cmp.baseline.value * (1 - _d(t.slaughter_drop_iii))
    when_zh, when_en = _when(cmp)
    return _finding(
        SLAUGHTER_DROP,
        cell,
        Level.III,
        f"全市 {cell.day} {when_zh}屠宰生猪 {cmp.value:.0f} 头，比同星期基准 {cmp.baseline.value:.0f} 头"
        f"低 {_pct(cmp.change)}%（III级）",
        f"City-wide: {cmp.value:.0f} pigs slaughtered on {cell.day} {when_en}, {_pct(cmp.change)}% below "
        f"the same-weekday baseline of {cmp.baseline.value:.0f} (level III)",
        _evidence(cell, "head", cmp, low, None),
    )


def stock_out(product: str, day: date, sites: Sequence[SiteSales], t: MarketThresholds) -> Finding | None:
    """A monitored product with no sale at >= N sample sites in a (finished) day (III).

    The sample sites of a product are the markets that sold it on at least ``min_baseline_points`` of the
    same weekdays before: the ones where its absence means something.
    """
    if t.monitored_products and product not in t.monitored_products:
        return None
    sample = [s for s in sites if sum(1 for v in s.history if v > 0) >= t.min_baseline_points]
    out = sorted(s.site for s in sample if s.sales <= 0)
    if len(out) < t.stock_out_sites:
        return None
    share = Decimal(len(out)) / len(sample)
    shown = "、".join(out[:10]) + ("等" if len(out) > 10 else "")
    return Finding(
        rule=STOCK_OUT,
        subject_type="market",
        subject_code=subject_code(CITY, product, day),
        severity=severity_of(Level.III),
        message_zh=f"全市 {product} {day} 有 {len(out)} 个监测点（共 {len(sample)} 个）全天无销售：{shown}（III级）",
        message_en=f"City-wide: {product} was not sold on {day} at {len(out)} of {len(sample)} sample sites "
        f"(level III): {', '.join(out[:10])}{', ...' if len(out) > 10 else ''}",
        level=Level.III,
        evidence={
            "day": day.isoformat(),
            "market": CITY,
            "product": product,
            "measure": "sites_without_sales",
            "value": len(out),
            "baseline": len(sample),
            "change": _r(share, 4),
            "band": [0, t.stock_out_sites - 1],
            "sites": out[:100],
        },
    )


CELL_RULES: dict[str, Callable[[Cell, MarketThresholds], Finding | None]] = {
    SUPPLY_DROP: supply_drop,
    SUPPLY_SURGE: supply_surge,
    PRICE_SPIKE: price_spike,
    SLAUGHTER_DROP: slaughter_drop,
}
SHORTFALLS = frozenset({SUPPLY_DROP, SLAUGHTER_DROP})
# The rules more data can make fire: judged by the batch that brings the data. A batch can only make a
# shortfall smaller; shortfalls are judged hour by hour by the sweep.
AS_DATA_ARRIVES = frozenset({SUPPLY_SURGE, PRICE_SPIKE})


def rules_of(cell: Cell) -> frozenset[str]:
    """The cell rules that can fire on a cell: the city's slaughtered heads, or a market's kg and prices."""
    if cell.market == CITY:
        return frozenset({SLAUGHTER_DROP}) if cell.product == LIVE_PIG else frozenset()
    return frozenset({SUPPLY_DROP, SUPPLY_SURGE, PRICE_SPIKE})


def judge(cell: Cell, t: MarketThresholds, *, only: Collection[str] | None = None) -> list[Finding]:
    """Every cell rule (of ``only``, if given) that fires on this cell."""
    names = rules_of(cell) if only is None else rules_of(cell) & frozenset(only)
    found = (CELL_RULES[name](cell, t) for name in sorted(names))
    return [f for f in found if f is not None]


# -- withdrawing and re-versioning -------------------------------------------------------------------


def settled_note(rule: str, cell: Cell, t: MarketThresholds) -> str:
    """Why an alert of ``rule`` about this finished cell is withdrawn: the day's final figures, in Chinese then
    English (the resolution note of an alert is one text)."""
    where_zh, where_en = _where(cell)
    if rule in (SUPPLY_DROP, SUPPLY_SURGE):
        value = cell.today.kg_received
        zh, en = f"全天到货 {_kg(value)} kg", f"{_kg(value)} kg received over the day"
        base = baseline([h.kg_received for h in cell.history], t.min_baseline_points)
        if base is not None:
            low, high = band(base.value, t)
            zh += f"，同星期基准 {_kg(base.value)} kg，正常范围 {_kg(low)}–{_kg(high)} kg"
            en += f" against a same-weekday baseline of {_kg(base.value)} kg (normal {_kg(low)}..{_kg(high)} kg)"
    elif rule == SLAUGHTER_DROP:
        heads = cell.today.head
        zh, en = f"全天屠宰生猪 {heads} 头", f"{heads} pigs slaughtered over the day"
        base = baseline([h.head for h in cell.history], t.min_baseline_points)
        if base is not None:
            zh += f"，同星期基准 {base.value:.0f} 头"
            en += f" against a same-weekday baseline of {base.value:.0f}"
    else:
        price = cell.today.avg_price
        shown = "-" if price is None else f"{price:.2f}"
        zh = f"全天零售均价 {shown} 元/kg（{cell.today.sale_count} 笔）"
        en = f"average retail price {shown} yuan/kg over the day ({cell.today.sale_count} sales)"
        for name_zh, name_en, ref in (
            ("前一日", "the day before", cell.previous),
            ("上周同日", "a week before", cell.history[0] if cell.history else None),
        ):
            if ref is not None and ref.avg_price is not None:
                zh += f"，{name_zh} {ref.avg_price:.2f}"
                en += f", {name_en} {ref.avg_price:.2f}"
    return (
        f"数据已齐，{where_zh} {cell.product} {cell.day} {zh}，未达到预警条件，系统撤回。"
        f" Withdrawn: on the day's settled data, {where_en}, {cell.product} on {cell.day}: {en}."
    )


def stock_out_note(product: str, day: date, sites: Sequence[SiteSales], t: MarketThresholds) -> str:
    """Why a ``stock_out`` alert is withdrawn: how many sample sites went without a sale on the settled day."""
    sample = [s for s in sites if sum(1 for v in s.history if v > 0) >= t.min_baseline_points]
    out = sum(1 for s in sample if s.sales <= 0)
    return (
        f"数据已齐，全市 {product} {day} 全天无销售的监测点 {out} 个"
        f"（共 {len(sample)} 个，预警线 {t.stock_out_sites} 个），系统撤回。"
        f" Withdrawn: on the day's settled data, {product} went unsold on {day} at {out} of "
        f"{len(sample)} sample sites (the alert needs {t.stock_out_sites})."
    )


SYSTEM = "system"  # the actor of the service's own resolutions


@dataclass(frozen=True)
class AlertState:
    """What a new finding is compared with: the alert as stored."""

    level: str | None
    status: str
    resolved_by: str | None
    evidence: dict[str, Any]


def worth_a_version(finding: Finding, current: AlertState | None, t: MarketThresholds) -> bool:
    """Is this finding news about its alert? Yes for a new alert, a withdrawn one that fires again, a change of
    level, a day whose judgement became final (or stopped being hour-for-hour), or figures that moved by more
    than ``revise_step`` of the baseline; a surge growing by a few kg per batch is not."""
    if current is None:
        return True
    if current.status == "resolved" and current.resolved_by == SYSTEM:
        return True
    if current.level != (finding.level.value if finding.level else None):
        return True
    old, new = current.evidence, finding.evidence
    if (old.get("through_hour") is None) != (new.get("through_hour") is None):
        return True
    try:
        base = abs(float(new["baseline"]))
        moved = max(abs(float(new["value"]) - float(old["value"])), abs(base - abs(float(old["baseline"]))))
    except (KeyError, TypeError, ValueError):
        return old != new  # not figures this rule compares: any change is news
    return moved > t.revise_step * base
