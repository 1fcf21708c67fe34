"""The market pages in a real browser: the console's supply board with its drill-downs and the filterable
alert queue, and the public bulletin ``/market`` (with JavaScript on and off).

Headless Debian Chromium driven by Playwright, against the app on a real port. The data is five weeks of a
small city (four wet markets, a supermarket, five products) applied in process through the real projection
and market rules, with yesterday's shocks: pork short at three markets (the city at level III), a choy sum
price spike at one market and a lettuce glut at another (level IV each). It lives in a database of its own,
so that the screenshots (``docs/img/console-supply-*.png``, ``docs/img/market-*.png``) show only it.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_TOKEN, _asyncpg_args, make_settings
from tests.support import Actors
from tests.test_alert_stream import served
from tests.test_web import CHROMIUM_ARGS, DESK, PHONE
from trace_service.alerts import repository as alerts_repo
from trace_service.chain import projection as chain_projection
from trace_service.chain import writes as chain_repo
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine, migrate
from trace_service.market import service
from trace_service.market.rules import MarketThresholds
from trace_service.settings import Settings

CHROMIUM = "/usr/bin/chromium"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Screenshots go to test-artifacts/; with TRACE_UPDATE_DOCS_IMAGES=1 they replace the ones in docs/img/ (the
# README's), so that an ordinary test run leaves the working tree as it found it.
IMG = Path(__file__).resolve().parent.parent / (
    "docs/img" if os.environ.get("TRACE_UPDATE_DOCS_IMAGES") == "1" else "test-artifacts/img"
)
# Past days are judged as soon as they are over and their data is in: this data arrives all at once.
TM = MarketThresholds(settle_minutes=0, settle_quiet_seconds=0, settle_days_per_sweep=400)
WEEKS = 5
# product, base kg a day at a market, retail price (CNY/kg)
PRODUCTS = [("PORK-CARCASS", 120.0, 32.0), ("VEG-CAIXIN", 80.0, 8.0), ("VEG-SHENGCAI", 60.0, 6.0),
            ("VEG-FANQIE", 50.0, 7.0), ("VEG-DONGGUA", 40.0, 3.0)]  # fmt: skip
MARKET_NAMES = ["中山市石岐综合市场", "中山市小榄综合市场", "中山市东升综合市场", "中山市坦洲综合市场"]


@dataclass
class World:
    base: str
    client: httpx.AsyncClient
    regulator_key: str
    markets: list[str]  # the four wet markets, then the supermarket
    names: dict[str, str]
    today: date
    hour: int

    @property
    def yesterday(self) -> date:
        return self.today - timedelta(days=1)


def _code(prefix: str, n: int = 16) -> str:
    return prefix + "".join(secrets.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(n - len(prefix)))


def _at(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).isoformat()


def _event(event_type: str, operator: str, when: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "occurred_at": when, "operator": operator,
            "data": data}  # fmt: skip


def _day_events(stall: str, day: date, product: str, kg: float, price: float, hour: int) -> list[dict[str, Any]]:
    """A stall's receipt of a product at ``hour`` and three sales of 30 % each, later that day."""
    lot = _code("R")
    line = {"lot": lot, "from_lot": _code("F"), "weight_kg": round(kg, 1), "product_code": product}
    received = {"voucher_number": _code("V", 12), "seller": "442000200101", "lines": [line], "documents": {}}
    events = [_event("trade.received", stall, _at(day, hour), received)]
    for k in range(3):
        data = {"sale_code": _code("S", 18), "lot": lot, "stall": stall, "weight_kg": round(kg * 0.3, 1),
                "unit_price": round(price * (1 + 0.01 * k), 2)}  # fmt: skip
        events.append(_event("retail.sold", stall, _at(day, hour + 3 + 2 * k), data))
    return events


