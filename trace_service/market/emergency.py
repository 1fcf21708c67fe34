"""The city's emergency levels in use: following them as market alerts are written, and
``GET /v1/monitor/levels``. The level logic is pure, in :mod:`trace_service.market.levels`.

:func:`follow` runs in the transaction that writes market findings (a worker's batch, the clock's sweep):
it recomputes the level of each product those findings are about, from the alerts already stored
overlaid with the findings about to be stored, and writes an ``emergency_level`` alert for every product
whose level changed, in that same transaction, so the change reaches ``trace.alerts.v1`` through the outbox
like any alert. On the sweep it also looks again at every product that has a level: the level falls when
its days leave the window, or when its alerts are withdrawn or resolved.

The SQL lives here with its use cases: two small reads of the alerts table and the level alerts' writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access.models import Principal
from trace_service.access.scopes import MARKET, require_flag
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.models import LEVEL_ORDER, Finding, Level
from trace_service.market import levels
from trace_service.market.levels import (
    EMERGENCY_LEVEL,
    LEVEL_COLOURS,
    LEVEL_NAMES,
    RULE_NAMES,
    SUBJECT_TYPE,
    LevelThresholds,
    ProductLevel,
    Standing,
)
from trace_service.market.products import names
from trace_service.market.rules import CITY, MARKET_RULES, MarketThresholds
from trace_service.settings import Settings, section
from trace_service.sharing import service as sharing

# Two workers that find the same change at once: the one that does not get this lock leaves the change to
# the next sweep, rather than wait (it may hold alert rows the other one needs).
_LOCK_KEY = 0x7E17E7E1


def thresholds_of(settings: Settings) -> LevelThresholds:
    return section(settings, "levels", LevelThresholds)


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


# -- SQL ---------------------------------------------------------------------------------------------------

# The market alerts about the window's days (resolved ones too: a finding about to be written may re-open
# one). An alert about a day is created no earlier than that day's first data, so the creation index bounds
# the scan to recent alerts, whatever the table's size.
_STANDING = """
SELECT a.id, a.rule, a.level, a.subject_code, a.severity, a.status, a.evidence::text
FROM alerts a
WHERE a.created_at >= $1::timestamptz AND a.subject_type = 'market' AND a.rule = ANY($2::text[])
  AND split_part(a.subject_code, '/', 3) BETWEEN $3::text AND $4::text
  AND ($5::text[] IS NULL OR split_part(a.subject_code, '/', 2) = ANY($5::text[]))
