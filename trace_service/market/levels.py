"""The city's emergency level per product (生活必需品市场供应应急响应级别) from the market alerts that stand
now, and the alert a change of level raises. Pure: no I/O.

The MOFCOM 办法 and the provincial and city plans rank an abnormal swing by how grave it is and how far it
reaches: 一般 (IV) within one district, 较大 (III) across districts of one prefecture-level city such as
Zhongshan, 重大 (II) and 特别重大 (I) beyond. Each market alert already carries the level of its
magnitude (``rules.py``: a 30 % drop is IV, 50 % is III; a price up 30/50/70/100 % is IV/III/II/I). The
city's level of a product adds the reach:

* an alert judged for the whole city (``stock_out``, ``slaughter_drop``: subject ``city/...``) counts at its
  own level;
* alerts about single markets make level L the city's once at least ``markets_<L>`` markets stand at L or
  graver (defaults: IV one market, III, II and I two). One market alone, however grave its figures, is a
  local swing: level IV.

*Standing* alerts are the market alerts of the last ``window_days`` local days (today and yesterday by
default: yesterday's totals and ``stock_out`` are judged after midnight) that are not resolved. An alert the
service withdrew, or one a regulator resolved, no longer holds the level up.

A change of a product's level is an alert of its own: rule ``emergency_level``, subject the product (one
alert per product, a new version at each change), with the new ``level`` (none when it is lifted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trace_service.alerts.models import LEVEL_ORDER, Finding, Level, Severity
from trace_service.market.products import name_of
from trace_service.market.rules import CITY, MARKET_RULES, severity_of

EMERGENCY_LEVEL = "emergency_level"
SUBJECT_TYPE = "product"
MAX_LISTED = 50  # alerts and markets named in a level alert's evidence

# The plans' names of the levels, and the colours of the matching warnings (蓝黄橙红).
LEVEL_NAMES: dict[Level, tuple[str, str]] = {
    Level.IV: ("一般", "general"),
    Level.III: ("较大", "significant"),
    Level.II: ("重大", "major"),
    Level.I: ("特别重大", "extraordinary"),
}
LEVEL_COLOURS: dict[Level, str] = {Level.IV: "blue", Level.III: "yellow", Level.II: "orange", Level.I: "red"}
# The market rules by name, Chinese first (the console carries the same table for every rule).
RULE_NAMES: dict[str, tuple[str, str]] = {
    "supply_drop": ("到货量下降", "supply drop"),
    "supply_surge": ("到货过剩", "supply glut"),
    "price_spike": ("价格上涨", "price spike"),
    "stock_out": ("断档脱销", "stock-out"),
    "slaughter_drop": ("屠宰量下降", "slaughter drop"),
    EMERGENCY_LEVEL: ("应急级别变化", "emergency level change"),
}
GRAVEST_FIRST = (Level.I, Level.II, Level.III, Level.IV)
_LEVELS = frozenset(level.value for level in Level)


class LevelThresholds(BaseSettings):
    """How far a swing must reach to be the city's level, overridable as ``TRACE_LEVEL_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TRACE_LEVEL_", extra="ignore")

    enabled: bool = True
    # Market alerts of this many local days up to today stand for "now".
    window_days: int = Field(default=2, ge=1, le=14)
    # Markets that must stand at a level (or graver) for it to be the city's.
    markets_iv: int = Field(default=1, ge=1)
    markets_iii: int = Field(default=2, ge=1)
    markets_ii: int = Field(default=2, ge=1)
    markets_i: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.markets_iv <= self.markets_iii <= self.markets_ii <= self.markets_i:
            raise ValueError("a graver level cannot need fewer markets than a milder one")
        return self

    def markets(self, level: Level) -> int:
        return {Level.IV: self.markets_iv, Level.III: self.markets_iii, Level.II: self.markets_ii}.get(
            level, self.markets_i
        )


@dataclass(frozen=True)
class Standing:
    """A market alert as the levels see it."""

    alert_id: str
    rule: str
    level: Level
    market: str  # a market's operator code, or CITY
    product: str
    day: date
    severity: str
    status: str


@dataclass(frozen=True)
class ProductLevel:
    product: str
    level: Level | None
    markets: tuple[str, ...]  # the markets standing at the level or graver
    city_wide: bool  # a city-wide alert stands at the level or graver
    behind: tuple[Standing, ...]  # the alerts that make the level, gravest first
    standing: tuple[Standing, ...]  # every standing alert of the product


def window(today: date, t: LevelThresholds) -> tuple[date, date]:
    """The local days whose market alerts stand for now, first and last."""
    return today - timedelta(days=t.window_days - 1), today


def parse_subject(code: str) -> tuple[str, str, date] | None:
    """``market/product/day`` of a market alert, or None for anything else."""
    parts = code.split("/")
    if len(parts) != 3:
        return None
    try:
        day = date.fromisoformat(parts[2])
    except ValueError:
        return None
    return parts[0], parts[1], day


