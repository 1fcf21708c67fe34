"""Market supply monitoring: each rule as a pure function, then the figures and rules on the database and
the supply series through the API."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Actors, a_wednesday, code, post_events, wait_for
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.models import Finding, Level, Severity
from trace_service.chain import projection as chain_projection
from trace_service.chain import writes as chain_repo
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine
from trace_service.market import projection, rules, service
from trace_service.market.rules import CITY, LIVE_PIG, Cell, Figures, MarketThresholds, Settled, SiteSales
from trace_service.settings import Settings
from trace_service.worker import repository as worker_repo
from trace_service.worker import service as worker_service

SHANGHAI = ZoneInfo("Asia/Shanghai")
T = MarketThresholds()
D = date(2026, 11, 25)


def figures(kg: float = 0, *, sold: float = 0, price: float = 0, sales: int = 0, head: int = 0) -> Figures:
    k = Decimal(str(sold))
    return Figures(Decimal(str(kg)), k, k * Decimal(str(price)), sales, head)


def cell(today: Figures, history: list[Figures], previous: Figures | None = None, **kw: Any) -> Cell:
    return Cell(D, kw.pop("market", "442000300001"), kw.pop("product", "PORK-CARCASS"), today, tuple(history),
                previous or Figures(), **kw)  # fmt: skip


def weeks(kg: float, n: int = 4) -> list[Figures]:
    return [figures(kg) for _ in range(n)]


# -- the rules, one by one (pure) ------------------------------------------------------------------


def test_baseline_is_the_mean_of_the_days_with_figures() -> None:
    assert rules.baseline([Decimal(100), Decimal(0), Decimal(200), Decimal(0)], 2) == rules.Baseline(Decimal(150), 2)
    assert rules.baseline([Decimal(100), Decimal(0), Decimal(0), Decimal(0)], 2) is None  # too few points
    low, high = rules.band(Decimal(1000), T)
    assert (low, high) == (Decimal(700), Decimal(2000))


@pytest.mark.parametrize(
    ("today", "level"),
    [(1000, None), (701, None), (700, Level.IV), (510, Level.IV), (500, Level.III), (0, Level.III)],
)
def test_supply_drop_levels(today: float, level: Level | None) -> None:
    found = rules.supply_drop(cell(figures(today), weeks(1000)), T)
    assert (found.level if found else None) == level
    if found:
        assert found.rule == "supply_drop"
        assert found.severity == Severity.WARNING
        assert (found.subject_type, found.subject_code) == ("market", f"442000300001/PORK-CARCASS/{D}")
        assert found.operator == "442000300001"
        assert found.evidence | {"band": None} == {
            "day": str(D), "market": "442000300001", "product": "PORK-CARCASS", "measure": "kg_received",
            "value": float(today), "baseline": 1000.0, "change": round((today - 1000) / 1000, 4), "band": None,
            "points": 4, "through_hour": None,
        }  # fmt: skip
        assert found.evidence["band"] == [700.0, 2000.0]
        assert f"{today:.1f}" in found.message_en
        assert "1000.0" in found.message_zh


def test_supply_drop_needs_enough_same_weekday_points() -> None:
    assert rules.supply_drop(cell(figures(100), [figures(1000), *weeks(0, 3)]), T) is None
    found = rules.supply_drop(cell(figures(100), [figures(1000), figures(0), figures(1000), figures(0)]), T)
    assert found is not None
    assert found.evidence["points"] == 2


def test_supply_drop_on_a_day_in_progress_compares_the_same_hours() -> None:
    history = weeks(1000)
    # By 06:00 the baseline days had received 900 of their 1000 kg; today 300 so far.
    by_six = cell(figures(300), history, through_hour=6, today_settled=Settled(Decimal(300)),
                  history_settled=tuple(Settled(Decimal(900)) for _ in history))  # fmt: skip
    found = rules.supply_drop(by_six, T)
    assert found is not None
    assert found.level == Level.III
    assert (found.evidence["baseline"], found.evidence["through_hour"]) == (900.0, 6)
    assert "06:00" in found.message_en
    assert "06:00" in found.message_zh
    # At 03:00 the baseline days had received only 200 kg: too early to say anything.
    by_three = cell(figures(0), history, through_hour=3, today_settled=Settled(),
                    history_settled=tuple(Settled(Decimal(200)) for _ in history))  # fmt: skip
    assert rules.supply_drop(by_three, T) is None
    assert rules.supply_drop(cell(figures(0), history, through_hour=0), T) is None


@pytest.mark.parametrize(("today", "fires"), [(1999, False), (2000, True), (5000, True)])
def test_supply_surge(today: float, fires: bool) -> None:
    found = rules.supply_surge(cell(figures(today), weeks(1000)), T)
    assert (found is not None) == fires
    if found:
        assert (found.rule, found.level, found.severity) == ("supply_surge", Level.IV, Severity.WARNING)
        assert found.evidence["change"] == round((today - 1000) / 1000, 4)
    # So far is enough for a surge: more data can only confirm it.
    assert (rules.supply_surge(cell(figures(today), weeks(1000), through_hour=5), T) is not None) == fires


@pytest.mark.parametrize(
    ("price", "level", "severity"),
    [
        (25.9, None, None),
        (26, Level.IV, Severity.WARNING),
        (30, Level.III, Severity.WARNING),
        (34, Level.II, Severity.CRITICAL),
        (40, Level.I, Severity.CRITICAL),
    ],
)
def test_price_spike_levels_day_on_day(price: float, level: Level | None, severity: Severity | None) -> None:
    found = rules.price_spike(cell(figures(sold=10, price=price, sales=5), [], figures(sold=10, price=20, sales=5)), T)
    assert (found.level if found else None, found.severity if found else None) == (level, severity)
    if found:
        assert found.evidence["compared"] == "day_on_day"
        assert found.evidence["week_on_week"] is None
        assert found.evidence["value"] == price
        assert found.evidence["baseline"] == 20.0


def test_price_spike_week_on_week_and_the_larger_change_counts() -> None:
    today = figures(sold=10, price=30, sales=5)
    found = rules.price_spike(
        cell(today, [figures(sold=10, price=15, sales=5)], figures(sold=10, price=25, sales=5)), T
    )
    assert found is not None
    assert (found.level, found.evidence["compared"]) == (Level.I, "week_on_week")
    assert found.evidence["day_on_day"] == {"reference": 25.0, "change": 0.2}


def test_price_spike_needs_enough_sales_on_both_days() -> None:
    jump = figures(sold=10, price=40, sales=5)
    assert (
        rules.price_spike(cell(figures(sold=1, price=40, sales=2), [], figures(sold=10, price=20, sales=5)), T) is None
    )
    assert rules.price_spike(cell(jump, [], figures(sold=1, price=20, sales=2)), T) is None
    assert rules.price_spike(cell(jump, [], figures(sold=10, price=20, sales=5)), T) is not None


def test_slaughter_drop_for_the_city() -> None:
    history = [figures(head=3000) for _ in range(4)]
    found = rules.slaughter_drop(cell(figures(head=2000), history, market=CITY, product=LIVE_PIG), T)
    assert found is not None
    assert (found.rule, found.level, found.severity, found.operator) == (
        "slaughter_drop",
        Level.III,
        Severity.WARNING,
        None,
    )
    assert found.subject_code == f"city/PIG-LIVE/{D}"
    assert "2000" in found.message_zh
    assert "3000" in found.message_en
    assert rules.slaughter_drop(cell(figures(head=2200), history, market=CITY, product=LIVE_PIG), T) is None
    # Only the city's heads are judged, and no market rule judges the city.
    assert rules.slaughter_drop(cell(figures(head=0), history, product=LIVE_PIG), T) is None
    assert rules.supply_drop(cell(figures(0), weeks(1000), market=CITY), T) is None


def test_stock_out_counts_sample_sites_without_sales() -> None:
    usual = (5, 4, 0, 6)
    sites = [SiteSales(s, 0, usual) for s in ("A00001", "B00001", "C00001")] + [SiteSales("D00001", 3, usual)]
    found = rules.stock_out("VEG-CAIXIN", D, sites, T)
    assert found is not None
    assert (found.rule, found.level, found.subject_code) == ("stock_out", Level.III, f"city/VEG-CAIXIN/{D}")
    assert found.evidence["sites"] == ["A00001", "B00001", "C00001"]
    assert (found.evidence["value"], found.evidence["baseline"]) == (3, 4)
    assert rules.stock_out("VEG-CAIXIN", D, sites[1:], T) is None  # two sites are not enough
    # A site that rarely sells the product is not a sample site for it.
    rare = [*sites[1:], SiteSales("E00001", 0, (1, 0, 0, 0))]
    assert rules.stock_out("VEG-CAIXIN", D, rare, T) is None
    monitored = MarketThresholds(monitored_products=["PORK-CARCASS"])
    assert rules.stock_out("VEG-CAIXIN", D, sites, monitored) is None


def test_a_steady_cell_raises_nothing() -> None:
    steady = cell(figures(1010, sold=500, price=21, sales=40), [figures(990, sold=480, price=20, sales=40)] * 4,
                  figures(1000, sold=490, price=20.5, sales=40))  # fmt: skip
    assert rules.judge(steady, T) == []


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="supply_drop_iii"):
        MarketThresholds(supply_drop_iv=0.6, supply_drop_iii=0.5)
    with pytest.raises(ValueError, match="price spike"):
        MarketThresholds(price_spike_ii=1.5)


def test_projection_counts_each_event_for_its_local_day_and_hour() -> None:
    cat = build_catalogue()
    late = receipt("442000300105", datetime(2026, 11, 24, 16, 30, tzinfo=UTC).isoformat(), 12.5, "VEG-CAIXIN")
    sold = sale("442000300105", "2026-11-25T09:15:00+08:00", "LOT0000000001", 2.5, 8.4)
    rows = projection.plan([cat.event.validate_json(orjson.dumps(e)) for e in (late, sold)], SHANGHAI)
    assert [(r.day, r.hour, r.product_code, r.kg_received, r.kg_sold, r.sales_amount, r.sale_count) for r in rows] == [
        (D, 0, "VEG-CAIXIN", Decimal("12.5"), 0, 0, 0),  # 16:30 UTC is 00:30 the next day in Zhongshan
        (D, 9, None, 0, Decimal("2.5"), Decimal("21.00"), 1),  # the product comes from the lot sold
    ]
    assert rows[1].lookup == "LOT0000000001"


def test_clock_settles_hours_after_the_settle_delay() -> None:
    clock = service.Clock.at(datetime(2026, 11, 25, 7, 10, tzinfo=SHANGHAI), SHANGHAI, 30)
    assert (clock.through_hour(D), clock.through_hour(D - timedelta(days=1)), clock.through_hour(D + timedelta(1))) == (
        6,
        None,
        0,
    )


# -- events ----------------------------------------------------------------------------------------


def _event(event_type: str, operator: str, at: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": at,
        "operator": operator,
        "data": data,
    }


def receipt(operator: str, at: str, kg: float, product: str | None, *, lot: str | None = None,
            from_lot: str | None = None) -> dict[str, Any]:  # fmt: skip
    line: dict[str, Any] = {"lot": lot or code("R", 16), "from_lot": from_lot or code("F", 16), "weight_kg": kg}
    if product:
        line["product_code"] = product
    return _event(
        "trade.received",
        operator,
        at,
        {"voucher_number": code("V", 12), "seller": "442000200101", "lines": [line], "documents": {}},
    )


def sale(operator: str, at: str, lot: str, kg: float, price: float) -> dict[str, Any]:
    data = {"sale_code": code("S", 18), "lot": lot, "stall": operator, "weight_kg": kg, "unit_price": price}
    return _event("retail.sold", operator, at, data)


def slaughtered(operator: str, at: str, heads: int) -> dict[str, Any]:
    data = {
        "lot": code("B", 14),
        "head_count": heads,
        "condemned_head": 0,
        "quality_cert_number": code("Q", 10),
        "product_quarantine_cert_number": code("C", 10),
        "outputs": [
            {"lot": code("K", 14), "product_code": "PORK-CARCASS", "product_name": "猪胴体", "weight_kg": 80.0}
        ],
    }
    return _event("slaughter.batch_slaughtered", operator, at, data)


def at(day: date, hour: int = 5, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).isoformat()


def at_(day: date, hour: int) -> datetime:
    """A moment of ``day`` in the city, as a ``now``."""
    return datetime.fromisoformat(at(day, hour))


def a_day() -> date:
    """A Wednesday of its own, years back: the city-wide cells of one test meet no other test's data."""
    return a_wednesday()