"""

_LEVELS = """
SELECT a.subject_code, a.level, a.status, a.evidence ->> 'since', a.evidence #>> '{window,1}'
FROM alerts a
WHERE a.rule = $1::text AND a.subject_type = $2::text AND ($3::text[] IS NULL OR a.subject_code = ANY($3::text[]))
"""

# An escalation needs a regulator's attention again: an acknowledged level alert is re-opened (a resolved
# one is re-opened by the upsert itself).
_REOPEN = """
UPDATE alerts SET status = 'open', acknowledged_at = NULL, acknowledged_by = NULL, acknowledged_note = NULL
WHERE id = ANY($1::text[]) AND status = 'acknowledged'
"""

_PRODUCTS_TRADED = """
SELECT DISTINCT product_code FROM market_rollup_daily WHERE market = $1::text AND day BETWEEN $2::date AND $3::date
"""


async def _stored(
    conn: AsyncConnection, since: datetime, first: date, last: date, products: Sequence[str] | None
) -> list[tuple[Any, ...]]:
    result = await conn.exec_driver_sql(
        _STANDING,
        (since, list(MARKET_RULES), first.isoformat(), last.isoformat(), None if products is None else list(products)),
    )
    return [tuple(r) for r in _rows(result)]


@dataclass(frozen=True)
class StoredLevel:
    """A product's ``emergency_level`` alert as stored: its level, and the last day of the window it was
    computed for."""

    level: Level | None
    status: str
    since: str | None  # when it reached that level (local time)
    window_end: str | None


async def _stored_levels(conn: AsyncConnection, products: Sequence[str] | None = None) -> dict[str, StoredLevel]:
    result = await conn.exec_driver_sql(
        _LEVELS, (EMERGENCY_LEVEL, SUBJECT_TYPE, None if products is None else list(products))
    )
    return {r[0]: StoredLevel(Level(r[1]) if r[1] else None, r[2], r[3], r[4]) for r in _rows(result)}


# -- the standing alerts ----------------------------------------------------------------------------------


def _window(now: datetime, settings: Settings, t: LevelThresholds) -> tuple[date, date, datetime]:
    tz = ZoneInfo(settings.timezone)
    first, last = levels.window(now.astimezone(tz).date(), t)
    # Data about a day arrives at the earliest a few minutes before it starts (occurred_at may lie 5 minutes
    # ahead); an hour's margin keeps every alert about the window's days in the scan.
    since = datetime.combine(first, datetime.min.time(), tz) - timedelta(hours=1)
    return first, last, since


def _evidence_json(f: Finding) -> Any:
    return orjson.loads(orjson.dumps(f.evidence, default=str))


def standing(stored: Iterable[tuple[Any, ...]], fresh: Iterable[Finding], first: date, last: date) -> list[Standing]:
    """The standing alerts once ``fresh`` findings are written over the ``stored`` rows: a finding updates
    its alert's level, and re-opens a resolved alert whose evidence or level it changes (as the upsert of
    ``alerts/repository.py`` does)."""
    rows: dict[str, tuple[str, str | None, str, str, str, Any]] = {
        r[0]: (r[1], r[2], r[3], r[4], r[5], r[6]) for r in stored
    }
    for f in fresh:
        level = f.level.value if f.level else None
        old = rows.get(f.alert_id)
        status = "open"
        if old is not None:
            same = old[1] == level and orjson.loads(old[5]) == _evidence_json(f)
            status = old[4] if same or old[4] != "resolved" else "open"
        rows[f.alert_id] = (f.rule, level, f.subject_code, f.severity.value, status, None)
    out = []
    for alert_id, (rule, level, subject, severity, status, _) in rows.items():
        found = levels.standing_of(alert_id, rule, level, subject, severity, status)
        if found is not None and first <= found.day <= last:
            out.append(found)
    return out


def _market_findings(findings: Iterable[Finding]) -> dict[str, Finding]:
    fresh: dict[str, Finding] = {}
    for f in findings:
        if f.subject_type == "market" and f.rule in MARKET_RULES:
            fresh[f.alert_id] = f  # the last word of a batch about a subject wins, as when written
    return fresh


# -- following the levels ---------------------------------------------------------------------------------


async def follow(
    conn: AsyncConnection,
    findings: Sequence[Finding],
    settings: Settings,
    *,
    now: datetime | None = None,
    sweep: bool = False,
) -> list[str]:
    """Write an ``emergency_level`` alert for each product whose city level the market ``findings`` (about
    to be written in this transaction) change; with ``sweep``, also for every product that has a level and
    may have lost it. Returns the ids of the alerts written."""
    t = thresholds_of(settings)
    if not t.enabled:
        return []
    moment = now or datetime.now(UTC)
    first, last, since = _window(moment, settings, t)
    fresh = _market_findings(findings)
    products = set()
    for f in fresh.values():
        parsed = levels.parse_subject(f.subject_code)
        if parsed is not None and first <= parsed[2] <= last:
            products.add(parsed[1])
    if not products and not sweep:
        return []
    previous = await _stored_levels(conn) if sweep else await _stored_levels(conn, sorted(products))
    if sweep:
        # A level whose window has not ended yet was computed for a later "now" than this one (a test's
        # clock, a backfill's): it is not this sweep's to lift.
        products |= {p for p, s in previous.items() if s.level is not None and (s.window_end or "") <= last.isoformat()}
    if not products:
        return []
    wanted = sorted(products)
    now_levels = levels.city_levels(
        standing(await _stored(conn, since, first, last, wanted), fresh.values(), first, last), wanted, t
    )
    if not _changes(now_levels, previous):
        return []
    got = (await conn.exec_driver_sql("SELECT pg_try_advisory_xact_lock($1)", (_LOCK_KEY,))).scalar()
    if not got:
        return []
    previous = await _stored_levels(conn, wanted)  # what a concurrent writer committed meanwhile
    changed = _changes(now_levels, previous)
    out: list[Finding] = []
    escalated: list[str] = []
    for product, level in changed:
        before = previous[product].level if product in previous else None
        events = sorted({e for a in level.behind if a.alert_id in fresh for e in fresh[a.alert_id].event_ids})
        finding = levels.change(level, before, first, last, events, moment.astimezone(ZoneInfo(settings.timezone)))
        if finding is None:
            continue
        out.append(finding)
        if level.level is not None and (before is None or _rank(level.level) > _rank(before)):
            escalated.append(finding.alert_id)
    if escalated:
        await conn.exec_driver_sql(_REOPEN, (escalated,))
    return await alerts_repo.write_findings(conn, out)


def _rank(level: Level) -> int:
    return LEVEL_ORDER[level]


def _changes(now: dict[str, ProductLevel], previous: dict[str, StoredLevel]) -> list[tuple[str, ProductLevel]]:
    return [(p, lv) for p, lv in now.items() if lv.level != (previous[p].level if p in previous else None)]


# -- GET /v1/monitor/levels --------------------------------------------------------------------------------


def _level_out(level: Level | None) -> dict[str, Any]:
    if level is None:
        return {"level": None, "level_name": None, "colour": None}
    zh, en = LEVEL_NAMES[level]
    return {"level": level.value, "level_name": {"zh": zh, "en": en}, "colour": LEVEL_COLOURS[level]}


def describe(
    now: dict[str, ProductLevel],
    stored: dict[str, StoredLevel],
    market_names: dict[str, str],
    *,
    with_alerts: bool = True,
) -> list[dict[str, Any]]:
    """The products of the levels answer, gravest first, then by code; ``with_alerts`` false leaves out the
    alerts behind each level (a department key without the ``alerts`` scope)."""
    out = []
    for product, pl in now.items():
        kept = stored.get(product)
        since = kept.since if kept and kept.level == pl.level and pl.level else None
        behind = {a.alert_id for a in pl.behind}
        out.append(
            {
                "product": product,
                "product_name": names(product),
                **_level_out(pl.level),
                "since": since,
                "city_wide": pl.city_wide,
                "markets": [{"code": m, "name": market_names.get(m)} for m in pl.markets],
                "alerts": [
                    {
                        "id": a.alert_id,
                        "rule": a.rule,
                        "rule_name": {
                            "zh": RULE_NAMES.get(a.rule, (a.rule, a.rule))[0],
                            "en": RULE_NAMES.get(a.rule, (a.rule, a.rule))[1],
                        },
                        "level": a.level.value,
                        "severity": a.severity,
                        "status": a.status,
                        "market": a.market,
                        "market_name": "全市 (city)" if a.market == CITY else market_names.get(a.market),
                        "day": a.day.isoformat(),
                        "behind": a.alert_id in behind,
                    }
                    for a in (pl.standing if with_alerts else ())
                ],
            }
        )
    order = {lv: i for i, lv in enumerate(levels.GRAVEST_FIRST)}
    out.sort(key=lambda p: (order.get(Level(p["level"]), 9) if p["level"] else 9, p["product"]))
    return out


async def current_levels(
    conn: AsyncConnection, settings: Settings, *, now: datetime | None = None
) -> tuple[dict[str, ProductLevel], dict[str, StoredLevel], date, date]:
    """The level of every product traded in the window, with an alert standing, or with a level."""
    t = thresholds_of(settings)
    moment = now or datetime.now(UTC)
    first, last, since = _window(moment, settings, t)
    alerts = standing(await _stored(conn, since, first, last, None), (), first, last)
    stored = await _stored_levels(conn)
    traded = await conn.exec_driver_sql(_PRODUCTS_TRADED, (CITY, first, last))
    products = {a.product for a in alerts} | {p for p, s in stored.items() if s.level} | {r[0] for r in _rows(traded)}
    return levels.city_levels(alerts, products, t), stored, first, last


async def levels_answer(
    conn: AsyncConnection, principal: Principal, settings: Settings, *, now: datetime | None = None
) -> dict[str, Any]:
    granted = require_flag(principal, MARKET)  # as GET /v1/monitor/supply: staff, or a department with `market`
    t = thresholds_of(settings)
    m = market_thresholds(settings)
    moment = now or datetime.now(UTC)
    tz = ZoneInfo(settings.timezone)
    now_levels, stored, first, last = await current_levels(conn, settings, now=moment)
    codes = sorted({a.market for pl in now_levels.values() for a in pl.standing if a.market != CITY})
    market_names = await operator_names(conn, codes)
    products = describe(now_levels, stored, market_names, with_alerts=granted.alerts)
    await sharing.record_read(conn, principal, "/v1/monitor/levels", len(products))
    return {
        "as_of": moment.astimezone(tz).isoformat(timespec="seconds"),
        "timezone": settings.timezone,
        "window": {"from": first.isoformat(), "to": last.isoformat()},
        "thresholds": {
            "window_days": t.window_days,
            "markets": {lv.value: t.markets(lv) for lv in reversed(levels.GRAVEST_FIRST)},
            "supply_drop": [m.supply_drop_iv, m.supply_drop_iii],
            "supply_surge": m.supply_surge_iv,
            "price_spike": [m.price_spike_iv, m.price_spike_iii, m.price_spike_ii, m.price_spike_i],
            "stock_out_sites": m.stock_out_sites,
            "slaughter_drop": m.slaughter_drop_iii,
        },
        "products": products,
    }


def market_thresholds(settings: Settings) -> MarketThresholds:
    """The market rules' thresholds, the same object as ``market/service.py`` reads."""
    return section(settings, "market", MarketThresholds)


async def operator_names(conn: AsyncConnection, codes: Sequence[str]) -> dict[str, str]:
    if not codes:
        return {}
    result = await conn.exec_driver_sql("SELECT code, name FROM operators WHERE code = ANY($1::text[])", (list(codes),))
    return {r[0]: r[1] for r in _rows(result)}