def _month(stalls: list[str], today: date, hour: int) -> list[list[dict[str, Any]]]:
    """Five weeks of every stall and product, a batch a day, and today's hours so far."""
    batches = []
    for back in range(WEEKS * 7, -1, -1):
        day = today - timedelta(days=back)
        events: list[dict[str, Any]] = []
        for i, stall in enumerate(stalls):
            for j, (product, kg, price) in enumerate(PRODUCTS):
                wobble = 1 + 0.03 * (((back * 7 + i * 3 + j) % 5) - 2)
                kg_day, price_day = kg * (1 + 0.15 * i) * wobble, price * (1 + 0.02 * i)
                if back == 1 and product == "PORK-CARCASS" and i in (0, 1, 2):
                    kg_day *= 0.4  # yesterday: pork short at three markets
                if back == 1 and product == "VEG-CAIXIN" and i == 2:
                    price_day *= 1.4  # yesterday: choy sum 40 % dearer at one market
                if back == 1 and product == "VEG-SHENGCAI" and i == 3:
                    kg_day *= 2.5  # yesterday: a lettuce glut at one market
                receive_at = 3 + j % 3
                if back == 0 and receive_at >= hour:
                    continue  # today: only the hours so far
                events += _day_events(stall, day, product, kg_day, price_day, receive_at)
                if back == 0:
                    events = [e for e in events if datetime.fromisoformat(e["occurred_at"]).hour < hour]
        batches.append(events)
    return batches


async def _apply(settings: Settings, batches: list[list[dict[str, Any]]]) -> None:
    cat = build_catalogue(settings.codes)
    engine = create_engine(settings, pool_size=2, name="test-market-pages")
    try:
        for raw in batches:
            events = [cat.event.validate_json(orjson.dumps(e)) for e in raw]
            async with engine.begin() as conn:
                await chain_repo.apply_plan(conn, chain_projection.plan(events))
                findings = await service.apply(conn, events, settings, thresholds=TM)
                await alerts_repo.write_findings(conn, findings)
        async with engine.begin() as conn:
            await alerts_repo.write_findings(conn, await service.sweep(conn, settings, thresholds=TM))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def own_database(server_url: str) -> AsyncIterator[str]:
    """A database of this module's own: the screenshots show only its city."""
    name = f"trace_test_pages_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(**_asyncpg_args(server_url))  # type: ignore[arg-type]
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(server_url).set(database=name).set(drivername="postgresql+asyncpg")
    rendered = url.render_as_string(hide_password=False)
    await asyncio.to_thread(migrate, rendered)
    yield rendered
    admin = await asyncpg.connect(**_asyncpg_args(server_url))  # type: ignore[arg-type]
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def world(own_database: str, broker_bootstrap: str) -> AsyncIterator[World]:
    settings = make_settings(own_database, broker_bootstrap)
    async with served(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        actors = Actors(client, ADMIN_TOKEN)
        markets, stalls, names = [], [], {}
        for i, name in enumerate(MARKET_NAMES):
            code = f"44200030{i + 1:04d}"
            r = await client.post("/v1/operators", json={"code": code, "name": name, "kind": "retail_market",
                                                         "region": "442000"}, headers=actors.admin)  # fmt: skip
            assert r.status_code == 201, r.text
            stall = f"44200031{i + 1:04d}"
            r = await client.post("/v1/operators", json={"code": stall, "name": f"{name[3:5]}市场8号摊",
                                                         "kind": "retailer", "region": "442000", "parent": code},
                                  headers=actors.admin)  # fmt: skip
            assert r.status_code == 201, r.text
            markets.append(code)
            stalls.append(stall)
            names[code] = name
        shop = "442000400001"
        r = await client.post("/v1/operators", json={"code": shop, "name": "壹加壹中山石岐店", "kind": "supermarket",
                                                     "region": "442000", "emergency_outlet": True},
                              headers=actors.admin)  # fmt: skip
        assert r.status_code == 201, r.text
        markets.append(shop)
        stalls.append(shop)
        names[shop] = "壹加壹中山石岐店"
        now = datetime.now(SHANGHAI)
        await _apply(settings, _month(stalls, now.date(), now.hour))
        regulator = (await actors.staff_key("regulator"))["Authorization"].removeprefix("Bearer ")
        yield World(base, client, regulator, markets, names, now.date(), now.hour)


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _console(browser: Browser, world: World) -> Page:
    context = await browser.new_context(base_url=world.base, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        viewport=DESK)  # fmt: skip
    page = await context.new_page()
    await page.goto("/console")
    await page.get_by_label("监管密钥").fill(world.regulator_key)
    await page.get_by_role("button", name="登录").click()
    await expect(page.get_by_role("heading", name="预警队列")).to_be_visible()
    return page


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])  # fmt: skip


async def _legends_do_not_overlap(page: Page) -> None:
    """Every chart's legend is HTML beside the drawing, and no two of its entries overlap."""
    assert await page.locator("figure.chart svg .legend-text").count() == 0
    for legend in await page.locator("figure.chart ul.legend-list").all():
        boxes = [await li.bounding_box() for li in await legend.locator("li").all()]
        assert len(boxes) >= 4
        assert all(b is not None for b in boxes)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a is not None
                assert b is not None
                assert not _overlap(a, b), (a, b)