def product() -> str:
    return "T-" + code("", 8)


# -- on the database -------------------------------------------------------------------------------


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    e = create_engine(settings, pool_size=2, name="test-market")
    try:
        yield e
    finally:
        await e.dispose()


async def apply(
    engine: AsyncEngine, settings: Settings, raw: list[dict[str, Any]], *, now: datetime | None = None
) -> list[Finding]:
    """One worker batch, as the worker runs it: the chain projection, then the market figures and rules,
    and the findings stored as alerts, in one transaction."""
    cat = build_catalogue(settings.codes)
    events = [cat.event.validate_json(orjson.dumps(e)) for e in raw]
    async with engine.begin() as conn:
        await chain_repo.apply_plan(conn, chain_projection.plan(events))
        findings = await service.apply(conn, events, settings, now=now)
        await alerts_repo.write_findings(conn, findings)
    return findings


async def sweep(engine: AsyncEngine, settings: Settings, now: datetime) -> list[Finding]:
    async with engine.begin() as conn:
        findings = await service.sweep(conn, settings, now=now)
        await alerts_repo.write_findings(conn, findings)
    return findings


def before(day: date) -> datetime:
    """When the history of a judged day arrives in these tests: the day before it."""
    return datetime.combine(day - timedelta(days=1), time(12), SHANGHAI)