def standing_of(
    alert_id: str, rule: str, level: str | None, subject_code: str, severity: str, status: str
) -> Standing | None:
    """A stored (or about to be stored) market alert as a standing alert; None if it cannot hold a level."""
    if rule not in MARKET_RULES or level is None or status == "resolved":
        return None
    parsed = parse_subject(subject_code)
    if parsed is None or level not in _LEVELS:
        return None
    market, product, day = parsed
    return Standing(alert_id, rule, Level(level), market, product, day, severity, status)


def _rank(level: Level) -> int:
    return LEVEL_ORDER[level]


def city_level(product: str, alerts: Iterable[Standing], t: LevelThresholds) -> ProductLevel:
    """The city's level of one product from its standing alerts (others are ignored)."""
    mine = tuple(
        sorted(
            (a for a in alerts if a.product == product),
            key=lambda a: (-_rank(a.level), a.market == CITY, a.market, a.rule, a.day),
        )
    )
    for level in GRAVEST_FIRST:
        at = [a for a in mine if _rank(a.level) >= _rank(level)]
        markets = tuple(sorted({a.market for a in at if a.market != CITY}))
        city_wide = any(a.market == CITY for a in at)
        if city_wide or len(markets) >= t.markets(level):
            return ProductLevel(product, level, markets, city_wide, tuple(at), mine)
    return ProductLevel(product, None, (), False, (), mine)


def city_levels(alerts: Sequence[Standing], products: Iterable[str], t: LevelThresholds) -> dict[str, ProductLevel]:
    return {p: city_level(p, alerts, t) for p in sorted(set(products))}


def level_label(level: Level | None, lang: str) -> str:
    if level is None:
        return "无" if lang == "zh" else "none"
    zh, en = LEVEL_NAMES[level]
    return f"{level.value}级（{zh}）" if lang == "zh" else f"{level.value} ({en})"


def severity_for(level: Level | None) -> Severity:
    return Severity.INFO if level is None else severity_of(level)


def change(
    now: ProductLevel,
    previous: Level | None,
    first: date,
    last: date,
    event_ids: Sequence[Any] = (),
    at: datetime | None = None,
) -> Finding | None:
    """The ``emergency_level`` alert of a product whose level is no longer ``previous``; None if it is.
    ``at``: the moment of the change (local time), kept in the evidence as ``since``."""
    if now.level == previous:
        return None
    name = name_of(now.product)
    rules = sorted({a.rule for a in now.behind})
    markets = len(now.markets)
    was_zh, was_en = level_label(previous, "zh"), level_label(previous, "en")
    if now.level is None:
        zh = f"全市 {name.zh} 应急级别解除（此前 {was_zh}）：已无预警达到级别"
        en = f"City-wide: the emergency level of {name.en} is lifted (was {was_en}); no standing alert reaches a level"
    else:
        reach_zh = "全市性预警" if now.city_wide else f"{markets} 个市场"
        reach_en = "a city-wide alert" if now.city_wide else f"{markets} market{'s' if markets != 1 else ''}"
        what_zh = "、".join(RULE_NAMES.get(r, (r, r))[0] for r in rules)
        what_en = ", ".join(RULE_NAMES.get(r, (r, r))[1] for r in rules)
        up = previous is None or _rank(now.level) > _rank(previous)
        zh = (
            f"全市 {name.zh} 应急级别{'升至' if up else '降至'} {level_label(now.level, 'zh')}（此前 {was_zh}）："
            f"{reach_zh}{what_zh}，共 {len(now.behind)} 条预警"
        )
        en = (
            f"City-wide: the emergency level of {name.en} {'rises' if up else 'falls'} to "
            f"{level_label(now.level, 'en')} (was {was_en}): {what_en} at {reach_en}, {len(now.behind)} alert"
            f"{'s' if len(now.behind) != 1 else ''}"
        )
    evidence: dict[str, Any] = {
        "product": now.product,
        "level": now.level.value if now.level else None,
        "previous": previous.value if previous else None,
        "window": [first.isoformat(), last.isoformat()],
        "city_wide": now.city_wide,
        "markets": list(now.markets[:MAX_LISTED]),
        "market_count": markets,
        "rules": rules,
        "alerts": [a.alert_id for a in now.behind[:MAX_LISTED]],
        "since": at.isoformat(timespec="seconds") if at else None,
    }
    return Finding(
        rule=EMERGENCY_LEVEL,
        subject_type=SUBJECT_TYPE,
        subject_code=now.product,
        severity=severity_for(now.level),
        message_zh=zh,
        message_en=en,
        level=now.level,
        operator=None,
        evidence=evidence,
        event_ids=tuple(event_ids)[:MAX_LISTED],
    )
