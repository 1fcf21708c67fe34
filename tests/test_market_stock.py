"""Market supply for action (contract section 11): stock and days of cover from the trace graph, the city's
emergency levels and the alert a change of level raises, and the public bulletin that never shows one
operator's figures."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Actors, a_wednesday, code
from trace_service.alerts import repository as alerts_repo
from trace_service.alerts.models import Finding, Level, Severity, alert_id
from trace_service.chain import projection as chain_projection
from trace_service.chain import writes as chain_repo
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine
from trace_service.market import levels, service
from trace_service.market.levels import LevelThresholds, Standing
from trace_service.market.monitor_models import Bulletin, Levels, Stock
from trace_service.market.rules import MarketThresholds
from trace_service.settings import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
T = LevelThresholds()
# Every settled day in one sweep: other tests' days may be due in the same database.
TM = MarketThresholds(settle_days_per_sweep=400)
QUIET = timedelta(seconds=TM.settle_quiet_seconds)


def local_today() -> date:
    return datetime.now(SHANGHAI).date()


def at(day: date, hour: int = 5, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).isoformat()


def _event(event_type: str, operator: str, when: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "occurred_at": when, "operator": operator,
            "data": data}  # fmt: skip


def receipt(operator: str, when: str, kg: float, product: str, lot: str | None = None) -> dict[str, Any]:
    line = {"lot": lot or code("R", 16), "from_lot": code("F", 16), "weight_kg": kg, "product_code": product}
    data = {"voucher_number": code("V", 12), "seller": "442000200101", "lines": [line], "documents": {}}
    return _event("trade.received", operator, when, data)


def sale(operator: str, when: str, lot: str, kg: float, price: float) -> dict[str, Any]:
    data = {"sale_code": code("S", 18), "lot": lot, "stall": operator, "weight_kg": kg, "unit_price": price}
    return _event("retail.sold", operator, when, data)


def product() -> str:
    return "T-" + code("", 8)


def a_day() -> date:
    """A Wednesday of its own, years back: the cells of one test meet no other test's data."""
    return a_wednesday()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    e = create_engine(settings, pool_size=2, name="test-market-stock")
    try:
        yield e
    finally:
        await e.dispose()


async def apply(
    engine: AsyncEngine, settings: Settings, raw: list[dict[str, Any]], *, now: datetime | None = None
) -> list[Finding]:
    """One worker batch: the chain projection, the market figures and rules (and the levels that follow
    them), and the findings stored as alerts, in one transaction."""
    cat = build_catalogue(settings.codes)
    events = [cat.event.validate_json(orjson.dumps(e)) for e in raw]
    async with engine.begin() as conn:
        await chain_repo.apply_plan(conn, chain_projection.plan(events))
        findings = await service.apply(conn, events, settings, now=now, thresholds=TM)
        await alerts_repo.write_findings(conn, findings)
    return findings


async def sweep(engine: AsyncEngine, settings: Settings, now: datetime) -> list[Finding]:
    """The worker's clock-driven judgement at ``now`` (past days are judged once their data settled)."""
    async with engine.begin() as conn:
        findings = await service.sweep(conn, settings, now=now, thresholds=TM)
        await alerts_repo.write_findings(conn, findings)
    return findings