def settled(day: date) -> datetime:
    """A moment by which the data of ``day`` (arrived by 02:00 the next day) has settled: the quiet period
    after that."""
    return datetime.combine(day + timedelta(days=1), time(2), SHANGHAI) + timedelta(seconds=T.settle_quiet_seconds)


async def settle(engine: AsyncEngine, settings: Settings, now: datetime) -> list[Finding]:
    """The sweeps that judge what settled by ``now``: each judges a few days, so sweep until none is due
    (other tests' days may be due too)."""
    found: list[Finding] = []
    for _ in range(20):
        found += await sweep(engine, settings, now)
    return found


async def market_with_stall(actors: Actors) -> tuple[str, str]:
    market = await actors.operator(kind="retail_market")
    return market, await actors.operator(kind="retailer", parent=market)


async def supply(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    r = await client.get("/v1/monitor/supply", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def series_of(body: dict[str, Any], market: str) -> dict[str, dict[str, Any]]:
    (found,) = [s for s in body["series"] if s["market"] == market]
    return {d["day"]: d for d in found["days"]}


@pytest.mark.parametrize(("short", "level"), [(650.0, Level.IV), (400.0, Level.III), (800.0, None)])
async def test_four_weeks_of_history_then_a_short_day_gives_supply_drop(
    client: httpx.AsyncClient,
    actors: Actors,
    engine: AsyncEngine,
    settings: Settings,
    short: float,
    level: Level | None,
) -> None:
    market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    history = [receipt(stall, at(day - timedelta(weeks=w)), 600.0, p) for w in range(1, 5)]
    history += [receipt(market, at(day - timedelta(weeks=w), 6), 400.0, p) for w in range(1, 5)]  # the market's own
    assert await apply(engine, settings, history, now=before(day)) == []
    # A past day is judged once its data has settled, not by the batch that brings it.
    late = at_(day + timedelta(days=1), 1)  # delivered after the day, before it settled
    assert await apply(engine, settings, [receipt(stall, at(day), short, p)], now=late) == []

    findings = [f for f in await settle(engine, settings, settled(day)) if p in f.subject_code]

    assert [(f.rule, f.level) for f in findings] == ([("supply_drop", level)] if level else [])
    if level:
        (f,) = findings
        assert (f.subject_type, f.subject_code, f.operator) == ("market", f"{market}/{p}/{day}", market)
        assert (f.evidence["value"], f.evidence["baseline"], f.evidence["points"]) == (short, 1000.0, 4)
    regulator = await actors.staff_key("regulator")
    body = await supply(
        client, regulator, product=p, market=market, **{"from": str(day - timedelta(days=7)), "to": str(day)}
    )
    days = series_of(body, market)
    assert days[str(day)]["kg_received"] == short
    assert days[str(day)]["baseline"]["kg_received"] == {"value": 1000.0, "points": 4, "low": 700.0, "high": 2000.0}
    assert days[str(day - timedelta(weeks=1))]["kg_received"] == 1000.0
    assert days[str(day - timedelta(days=1))]["kg_received"] == 0.0  # every day is in the series
    flagged = [(a["rule"], a["level"], a["status"]) for a in days[str(day)]["alerts"]]
    assert flagged == ([("supply_drop", level.value, "open")] if level else [])


async def test_a_price_jump_gives_price_spike(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    lot = code("L", 16)
    events = [receipt(stall, at(day - timedelta(days=8)), 500.0, p, lot=lot)]
    for back in (7, 1):
        events += [sale(stall, at(day - timedelta(days=back), 9, m), lot, 2.0, 20.0) for m in range(4)]
    assert await apply(engine, settings, events, now=before(day - timedelta(days=1))) == []

    # As the day goes (the day before has settled): the price so far.
    findings = await apply(
        engine, settings, [sale(stall, at(day, 9, m), lot, 2.0, 35.0) for m in range(4)], now=at_(day, 10)
    )

    (f,) = findings
    assert (f.rule, f.level, f.severity) == ("price_spike", Level.II, Severity.CRITICAL)
    assert (f.evidence["value"], f.evidence["baseline"], f.evidence["change"]) == (35.0, 20.0, 0.75)
    assert f.subject_code == f"{market}/{p}/{day}"
    assert len(f.event_ids) == 4
    regulator = await actors.staff_key("regulator")
    days = series_of(await supply(client, regulator, product=p, **{"from": str(day), "to": str(day)}), market)
    assert (days[str(day)]["avg_price"], days[str(day)]["sales"], days[str(day)]["kg_sold"]) == (35.0, 4, 8.0)
    assert [a["rule"] for a in days[str(day)]["alerts"]] == ["price_spike"]


async def test_a_steady_series_raises_no_market_alert(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    market, stall = await market_with_stall(actors)
    p, start = product(), a_day() - timedelta(weeks=4)
    found: list[Finding] = []
    for i in range(35):  # delivered live: each day as it goes, then its night's sweeps
        day = start + timedelta(days=i)
        lot = code("L", 16)
        batch = [receipt(stall, at(day, 4), 1000.0 + (i % 3) * 20, p, lot=lot)]
        batch += [sale(stall, at(day, 9, m), lot, 3.0, 20.0 + (i % 2)) for m in range(5)]
        found += await apply(engine, settings, batch, now=at_(day, 10))
        found += await settle(engine, settings, settled(day))
    assert [f for f in found if p in f.subject_code] == []
    days = [start + timedelta(days=i) for i in range(35)]
    assert await db.fetchval("SELECT count(*) FROM market_arrivals WHERE day = ANY($1) AND version > judged", days) == 0
    regulator = await actors.staff_key("regulator")
    body = await supply(client, regulator, product=p, **{"from": str(start), "to": str(start + timedelta(days=34))})
    assert all(d["alerts"] == [] for d in series_of(body, market).values())


async def test_a_glut_gives_supply_surge(actors: Actors, engine: AsyncEngine, settings: Settings) -> None:
    market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    history = [receipt(stall, at(day - timedelta(weeks=w)), 100.0, p) for w in range(1, 5)]
    await apply(engine, settings, history, now=before(day))
    assert await apply(engine, settings, [receipt(stall, at(day), 150.0, p)], now=at_(day, 6)) == []
    # the day grows to 250 kg
    (f,) = await apply(engine, settings, [receipt(stall, at(day, 6), 100.0, p)], now=at_(day, 7))
    assert (f.rule, f.level, f.subject_code, f.evidence["value"]) == (
        "supply_surge",
        Level.IV,
        f"{market}/{p}/{day}",
        250.0,
    )


async def test_fewer_pigs_slaughtered_gives_slaughter_drop(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    plants = [await actors.operator(kind="slaughterhouse") for _ in range(2)]
    day = a_day()
    history = [slaughtered(plant, at(day - timedelta(weeks=w), 2), 100) for w in range(1, 5) for plant in plants]
    assert await apply(engine, settings, history, now=before(day)) == []
    today = [slaughtered(plants[0], at(day, 2), 90), slaughtered(plants[1], at(day, 3), 40)]
    # Live, by 22:00 (a shortfall is judged by the clock's sweep, every settled hour); then on the day's
    # totals once they have settled.
    assert await apply(engine, settings, today, now=at_(day, 23)) == []
    (early,) = [f for f in await sweep(engine, settings, at_(day, 23)) if f.subject_code == f"city/PIG-LIVE/{day}"]
    assert (early.rule, early.evidence["through_hour"]) == ("slaughter_drop", 22)

    (f,) = [f for f in await settle(engine, settings, settled(day)) if f.subject_code == f"city/PIG-LIVE/{day}"]
    assert f.evidence["through_hour"] is None
    assert (f.rule, f.level, f.subject_code, f.operator) == ("slaughter_drop", Level.III, f"city/PIG-LIVE/{day}", None)
    assert (f.evidence["value"], f.evidence["baseline"]) == (130.0, 200.0)
    regulator = await actors.staff_key("regulator")
    body = await supply(client, regulator, product="PIG-LIVE", market="city", **{"from": str(day), "to": str(day)})
    days = series_of(body, "city")
    assert days[str(day)]["head"] == 130
    assert days[str(day)]["baseline"]["head"] == {"value": 200.0, "points": 4, "low": 140.0, "high": None}
    assert [a["rule"] for a in days[str(day)]["alerts"]] == ["slaughter_drop"]


async def test_historical_events_count_for_their_own_local_day(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    late_evening = receipt(stall, at(day, 23, 30), 10.0, p)
    after_midnight = receipt(
        stall, datetime.combine(day, datetime.min.time(), UTC).replace(hour=16, minute=30).isoformat(), 20.0, p
    )
    await apply(engine, settings, [after_midnight, late_evening])
    regulator = await actors.staff_key("regulator")
    body = await supply(client, regulator, market=market, **{"from": str(day), "to": str(day + timedelta(days=1))})
    days = series_of(body, market)
    assert (days[str(day)]["kg_received"], days[str(day + timedelta(days=1))]["kg_received"]) == (10.0, 20.0)


async def test_a_sale_that_arrives_before_its_lot_counts_once_the_product_is_known(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    lot = code("L", 16)
    early = sale(stall, at(day, 9), lot, 1.5, 10.0)
    await apply(engine, settings, [early])
    assert (
        await db.fetchval("SELECT count(*) FROM market_pending WHERE event_id = $1", uuid.UUID(early["event_id"])) == 1
    )
    await apply(engine, settings, [receipt(stall, at(day, 5), 50.0, p, lot=lot)])
    assert (
        await db.fetchval("SELECT count(*) FROM market_pending WHERE event_id = $1", uuid.UUID(early["event_id"])) == 0
    )
    regulator = await actors.staff_key("regulator")
    days = series_of(await supply(client, regulator, market=market, **{"from": str(day), "to": str(day)}), market)
    assert (days[str(day)]["kg_received"], days[str(day)]["kg_sold"], days[str(day)]["avg_price"]) == (50.0, 1.5, 10.0)


async def test_a_day_in_progress_is_judged_hour_for_hour_and_an_empty_market_by_the_clock(
    actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    (market, stall), (silent, silent_stall) = await market_with_stall(actors), await market_with_stall(actors)
    p, day = product(), a_day()
    history = [
        receipt(s, at(day - timedelta(weeks=w), 3), 1000.0, p) for w in range(1, 5) for s in (stall, silent_stall)
    ]
    await apply(engine, settings, history, now=before(day))
    today = [receipt(stall, at(day, 3), 300.0, p)]

    # A batch never raises a shortfall (more data only makes one smaller): the clock's sweep judges them,
    # every settled hour. At 04:10 the 03:00 hour is not settled yet (30 minutes): no judgement.
    assert await apply(engine, settings, today, now=datetime.fromisoformat(at(day, 4, 10))) == []
    assert [
        x for x in await sweep(engine, settings, datetime.fromisoformat(at(day, 4, 10))) if p in x.subject_code
    ] == []
    assert await apply(engine, settings, [receipt(stall, at(day, 3, 30), 1.0, p)], now=at_(day, 5)) == []

    # At 05:00 it is: 301 kg by 04:00 against the usual 1000; and the silent market, which sent nothing.
    swept = await sweep(engine, settings, datetime.fromisoformat(at(day, 5)))
    mine = {(x.rule, x.subject_code): x for x in swept if p in x.subject_code}
    assert set(mine) == {("supply_drop", f"{market}/{p}/{day}"), ("supply_drop", f"{silent}/{p}/{day}")}
    f = mine[("supply_drop", f"{market}/{p}/{day}")]
    assert (f.rule, f.level, f.evidence["through_hour"], f.evidence["value"]) == ("supply_drop", Level.III, 4, 301.0)
    assert mine[("supply_drop", f"{silent}/{p}/{day}")].evidence["value"] == 0.0
    assert [
        x for x in await sweep(engine, settings, datetime.fromisoformat(at(day, 5, 20))) if p in x.subject_code
    ] == []

    # Once the day is over and its data has settled, it is judged on its totals.
    too_early = datetime.combine(day + timedelta(days=1), time(1), SHANGHAI)  # the day's quiet period is not over
    assert [x for x in await settle(engine, settings, too_early) if p in x.subject_code] == []
    ended = await settle(engine, settings, settled(day))
    totals = {x.subject_code: x.evidence for x in ended if p in x.subject_code and x.rule == "supply_drop"}
    assert totals[f"{market}/{p}/{day}"]["through_hour"] is None
    assert totals[f"{market}/{p}/{day}"]["value"] == 301.0


async def test_stock_out_when_the_day_is_over(actors: Actors, engine: AsyncEngine, settings: Settings) -> None:
    p, day = product(), a_day()
    sites = [await market_with_stall(actors) for _ in range(4)]
    lots = {stall: code("L", 16) for _, stall in sites}
    events = [receipt(stall, at(day - timedelta(weeks=4), 4), 500.0, p, lot=lots[stall]) for _, stall in sites]
    for w in range(1, 5):
        events += [sale(stall, at(day - timedelta(weeks=w), 10), lots[stall], 1.0, 12.0) for _, stall in sites]
    await apply(engine, settings, events, now=before(day))
    # On the day only the last site sells.
    only = [sale(sites[3][1], at(day, 10), lots[sites[3][1]], 1.0, 12.0)]
    assert await apply(engine, settings, only, now=at_(day, 11)) == []

    ended = await settle(engine, settings, settled(day))
    (f,) = [x for x in ended if x.rule == "stock_out" and p in x.subject_code]
    assert (f.level, f.subject_code) == (Level.III, f"city/{p}/{day}")
    assert f.evidence["sites"] == sorted(m for m, _ in sites[:3])


async def test_supply_is_for_regulators_and_checks_its_query(client: httpx.AsyncClient, actors: Actors) -> None:
    _, operator_key = await actors.operator_with_key(kind="retail_market")
    r = await client.get("/v1/monitor/supply?product=PORK-CARCASS", headers=operator_key)
    assert r.status_code == 403
    assert (await client.get("/v1/monitor/supply")).status_code == 401
    admin = actors.admin
    for query in (
        "from=2026-13-01",
        "product=PORK%20CARCASS",
        "market=lowercase1",
        "product=PORK-CARCASS&from=2026-11-25&to=2026-11-24",
        "product=PORK-CARCASS&from=2025-01-01&to=2026-11-25",
        "from=2026-09-01&to=2026-11-25",  # without a product or a market, at most 31 days
    ):
        r = await client.get(f"/v1/monitor/supply?{query}", headers=admin)
        assert r.status_code == 422, (query, r.text)
        assert r.json()["error"]["code"] == "invalid"
    r = await client.get(
        "/v1/monitor/supply?product=PORK-CARCASS&market=city&from=2026-11-20&to=2026-11-25", headers=admin
    )
    assert r.status_code == 200, r.text
    assert (r.json()["from"], r.json()["to"], r.json()["timezone"]) == ("2026-11-20", "2026-11-25", "Asia/Shanghai")


# -- through the worker ----------------------------------------------------------------------------


async def test_the_same_events_applied_twice_by_the_worker_count_once(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    """The worker hands the market only the events it stored for the first time (its own dedup), so a
    redelivered batch adds nothing."""
    _market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    lot = code("L", 16)
    raw = [receipt(stall, at(day, 4), 40.0, p, lot=lot), sale(stall, at(day, 9), lot, 2.0, 15.0)]
    records = [worker_service.Record("t", 0, i, stall.encode(), orjson.dumps(e)) for i, e in enumerate(raw)]
    cat = build_catalogue(settings.codes)
    for _ in range(2):
        decoded, dead = worker_service.plan(cat, records, future_skew_seconds=300)
        assert dead == []
        async with engine.begin() as conn:  # what worker.service.apply_batch does with a batch
            new = await worker_repo.insert_events(conn, decoded)
            fresh = [d.event for d in decoded if d.event.event_id in new]  # type: ignore[attr-defined]
            await chain_repo.apply_plan(conn, chain_projection.plan(fresh))
            await service.apply(conn, fresh, settings)
    row = await db.fetchrow("SELECT kg_received, kg_sold, sale_count FROM market_daily WHERE operator = $1", stall)
    assert (row["kg_received"], row["kg_sold"], row["sale_count"]) == (Decimal("40.000"), Decimal("2.000"), 1)
    assert await db.fetchval("SELECT sum(kg_received) FROM market_hourly WHERE operator = $1", stall) == Decimal(
        "40.000"
    )


WIRED = "market" in inspect.getsource(worker_service.apply_batch)


@pytest.mark.skipif(not WIRED, reason="the market hook is not wired into the worker yet")
async def test_events_posted_twice_through_the_api_count_once(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    market, stall = await market_with_stall(actors)
    p, day = product(), a_day()
    lot = code("L", 16)
    events = [receipt(stall, at(day, 4), 40.0, p, lot=lot), sale(stall, at(day, 9), lot, 2.0, 15.0)]
    for _ in range(2):
        await post_events(client, actors.admin, events, wait=False)
    regulator = await actors.staff_key("regulator")

    async def counted() -> dict[str, Any] | None:
        body = await supply(client, regulator, market=market, **{"from": str(day), "to": str(day)})
        if not body["series"] or not series_of(body, market)[str(day)]["sales"]:
            return None
        return series_of(body, market)[str(day)]

    figures_of_day = await wait_for(counted)
    assert (figures_of_day["kg_received"], figures_of_day["kg_sold"], figures_of_day["sales"]) == (40.0, 2.0, 1)