async def test_the_supply_board_and_its_drill_downs(world: World, browser: Browser) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    page = await _console(browser, world)
    try:
        board = page.locator("#board")
        pork = board.locator("article.board-card[data-product='PORK-CARCASS']")
        await expect(pork).to_be_visible(timeout=15_000)
        # Pork: short at three markets, the city at III (较大), with the figures a regulator needs.
        await expect(pork.locator(".level")).to_have_text("III级 较大")
        await expect(pork.locator("h3")).to_contain_text("猪肉")
        await expect(pork).to_contain_text("3 个市场 markets")
        await expect(pork).to_contain_text("到货量下降")
        await expect(pork).to_contain_text("可供")
        await expect(pork).to_contain_text("元/kg")
        # Yesterday the city received a third less pork than its band allows: the bar is below the band.
        await expect(pork.locator("svg.bullet rect.value.short")).to_have_count(1)
        # One market's price spike and another's glut: local swings, level IV.
        for product in ("VEG-CAIXIN", "VEG-SHENGCAI"):
            card = board.locator(f"article.board-card[data-product='{product}']")
            await expect(card.locator(".level")).to_have_text("IV级 一般")
        assert await board.locator("article.board-card").evaluate_all("cs => cs.map(c => c.dataset.level)") == [
            "III", "IV", "IV",
        ]  # fmt: skip
        # The other products are listed below, by name, with their stock.
        others = page.locator("#board-other-rows tr")
        await expect(others).to_have_count(2)
        await expect(page.locator("#board-other-rows")).to_contain_text("番茄")
        await expect(page.locator("#board-other-rows")).to_contain_text("冬瓜")
        await page.locator("#supply").screenshot(path=IMG / "console-supply-board.png")

        # Drill down: pork across the markets, the city's chart on top.
        await pork.get_by_role("button", name="查看明细 Details").click()
        city = page.locator("#drill-chart figure.chart[data-market='city'][data-product='PORK-CARCASS']")
        await expect(city).to_be_visible()
        await expect(city.locator("figcaption")).to_have_text("猪肉 · 全市 City")
        rows = page.locator("#drill-rows tr")
        await expect(rows).to_have_count(5)
        # The shortest first: the three markets that were short yesterday.
        first = await rows.evaluate_all("rs => rs.slice(0, 3).map(r => r.dataset.market)")
        assert sorted(first) == sorted(world.markets[:3])
        await expect(rows.first).to_contain_text("-6")  # about -60 % against the baseline
        await _legends_do_not_overlap(page)
        # The day in progress is not part of the line: the line has the finished days only, and today, if
        # it has data yet, is its own hollow point, labelled as "so far".
        series = city.locator("polyline.series")
        points = (await series.get_attribute("points") or "").split()
        assert len(points) == 29
        await expect(city.locator("circle.today-point")).to_have_count(1)
        await expect(city.locator("text.today-label")).to_contain_text("so far")
        await page.locator("#drill").screenshot(path=IMG / "console-supply-product.png")

        # One market: its chart, the alert on yesterday, then every product at that market.
        await rows.filter(has_text=world.names[world.markets[0]]).get_by_role("button").click()
        detail = page.locator(f"#drill-detail figure.chart[data-market='{world.markets[0]}']")
        await expect(detail.locator(f"circle.alert-day[data-day='{world.yesterday}']")).to_have_count(1)
        await expect(page.locator("#drill-crumbs")).to_contain_text(world.names[world.markets[0]])
        await page.get_by_role("button", name="该市场全部品种 All products at this market").click()
        await expect(page.locator("#drill-title")).to_contain_text(world.names[world.markets[0]])
        await expect(page.locator("#drill-rows tr")).to_have_count(len(PRODUCTS))
        await page.locator("#drill-rows tr[data-product='VEG-CAIXIN']").get_by_role("button").click()
        await expect(page.locator("#drill-detail figure.chart[data-product='VEG-CAIXIN']")).to_be_visible()
        await _legends_do_not_overlap(page)
        await page.locator("#drill").screenshot(path=IMG / "console-supply-market.png")

        # The query form still takes any product and market (codes or names from the list).
        await page.get_by_label("产品 Product", exact=True).fill("VEG-FANQIE")
        await page.get_by_label("市场 Market", exact=True).fill(world.markets[1])
        await page.get_by_role("button", name="显示").click()
        chart = page.locator(f"#supply-charts figure.chart[data-market='{world.markets[1]}']")
        await expect(chart.locator(".band")).not_to_have_count(0)
        await expect(chart.locator("figcaption")).to_contain_text("番茄")
    finally:
        await page.context.close()