async def get(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# -- stock and days of cover -----------------------------------------------------------------------


async def test_stock_and_days_of_cover_from_the_graph(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    p, today = product(), local_today()
    market = await actors.operator(kind="retail_market")
    stall = await actors.operator(kind="retailer", parent=market)
    shop = await actors.operator(kind="supermarket", region="441900")  # 东莞市: another district
    canteen = await actors.operator(kind="canteen")
    old, fresh, shelf = code("L", 16), code("L", 16), code("L", 16)
    events = [
        # Received 9 days ago, sold 10 kg on each of the last 7 finished days: 230 kg left on the books, but
        # older than a week's shelf life, so not stock.
        receipt(stall, at(today - timedelta(days=9), 4), 300.0, p, lot=old),
        *[sale(stall, at(today - timedelta(days=d), 12), old, 10.0, 30.0) for d in range(1, 8)],
        # A sale 8 days ago is outside the 7 days averaged.
        sale(stall, at(today - timedelta(days=8), 12), old, 50.0, 30.0),
        receipt(stall, at(today - timedelta(days=1), 4), 100.0, p, lot=fresh),
        receipt(shop, at(today - timedelta(days=1), 6), 50.0, p, lot=shelf),
        receipt(canteen, at(today - timedelta(days=1), 6), 500.0, p),  # a canteen consumes: not supply
    ]
    await apply(engine, settings, events)
    regulator = await actors.staff_key("regulator")

    body = await get(client, "/v1/monitor/stock", regulator, product=p)
    Stock.model_validate(body)
    (item,) = body["products"]
    assert (item["product"], item["product_name"]) == (p, {"zh": p, "en": p})
    # The city: 150 kg on hand, 70 kg sold over 7 days, so 10 kg a day and 15 days of cover.
    assert (item["kg_on_hand"], item["kg_sold_per_day"], item["days_of_cover"]) == (150.0, 10.0, 15.0)
    by_market = {m["market"]: m for m in item["markets"]}
    assert set(by_market) == {market, shop}  # the stall's stock counts for its market; no canteen
    assert (by_market[market]["kg_on_hand"], by_market[market]["days_of_cover"]) == (100.0, 10.0)
    assert (by_market[shop]["kg_on_hand"], by_market[shop]["kg_sold_per_day"]) == (50.0, 0.0)
    assert by_market[shop]["days_of_cover"] is None  # nothing sold: no cover to tell
    districts = {d["region"]: d for d in item["districts"]}
    assert districts["442000"] | {"markets": 1} == {
        "region": "442000", "region_name": "中山市", "markets": 1, "kg_on_hand": 100.0, "kg_sold_per_day": 10.0,
        "days_of_cover": 10.0,
    }  # fmt: skip
    assert (districts["441900"]["region_name"], districts["441900"]["kg_on_hand"]) == ("东莞市", 50.0)
    assert body["sales"] == {
        "from": str(today - timedelta(days=7)), "to": str(today - timedelta(days=1)), "days": 7,
    }  # fmt: skip

    # Filters: a district (or its province), a market, the designated emergency outlets.
    only = await get(client, "/v1/monitor/stock", regulator, product=p, region="441900")
    assert [m["market"] for m in only["products"][0]["markets"]] == [shop]
    province = await get(client, "/v1/monitor/stock", regulator, product=p, region="440000")
    assert province["products"][0]["kg_on_hand"] == 150.0
    only = await get(client, "/v1/monitor/stock", regulator, product=p, market=market)
    assert [m["market"] for m in only["products"][0]["markets"]] == [market]
    assert (await get(client, "/v1/monitor/stock", regulator, product=p, emergency_outlet="true"))["products"] == []
    r = await client.patch(f"/v1/operators/{shop}", json={"emergency_outlet": True}, headers=regulator)
    assert r.status_code == 200, r.text
    assert r.json()["emergency_outlet"] is True
    outlets = await get(client, "/v1/monitor/stock", regulator, product=p, emergency_outlet="true")
    ((only_outlet,),) = [p_["markets"] for p_ in outlets["products"]]
    assert (only_outlet["market"], only_outlet["emergency_outlet"]) == (shop, True)
    others = await get(client, "/v1/monitor/stock", regulator, product=p, emergency_outlet="false")
    assert [m["market"] for m in others["products"][0]["markets"]] == [market]


async def test_an_outlet_is_marked_at_registration_and_read_back(client: httpx.AsyncClient, actors: Actors) -> None:
    op = code("OP", 12)
    body = {
        "code": op,
        "name": "应急投放网点 超市",
        "kind": "supermarket",
        "region": "442000",
        "emergency_outlet": True,
    }
    r = await client.post("/v1/operators", json=body, headers=actors.admin)
    assert r.status_code == 201, r.text
    assert r.json()["emergency_outlet"] is True
    assert (await client.get(f"/v1/operators/{op}", headers=actors.admin)).json()["emergency_outlet"] is True
    r = await client.patch(f"/v1/operators/{op}", json={"emergency_outlet": None}, headers=actors.admin)
    assert r.status_code == 422
    r = await client.patch(f"/v1/operators/{op}", json={"emergency_outlet": "maybe"}, headers=actors.admin)
    assert r.status_code == 422
    plain = await actors.operator(kind="supermarket")
    assert (await client.get(f"/v1/operators/{plain}", headers=actors.admin)).json()["emergency_outlet"] is False


async def test_stock_is_for_regulators_and_checks_its_query(client: httpx.AsyncClient, actors: Actors) -> None:
    _, operator_key = await actors.operator_with_key(kind="retail_market")
    assert (await client.get("/v1/monitor/stock", headers=operator_key)).status_code == 403
    assert (await client.get("/v1/monitor/levels", headers=operator_key)).status_code == 403
    assert (await client.get("/v1/monitor/stock")).status_code == 401
    regulator = await actors.staff_key("regulator")
    for params in ({"product": "bad product!"}, {"market": "lower"}, {"region": "990000"}, {"region": "12"}):
        r = await client.get("/v1/monitor/stock", params=params, headers=regulator)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["code"] == "invalid"
    r = await client.post(
        "/v1/keys", json={"role": "department", "name": "agriculture", "scopes": ["slaughter.*"]}, headers=actors.admin
    )
    assert r.status_code == 201, r.text
    department = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.get("/v1/monitor/stock", headers=department)).status_code == 403
    r = await client.post(
        "/v1/keys", json={"role": "department", "name": "commerce", "scopes": ["market"]}, headers=actors.admin
    )
    commerce = {"Authorization": f"Bearer {r.json()['key']}"}
    assert (await client.get("/v1/monitor/stock", params={"product": product()}, headers=commerce)).status_code == 200
    levels_body = await get(client, "/v1/monitor/levels", commerce)
    assert all(p["alerts"] == [] for p in levels_body["products"])  # no `alerts` scope: the levels, not the alerts


# -- emergency levels (pure) -----------------------------------------------------------------------

D = date(2026, 11, 25)


def standing(market: str, level: Level, rule: str = "supply_drop", p: str = "PORK-CARCASS", day: date = D) -> Standing:
    return Standing(f"al_{market}{rule}{level}", rule, level, market, p, day, "warning", "open")


@pytest.mark.parametrize(
    ("alerts", "level"),
    [
        ([], None),
        ([standing("M1", Level.IV)], Level.IV),
        ([standing("M1", Level.III)], Level.IV),  # one market alone is a local swing
        ([standing("M1", Level.III), standing("M2", Level.III)], Level.III),
        ([standing("M1", Level.III), standing("M1", Level.IV, "price_spike")], Level.IV),  # one market, two rules
        ([standing("M1", Level.I, "price_spike"), standing("M2", Level.III)], Level.III),
        ([standing("M1", Level.I, "price_spike"), standing("M2", Level.II, "price_spike")], Level.II),
        ([standing("M1", Level.I, "price_spike"), standing("M2", Level.I, "price_spike")], Level.I),
        ([standing("city", Level.III, "stock_out")], Level.III),  # a city-wide alert counts as it is
        ([standing("M1", Level.III, p="VEG-CAIXIN"), standing("M2", Level.III, p="VEG-CAIXIN")], None),
    ],
)
def test_the_city_level_needs_reach_as_well_as_magnitude(alerts: list[Standing], level: Level | None) -> None:
    found = levels.city_level("PORK-CARCASS", alerts, T)
    assert found.level == level
    if level is not None:
        assert found.behind
        assert all(levels.LEVEL_ORDER[a.level] >= levels.LEVEL_ORDER[level] for a in found.behind)


def test_level_thresholds_are_settings_and_ordered() -> None:
    strict = LevelThresholds(markets_iv=2, markets_iii=3, markets_ii=3, markets_i=4)
    assert levels.city_level("P", [standing("M1", Level.III, p="P")], strict).level is None
    two = [standing("M1", Level.III, p="P"), standing("M2", Level.III, p="P")]
    assert levels.city_level("P", two, strict).level == Level.IV
    with pytest.raises(ValueError, match="graver level"):
        LevelThresholds(markets_iii=3, markets_ii=2)


def test_only_unresolved_market_alerts_of_the_window_stand() -> None:
    assert levels.standing_of("a", "supply_drop", "III", "M1/P/2026-11-25", "warning", "open") is not None
    assert levels.standing_of("a", "supply_drop", "III", "M1/P/2026-11-25", "warning", "resolved") is None
    assert levels.standing_of("a", "asf_positive", None, "LOT1", "critical", "open") is None
    assert levels.standing_of("a", "supply_drop", "III", "M1/P/not-a-day", "warning", "open") is None
    assert levels.window(D, T) == (D - timedelta(days=1), D)


def test_a_change_of_level_is_a_finding_and_no_change_is_none() -> None:
    now = levels.city_level("PORK-CARCASS", [standing("M1", Level.III), standing("M2", Level.III)], T)
    assert levels.change(now, Level.III, D - timedelta(days=1), D) is None
    found = levels.change(now, Level.IV, D - timedelta(days=1), D)
    assert found is not None
    assert (found.rule, found.subject_type, found.subject_code, found.level) == (
        "emergency_level", "product", "PORK-CARCASS", Level.III,
    )  # fmt: skip
    assert found.severity == Severity.WARNING
    assert found.alert_id == alert_id("emergency_level", "product", "PORK-CARCASS")
    assert "猪肉" in found.message_zh
    assert "III级（较大）" in found.message_zh
    assert "此前 IV级（一般）" in found.message_zh
    assert "Pork" in found.message_en
    assert found.evidence | {"alerts": None} == {
        "product": "PORK-CARCASS", "level": "III", "previous": "IV", "window": ["2026-11-24", "2026-11-25"],
        "city_wide": False, "markets": ["M1", "M2"], "market_count": 2, "rules": ["supply_drop"], "alerts": None,
        "since": None,
    }  # fmt: skip
    lifted = levels.change(levels.city_level("PORK-CARCASS", [], T), Level.III, D, D)
    assert lifted is not None
    assert (lifted.level, lifted.severity, lifted.evidence["previous"]) == (None, Severity.INFO, "III")
    assert "解除" in lifted.message_zh


# -- emergency levels on the database: a change is one alert, on the outbox ---------------------------


async def _level_alert(db: asyncpg.Connection, p: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT level, status, version, severity FROM alerts WHERE id = $1", alert_id("emergency_level", "product", p)
    )
    return row


async def _outbox(db: asyncpg.Connection, p: str) -> list[tuple[int, str | None]]:
    rows = await db.fetch(
        "SELECT version, payload->>'level' FROM alert_outbox WHERE alert_id = $1 ORDER BY id",
        alert_id("emergency_level", "product", p),
    )
    return [(r[0], r[1]) for r in rows]


async def test_level_changes_raise_one_alert_each_through_the_outbox(
    actors: Actors, engine: AsyncEngine, settings: Settings, db: asyncpg.Connection
) -> None:
    p, day = product(), a_day()
    n0 = datetime.fromisoformat(at(day + timedelta(days=1), 1))  # the day is over ...
    settled = n0 + QUIET + timedelta(minutes=1)  # ... and its data settles two hours after the last arrival
    (m1, s1), (m2, s2) = [(m, await actors.operator(kind="retailer", parent=m))
                          for m in [await actors.operator(kind="retail_market") for _ in range(2)]]  # fmt: skip

    def history(stall: str) -> list[dict[str, Any]]:
        return [receipt(stall, at(day - timedelta(weeks=w)), 1000.0, p) for w in range(1, 5)]

    # One market short by 60 %: a level III drop there, a local swing for the city (IV). The second market's
    # records have not reached the service yet.
    await apply(engine, settings, [*history(s1), receipt(s1, at(day), 400.0, p)], now=n0)
    found = await sweep(engine, settings, settled)
    assert [(f.rule, f.level) for f in found if p in f.subject_code] == [("supply_drop", Level.III)]
    assert tuple(await _level_alert(db, p) or ()) == ("IV", "open", 1, "warning")

    # A regulator acknowledges it; then the second market falls short too: the city is at III, and the
    # escalation re-opens the level alert.
    level_id = alert_id("emergency_level", "product", p)
    await db.execute("UPDATE alerts SET status = 'acknowledged', acknowledged_at = now() WHERE id = $1", level_id)
    await apply(engine, settings, [*history(s2), receipt(s2, at(day), 450.0, p)], now=settled)
    await sweep(engine, settings, settled + QUIET + timedelta(minutes=1))
    assert tuple(await _level_alert(db, p) or ()) == ("III", "open", 2, "warning")
    # A sweep with nothing new changes nothing.
    await sweep(engine, settings, settled + QUIET + timedelta(minutes=2))
    assert (await _level_alert(db, p) or {})["version"] == 2
    assert await _outbox(db, p) == [(1, "IV"), (2, "III")]
    payload = orjson.loads(
        await db.fetchval("SELECT payload::text FROM alert_outbox WHERE alert_id = $1 AND version = 2", level_id)
    )
    assert (payload["rule"], payload["subject"], payload["level"], payload["severity"]) == (
        "emergency_level", {"type": "product", "code": p}, "III", "warning",
    )  # fmt: skip
    assert sorted(payload["evidence"]["markets"]) == sorted([m1, m2])
    assert payload["evidence"]["since"] == (settled + QUIET + timedelta(minutes=1)).astimezone(SHANGHAI).isoformat()
    assert "III级（较大）" in payload["message"]["zh"]

    # A regulator resolves the second market's alert: on the next sweep the city is back at IV.
    drop = alert_id("supply_drop", "market", f"{m2}/{p}/{day}")
    assert await db.fetchval("SELECT status FROM alerts WHERE id = $1", drop) == "open"
    await db.execute("UPDATE alerts SET status = 'resolved', resolved_at = now() WHERE id = $1", drop)
    later = settled + QUIET + timedelta(minutes=3)
    await sweep(engine, settings, later)
    assert tuple(await _level_alert(db, p) or ())[:3] == ("IV", "open", 3)
    # Two days later the day has left the window: the level is lifted.
    await sweep(engine, settings, later + timedelta(days=2))
    assert tuple(await _level_alert(db, p) or ()) == (None, "open", 4, "info")
    assert [v for v, _ in await _outbox(db, p)] == [1, 2, 3, 4]
    await sweep(engine, settings, later + timedelta(days=2, minutes=5))
    assert (await _level_alert(db, p) or {})["version"] == 4


async def test_levels_through_the_api(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    p, quiet, today = product(), product(), local_today()
    markets = [await actors.operator(kind="retail_market") for _ in range(2)]
    await apply(engine, settings, [receipt(markets[0], at(today, 0), 100.0, quiet)])  # traded, no alert
    findings = [
        Finding(rule="supply_drop", subject_type="market", subject_code=f"{m}/{p}/{today}", severity=Severity.WARNING,
                message_zh="到货少", message_en="short", level=Level.III, operator=m,
                evidence={"day": str(today), "value": 1.0})
        for m in markets
    ]  # fmt: skip
    async with engine.begin() as conn:
        await alerts_repo.write_findings(conn, findings)
    regulator = await actors.staff_key("regulator")
    body = await get(client, "/v1/monitor/levels", regulator)
    Levels.model_validate(body)
    (mine,) = [x for x in body["products"] if x["product"] == p]
    assert (mine["level"], mine["level_name"], mine["colour"]) == ("III", {"zh": "较大", "en": "significant"}, "yellow")
    assert sorted(m["code"] for m in mine["markets"]) == sorted(markets)
    assert {(a["rule"], a["level"], a["behind"]) for a in mine["alerts"]} == {("supply_drop", "III", True)}
    (calm,) = [x for x in body["products"] if x["product"] == quiet]
    assert (calm["level"], calm["alerts"], calm["markets"]) == (None, [], [])
    assert body["window"] == {"from": str(today - timedelta(days=1)), "to": str(today)}
    assert body["thresholds"]["markets"] == {"IV": 1, "III": 2, "II": 2, "I": 2}
    # The gravest come first.
    order = {"I": 0, "II": 1, "III": 2, "IV": 3, None: 4}
    ranks = [order[x["level"]] for x in body["products"]]
    assert ranks == sorted(ranks)

    # The alert queue filters by product and level, as the console's does.
    queue = await get(client, "/v1/alerts", regulator, product=p, level="III")
    assert sorted(a["subject"]["code"] for a in queue["items"]) == sorted(f"{m}/{p}/{today}" for m in markets)
    assert (await get(client, "/v1/alerts", regulator, product=p, level="IV"))["items"] == []
    assert (await get(client, "/v1/alerts", regulator, product=quiet))["items"] == []
    r = await client.get("/v1/alerts", params={"level": "V"}, headers=regulator)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid")


# -- the public bulletin ---------------------------------------------------------------------------


async def test_bulletin_publishes_city_figures_only(
    client: httpx.AsyncClient, actors: Actors, engine: AsyncEngine, settings: Settings
) -> None:
    p, today = product(), local_today()
    yesterday, before = today - timedelta(days=1), today - timedelta(days=2)
    names = [f"行情测试市场{code('', 6)}" for _ in range(3)]
    markets = []
    for name in names:
        m = code("OP", 12)
        r = await client.post("/v1/operators", json={"code": m, "name": name, "kind": "retail_market",
                                                     "region": "442000"}, headers=actors.admin)  # fmt: skip
        assert r.status_code == 201
        markets.append(m)
    lots = {m: code("L", 16) for m in markets}
    events = [receipt(m, at(before, 4), 500.0, p, lot=lots[m]) for m in markets]
    # Yesterday all three markets sold; the day before only the first one did.
    events += [sale(m, at(yesterday, 10), lots[m], kg, price) for m, kg, price in
               zip(markets, (10.0, 20.0, 30.0), (8.0, 9.0, 10.0), strict=True)]  # fmt: skip
    events.append(sale(markets[0], at(before, 10), lots[markets[0]], 12.0, 7.5))
    await apply(engine, settings, events)

    r = await client.get("/v1/public/market", params={"date": str(yesterday)})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "public, max-age=300"
    body = r.json()
    Bulletin.model_validate(body)
    (mine,) = [x for x in body["products"] if x["product"] == p]
    assert mine["today"] == {"day": str(yesterday), "kg_sold": 60.0, "avg_price": round(560 / 60, 2), "head": None}
    by_day = {d["day"]: d for d in mine["days"]}
    assert len(mine["days"]) == 30
    assert by_day[str(before)] == {"day": str(before), "kg_sold": None, "avg_price": None, "head": None}  # one seller
    assert mine["price_change"] is None  # nothing published the day before to compare with
    text = r.text
    assert [x for x in [*markets, *names] if x in text] == []

    # The page: the same figures in the HTML itself, the chart as inline SVG, no script.
    page = await client.get("/market", params={"date": str(yesterday), "product": p})
    assert page.status_code == 200
    assert page.headers["cache-control"] == "public, max-age=300"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    html = page.text
    assert '<html lang="zh-CN">' in html
    assert "<script" not in html
    row = re.search(rf'<tr data-product="{p}"[^>]*>(.*?)</tr>', html, re.S)
    assert row is not None
    assert "60.0 公斤" in row.group(1)
    assert f"{560 / 60:.2f}" in row.group(1)
    chart = re.search(r'<svg viewBox="0 0 720 270"[^>]*data-product="' + p + r'"[^>]*>(.*?)</svg>', html, re.S)
    assert chart is not None
    assert chart.group(1).count('<rect class="bar"') == 1  # one day published of the 30
    assert chart.group(1).count('<rect class="gap"') == 29
    assert [x for x in [*markets, *names] if x in html] == []
    english = await client.get("/market", params={"date": str(yesterday), "product": p, "lang": "en"})
    assert '<html lang="en">' in english.text
    assert "60.0 kg" in english.text
    assert "Market bulletin" in english.text


async def test_bulletin_covers_finished_days(client: httpx.AsyncClient) -> None:
    today = local_today()
    r = await client.get("/v1/public/market", params={"date": str(today)})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "date"
    assert (await client.get("/v1/public/market", params={"date": "yesterday"})).status_code == 422
    default = (await client.get("/v1/public/market")).json()
    assert default["date"] == str(today - timedelta(days=1))
    # The page falls back to the latest day with a notice rather than an error.
    page = await client.get("/market", params={"date": str(today + timedelta(days=3))})
    assert page.status_code == 200
    assert "日期无效" in page.text
    assert (await client.get("/market", params={"date": "<script>"})).status_code == 200


def test_product_names_people_know() -> None:
    from trace_service.market.products import name_of

    assert (name_of("PORK-CARCASS").zh, name_of("pork-carcass").en) == ("猪肉", "Pork")
    assert name_of("VEG-CAIXIN").zh == "菜心"
    assert (name_of("X-UNKNOWN").zh, name_of("X-UNKNOWN").known) == ("X-UNKNOWN", False)


def test_stock_counts_shelf_life_by_category() -> None:
    from trace_service.market.stock import StockSettings, _region_prefix

    s = StockSettings()
    assert (s.sales_days, s.max_age_days_pork, s.max_age_days_produce) == (7, 7, 3)
    assert [_region_prefix(r) for r in ("442000", "440000", "441203", None)] == ["4420", "44", "441203", None]