async def test_the_alert_queue_filters(world: World, browser: Browser) -> None:
    page = await _console(browser, world)
    try:
        rows = page.locator("#alert-rows tr")
        await expect(rows.first).to_be_visible(timeout=15_000)
        # Rule names and severities in Chinese first.
        await page.locator("#filter-rule").select_option("supply_drop")
        await expect(rows).to_have_count(3)
        assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.rule)")) == {"supply_drop"}
        await expect(rows.first.locator(".rule-name")).to_have_text("到货量下降")
        await expect(rows.first.locator(".sev")).to_have_text("警告 warning")
        await expect(rows.first.locator(".level")).to_have_text("III级 较大")
        # By level, by product and by market.
        await page.locator("#filter-rule").select_option("")
        await page.locator("#filter-level").select_option("IV")
        await expect(rows.locator(".level", has_text="III级")).to_have_count(0)
        assert set(await rows.locator(".level").all_inner_texts()) == {"IV级 一般"}
        assert len(await rows.all()) == 4  # the spike, the glut, and the city's level of each product
        await page.locator("#filter-level").select_option("")
        await page.locator("#filter-product").select_option("PORK-CARCASS")
        await expect(rows.filter(has_text="应急级别变化")).to_have_count(1)  # the city's level of pork
        assert all("猪肉" in t for t in await rows.locator("td:nth-child(4)").all_inner_texts())
        await page.locator("#filter-market").fill(world.markets[0])
        await page.locator("#filter-market").press("Enter")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text(world.markets[0])
        await page.locator("#alerts").screenshot(path=IMG / "console-supply-queue.png")
        await page.get_by_role("button", name="清除筛选 Clear").click()
        await expect(page.locator("#filter-product")).to_have_value("")
        await expect(rows).not_to_have_count(1)
    finally:
        await page.context.close()


async def test_the_bulletin_page(world: World, browser: Browser) -> None:
    yesterday = world.yesterday.isoformat()
    for js, viewport, lang, shot in ((True, DESK, "zh", "market-zh.png"), (True, DESK, "en", "market-en.png"),
                                     (False, PHONE, "zh", "market-phone-nojs.png")):  # fmt: skip
        scale = 2 if viewport == PHONE else 1
        context = await browser.new_context(base_url=world.base, locale="zh-CN", viewport=viewport,
                                            java_script_enabled=js, device_scale_factor=scale)  # fmt: skip
        try:
            page = await context.new_page()
            response = await page.goto(f"/market?lang={lang}")
            assert response is not None
            assert response.status == 200
            await expect(page.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
            await expect(page.locator("h1 time")).to_have_text(yesterday)
            table = page.locator("table.bulletin-table tbody tr")
            await expect(table).to_have_count(len(PRODUCTS))
            pork = page.locator("tr[data-product='PORK-CARCASS']")
            await expect(pork.locator("th")).to_have_text("猪肉" if lang == "zh" else "Pork")
            await expect(pork.locator("td.price")).to_have_text(re.compile(r"^\d+\.\d\d$"))
            chart = page.locator("figure.bulletin-chart svg")
            await expect(chart).to_be_visible()
            await expect(chart.locator("rect.bar")).to_have_count(30)
            await expect(page.locator("figure.bulletin-chart .legend-list li")).to_have_count(3)
            content = await page.content()
            assert [name for name in world.names.values() if name in content] == []
            assert [code for code in world.markets if code in content] == []
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"the page is {width}px wide at {viewport['width']}px"
            if not js:
                # Another product and another language are plain links.
                await page.locator("tr[data-product='VEG-CAIXIN'] a").click()
                await expect(page.locator("#chart-title")).to_contain_text("菜心")
                await page.get_by_role("link", name="English").click()
                await expect(page.locator("#chart-title")).to_contain_text("Choy sum")
                await page.get_by_role("link", name="中文").click()
            await page.screenshot(path=IMG / shot, full_page=True)
        finally:
            await context.close()
