"""The pages in a real browser: the consumer's trace page and the regulator console.

Headless Debian Chromium driven by Playwright (``executable_path``; nothing is downloaded), against the
app on a real port with a real worker, broker and Postgres. Screenshots land in ``test-artifacts/``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Dialog, Page, async_playwright, expect

from tests.conftest import ADMIN_TOKEN, make_settings, running_worker
from tests.support import Actors, post_events, scenario_tag, wait_for
from tests.test_alert_stream import served
from trace_service.alerts import repository as alerts_repo
from trace_service.chain import scenarios
from trace_service.db.engine import create_engine
from trace_service.market import service as market_service
from trace_service.market.rules import MarketThresholds
from trace_service.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
PHONE = {"width": 360, "height": 780}
DESK = {"width": 1400, "height": 900}
IMG_NAME = "<img src=x onerror=alert(1)>"
SCRIPT_NAME = '<script>alert("slaughter")</script>中山屠宰'
PRIVATE = [
    "李某某",
    "B4412031124001",
    "CQ-4420-2026-88001",
    "ZQ-2026-1125-001",
    "鼎湖区示范生猪养殖场",
    "粤H12345",
]
SCENARIO_DAY = date(2026, 11, 25)  # the day the scenario streams are written for


@dataclass
class Site:
    base: str
    client: httpx.AsyncClient
    actors: Actors
    regulator_key: str
    operator_key: str
    pig: dict[str, str]  # scenario code -> the code in this run
    asf: dict[str, str]
    markup: dict[str, str]
    supply_market: str
    supply_day: date
    dialogs: list[str] = field(default_factory=list)


def _shift(node: Any, days: int) -> Any:
    """Every time in an event moved by whole days (as the scenario files' ``shift`` change does)."""
    if isinstance(node, dict):
        return {k: _shift(v, days) for k, v in node.items()}
    if isinstance(node, list):
        return [_shift(v, days) for v in node]
    if isinstance(node, str) and len(node) >= 20 and node[4:5] == "-" and "T" in node:
        try:
            return (datetime.fromisoformat(node) + timedelta(days=days)).isoformat()
        except ValueError:
            return node
    return node


def _retag(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _retag(v, mapping) for k, v in node.items()}
    if isinstance(node, list):
        return [_retag(v, mapping) for v in node]
    return mapping.get(node, node) if isinstance(node, str) else node


async def _register(client: httpx.AsyncClient, admin: dict[str, str], operators: list[dict[str, Any]]) -> None:
    """Register a scenario's operators, waiting until each is readable: the API commits its unit of work
    after sending the response, so a tenant posted at once could find its parent not there yet."""
    for op in operators:  # the scenario files list parents before their tenants
        r = await client.post("/v1/operators", json=op, headers=admin)
        assert r.status_code == 201, r.text

        async def visible(code: str = op["code"]) -> bool:
            return (await client.get(f"/v1/operators/{code}", headers=admin)).status_code == 200

        await wait_for(visible, timeout=10, interval=0.02)


async def _replay(client: httpx.AsyncClient, admin: dict[str, str], sc: dict[str, Any]) -> dict[str, str]:
    await _register(client, admin, sc["operators"])
    await post_events(client, admin, sc["events"])
    mapping: dict[str, str] = sc["mapping"]
    return mapping


async def _supply_history(client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, date]:
    """The vegetable chain through one wholesale market on the same weekday of four weeks, then a short
    day: a same-weekday baseline with a band, and a day that raises ``supply_drop``. The short day is
    the day before yesterday, so it is over (and judged on its totals) whatever the time of the run."""
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=2)
    base = scenarios.load("produce_chain")
    tag = scenario_tag()
    main = scenarios.instantiate(base, tag)
    await _register(client, admin, main["operators"])
    history: list[dict[str, Any]] = []
    for week in (4, 3, 2, 1):
        other = scenarios.instantiate(base, scenario_tag())
        same_operators = {other["mapping"][op["code"]]: main["mapping"][op["code"]] for op in base["operators"]}
        history += _shift(_retag(other["events"], same_operators), (day - SCENARIO_DAY).days - 7 * week)
    await post_events(client, admin, history)
    short = _shift(copy.deepcopy(main["events"]), (day - SCENARIO_DAY).days)
    short[2]["data"]["lines"][0]["weight_kg"] = 600.0  # the wholesaler receives 600 kg instead of 1,500
    await post_events(client, admin, short)
    return main["mapping"]["442000200001"], day


async def _settle_supply(settings: Settings) -> None:
    """Judge the supply history now. The worker judges a past day once no data for it has arrived for
    ``TRACE_MARKET_SETTLE_QUIET_SECONDS`` (two hours by default); this is the worker's own sweep with a quiet
    period of 0, so that the days the fixture posted (all applied: ``post_events`` waits) count as settled."""
    thresholds = MarketThresholds(settle_quiet_seconds=0, settle_days_per_sweep=50)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await alerts_repo.write_findings(conn, await market_service.sweep(conn, settings, thresholds=thresholds))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def site(database_url: str, broker_bootstrap: str) -> AsyncIterator[Site]:
    """The app on a real port with a worker, and the chains the pages show."""
    settings = make_settings(database_url, broker_bootstrap)
    async with (
        running_worker(settings),
        served(settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        actors = Actors(client, ADMIN_TOKEN)
        pig = await _replay(client, actors.admin, scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag()))
        asf_sc = scenarios.instantiate(scenarios.load("faults/asf_positive"), scenario_tag())
        asf = await _replay(client, actors.admin, asf_sc)
        # Names are free text: a market and a slaughterhouse that call themselves markup.
        markup_sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
        for op in markup_sc["operators"]:
            if op["code"] == markup_sc["mapping"]["442000300001"]:
                op["name"] = IMG_NAME
            if op["code"] == markup_sc["mapping"]["442000100001"]:
                op["name"] = SCRIPT_NAME
        markup = await _replay(client, actors.admin, markup_sc)
        supply_market, supply_day = await _supply_history(client, actors.admin)
        await _settle_supply(settings)
        regulator = (await actors.staff_key("regulator"))["Authorization"].removeprefix("Bearer ")
        operator = (await actors.key(pig["442000300105"]))["Authorization"].removeprefix("Bearer ")
        yield Site(base, client, actors, regulator, operator, pig, asf, markup, supply_market, supply_day)


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(apt-get install -y chromium; .ci/run installs it). They are never skipped."
        )
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _context(browser: Browser, site: Site, **options: Any) -> BrowserContext:
    context = await browser.new_context(base_url=site.base, locale="zh-CN", timezone_id="Asia/Shanghai", **options)

    async def on_dialog(dialog: Dialog) -> None:
        site.dialogs.append(dialog.message)
        await dialog.dismiss()

    context.on("page", lambda page: page.on("dialog", on_dialog))
    return context


async def _no_horizontal_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width}px wide at {PHONE['width']}px"


# -- the consumer's page ---------------------------------------------------------------------------


async def test_consumer_page_of_a_pork_sale(site: Site, browser: Browser, artifacts: Path) -> None:
    sale = site.pig["SALE2026112500001"]
    context = await _context(browser, site, viewport=PHONE, device_scale_factor=2)
    try:
        page = await context.new_page()
        response = await page.goto(f"/t/{sale}")
        assert response is not None
        assert response.status == 200
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(page.locator("h1")).to_have_text("猪胴体(白条)")
        main = page.locator("main")
        for seen in ("肇庆", "鼎湖", "中山市定点屠宰厂", "中山市石岐综合市场", "1.25 kg", "2026-11-25 08:15", sale):
            await expect(main).to_contain_text(seen)
        # The timeline, origin to stall, with the checks where they were made.
        steps = page.locator("ol.timeline > li")
        await expect(steps).to_have_count(4)
        assert [c.split()[1] for c in await steps.evaluate_all("els => els.map(e => e.className)")] == [
            "step-origin", "step-slaughter", "step-market", "step-sale",
        ]  # fmt: skip
        for check in ("quarantine", "quality", "asf", "ractopamine"):
            await expect(page.locator(f"li.badge.pass[data-check='{check}']")).to_be_visible()
        await expect(page.locator(".step-slaughter")).to_contain_text("非洲猪瘟检测")
        await expect(page.locator(".step-slaughter")).to_contain_text("合格")
        await expect(page.locator(".warning")).to_have_count(0)
        content = await page.content()
        assert [p for p in PRIVATE if p in content] == []
        await _no_horizontal_scroll(page)
        await page.screenshot(path=artifacts / "web-consumer-sale-zh.png", full_page=True)

        # The English toggle is a plain link.
        await page.get_by_role("link", name="English").click()
        await expect(page).to_have_url(f"{site.base}/t/{sale}?lang=en")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator(".step-slaughter")).to_contain_text("African swine fever test")
        await expect(page.locator(".step-slaughter")).to_contain_text("Pass")
        await expect(page.locator(".step-origin")).to_contain_text("肇庆")
        await _no_horizontal_scroll(page)
        await page.screenshot(path=artifacts / "web-consumer-sale-en.png", full_page=True)
        await page.get_by_role("link", name="中文").click()
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    finally:
        await context.close()

    qr = await site.client.get(f"/t/{sale}/qr.svg")
    assert qr.status_code == 200
    assert qr.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in qr.content
    assert b"<script" not in qr.content
    assert (await site.client.get("/t/not-a-code/qr.svg")).status_code == 404
    assert site.dialogs == []


async def test_a_stopped_lot_shows_the_warning(site: Site, browser: Browser, artifacts: Path) -> None:
    batch = site.asf["SLBATCH0001"]
    context = await _context(browser, site, viewport=PHONE, device_scale_factor=2)
    try:
        page = await context.new_page()
        await page.goto(f"/t/{batch}")
        warning = page.get_by_role("alert")
        await expect(warning).to_be_visible()
        await expect(warning).to_contain_text("警告")
        await expect(warning).to_contain_text("请勿食用")
        await expect(page.locator("li.badge.fail[data-check='asf']")).to_contain_text("不合格")
        await _no_horizontal_scroll(page)
        await page.screenshot(path=artifacts / "web-consumer-stopped.png", full_page=True)
        await page.goto(f"/t/{batch}?lang=en")
        await expect(page.get_by_role("alert")).to_contain_text("Do not eat")
    finally:
        await context.close()


async def test_unknown_codes_get_a_friendly_page(site: Site, browser: Browser, artifacts: Path) -> None:
    context = await _context(browser, site, viewport=PHONE, device_scale_factor=2)
    try:
        page = await context.new_page()
        response = await page.goto("/t/NOSUCHCODE2026")
        assert response is not None
        assert response.status == 404
        await expect(page.locator("h1")).to_have_text("未找到该追溯码")
        await expect(page.locator(".typed")).to_contain_text("NOSUCHCODE2026")
        await page.screenshot(path=artifacts / "web-consumer-not-found.png", full_page=True)
        # The page's form finds a code typed with spaces and in lower case.
        sale = site.pig["SALE2026112500001"]
        await page.get_by_label("追溯码").fill(f" {sale.lower()[:6]} {sale.lower()[6:]} ")
        await page.get_by_role("button", name="查询").click()
        await expect(page.locator("h1")).to_have_text("猪胴体(白条)")

        # A code carrying markup is echoed as text, never run.
        markup = "<script>alert(1)</script>"
        response = await page.goto("/t/" + quote(markup, safe=""))
        assert response is not None
        assert response.status == 404
        await expect(page.locator(".typed code")).to_have_text(markup)
        assert await page.locator("script").count() == 0
    finally:
        await context.close()
    assert site.dialogs == []


async def test_names_with_markup_are_shown_as_text(site: Site, browser: Browser, artifacts: Path) -> None:
    context = await _context(browser, site, viewport=PHONE)
    try:
        page = await context.new_page()
        await page.goto(f"/t/{site.markup['SALE2026112500001']}")
        # The market's name is in the sale step and in the contact line ("ask its service desk").
        await expect(page.get_by_text(IMG_NAME, exact=True)).to_have_count(2)
        await expect(page.locator(".timeline").get_by_text(IMG_NAME, exact=True)).to_be_visible()
        await expect(page.get_by_text(SCRIPT_NAME, exact=True)).to_be_visible()
        assert await page.locator("main img").count() == 0
        assert await page.locator("script").count() == 0
        await page.screenshot(path=artifacts / "web-consumer-markup.png", full_page=True)
    finally:
        await context.close()
    assert site.dialogs == []


async def test_consumer_page_works_without_javascript(site: Site, browser: Browser) -> None:
    context = await _context(browser, site, viewport=PHONE, java_script_enabled=False)
    try:
        page = await context.new_page()
        await page.goto(f"/t/{site.pig['SALE2026112500001']}")
        await expect(page.locator("h1")).to_have_text("猪胴体(白条)")
        await expect(page.locator("li.badge.pass")).to_have_count(4)
        await page.get_by_role("link", name="English").click()
        await expect(page.locator(".step-slaughter")).to_contain_text("Slaughterhouse")
        await page.goto(f"/t/{site.asf['SLBATCH0001']}")
        await expect(page.get_by_role("alert")).to_contain_text("警告")
    finally:
        await context.close()


# -- the regulator console -------------------------------------------------------------------------


async def _sign_in(page: Page, key: str) -> None:
    await page.get_by_label("监管密钥").fill(key)
    await page.get_by_role("button", name="登录").click()


async def test_console(site: Site, browser: Browser, artifacts: Path) -> None:
    context = await _context(browser, site, viewport=DESK, accept_downloads=True)
    try:
        page = await context.new_page()
        await page.goto("/console")

        # Wrong keys are refused with a message; an operator key cannot sign in.
        await _sign_in(page, "trk.nosuchkey0.0123456789abcdef0123456789abcdef0123")
        await expect(page.locator("#login-error")).to_contain_text("密钥无效")
        await _sign_in(page, site.operator_key)
        await expect(page.locator("#login-error")).to_contain_text("经营者密钥不能登录")
        await _sign_in(page, site.regulator_key)
        await expect(page.get_by_role("heading", name="预警队列")).to_be_visible()
        [cookie] = [c for c in await context.cookies() if c["name"] == "trace_console"]
        assert cookie["httpOnly"]
        assert cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/console"
        assert cookie["value"] == site.regulator_key

        # A new alert arrives without reloading the page.
        await expect(page.locator("#stream-status")).to_have_attribute("data-state", "live", timeout=10_000)
        await page.evaluate("window.stillTheSamePage = true")
        fault = scenarios.instantiate(scenarios.load("faults/origin_outside_zone"), scenario_tag())
        await _replay(site.client, site.actors.admin, fault)
        batch = fault["mapping"]["SLBATCH0001"]
        row = page.locator("#alert-rows tr", has=page.locator(f"button[data-trace='{batch}']"))
        await expect(row).to_be_visible(timeout=15_000)
        await expect(row).to_contain_text("origin_outside_zone")
        assert await page.evaluate("window.stillTheSamePage") is True

        # Acknowledge it.
        alert_id = await row.get_attribute("data-alert-id")
        await row.get_by_role("textbox").fill("已通知屠宰厂")
        await row.get_by_role("button", name="确认 Acknowledge").click()
        await expect(row.locator(".alert-status")).to_have_text("已确认 acknowledged")
        regulator = {"Authorization": f"Bearer {site.regulator_key}"}
        stored = (await site.client.get(f"/v1/alerts/{alert_id}", headers=regulator)).json()
        assert stored["status"] == "acknowledged"
        assert stored["acknowledged"]["note"] == "已通知屠宰厂"
        await page.screenshot(path=artifacts / "web-console-alerts.png")

        # Without the page's token a state change is refused, even with the cookie.
        forged = await page.request.post(f"/console/api/alerts/{alert_id}/resolve", data={})
        assert forged.status == 403

        # Search a code and see its lineage drawn, farm to sale, and the table behind it.
        await page.get_by_label("批次、销售、经营者或预警编码").fill(site.pig["SLBATCH0001"])
        await page.get_by_role("button", name="查询 Search").click()
        nodes = page.locator("#lineage-svg g.node")
        await expect(nodes).to_have_count(7)
        await expect(page.locator("#lineage-svg path.edge")).to_have_count(6)
        await expect(page.locator("#trace-rows tr")).to_have_count(7)
        await expect(page.locator(f"#lineage-svg g.node.root[data-code='{site.pig['SLBATCH0001']}']")).to_be_visible()
        await expect(page.locator("#trace-rows")).to_contain_text("中山市定点屠宰厂")

        # The recall list, and its CSV.
        await expect(page.locator("#recall-rows tr")).to_have_count(6)  # the batch itself and 5 downstream
        await expect(page.locator("#recall-holder-rows")).to_contain_text(site.pig["442000300105"])
        await page.locator("#trace").screenshot(path=artifacts / "web-console-trace.png")
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="下载 CSV").click()
        download = await download_info.value
        assert download.suggested_filename == f"recall-{site.pig['SLBATCH0001']}.csv"
        csv_path = artifacts / "web-recall.csv"
        await download.save_as(csv_path)
        csv_text = csv_path.read_text(encoding="utf-8-sig")
        assert csv_text.startswith("code,kind,depth,")
        assert site.pig["SALE2026112500001"] in csv_text

        # A stopped lot is marked in the graph; names with markup stay text there too.
        await page.get_by_label("批次或销售码").fill(site.asf["SLBATCH0001"])
        await page.get_by_role("button", name="追溯 Trace").click()
        stopped = page.locator(f"#lineage-svg g.node.stopped[data-code='{site.asf['SLBATCH0001']}']")
        await expect(stopped).to_be_visible()
        await page.get_by_label("批次或销售码").fill(site.markup["SALE2026112500001"])
        await page.get_by_role("button", name="追溯 Trace").click()
        await expect(page.locator("#trace-rows")).to_contain_text(SCRIPT_NAME)
        await expect(page.locator("#recall-table")).to_be_visible()
        assert await page.locator("#trace-rows img, #lineage-svg img, #trace-rows script").count() == 0

        # Supply: the baseline band and the day that raised an alert.
        await page.get_by_label("产品 Product", exact=True).fill("VEG-CAIXIN")
        await page.get_by_label("市场 Market", exact=True).fill(site.supply_market)
        await page.get_by_label("从 From", exact=True).fill((site.supply_day - timedelta(days=34)).isoformat())
        await page.get_by_label("到 To", exact=True).fill(site.supply_day.isoformat())
        await page.get_by_role("button", name="显示").click()
        chart = page.locator(f"figure.chart[data-market='{site.supply_market}']")
        await expect(chart.locator(".band")).not_to_have_count(0)
        await expect(chart.locator(f"circle.alert-day[data-day='{site.supply_day.isoformat()}']")).to_have_count(1)
        await chart.screenshot(path=artifacts / "web-console-supply.png")
        await page.get_by_label("产品 Product", exact=True).fill("NO-SUCH-PRODUCT")
        await page.get_by_role("button", name="显示").click()
        await expect(page.locator("#supply-status")).to_contain_text("无数据")

        await page.screenshot(path=artifacts / "web-console.png", full_page=True)

        # Sign out: the cookie is gone and the console's routes answer 401.
        await page.get_by_role("button", name="退出").click()
        await expect(page.get_by_label("监管密钥")).to_be_visible()
        assert [c for c in await context.cookies() if c["name"] == "trace_console"] == []
        assert (await page.request.get("/console/api/alerts")).status == 401
    finally:
        await context.close()
    assert site.dialogs == []


async def test_console_refuses_forged_sign_in(site: Site) -> None:
    """Another site cannot sign a browser in (login CSRF): the form's token must match its cookie."""
    r = await site.client.post("/console/login", data={"key": site.regulator_key, "csrf": "guessed"})
    assert r.status_code == 403
    assert "trace_console=" not in r.headers.get("set-cookie", "")
    page = await site.client.get("/console")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = await site.client.post(
        "/console/login",
        data={"key": site.regulator_key, "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    token = r.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]  # each form gets a fresh token
    r = await site.client.post("/console/login", data={"key": site.regulator_key, "csrf": token})
    assert r.status_code == 303
    assert "HttpOnly" in r.headers["set-cookie"]
    assert "SameSite=strict" in r.headers["set-cookie"]
    try:
        # Signed in: the search knows operators and alerts as well as lots.
        found = (await site.client.get("/console/api/search", params={"code": site.pig["442000100001"]})).json()
        assert found["operator"]["name"] == "中山市定点屠宰厂"
        asf_alert = (await site.client.get("/console/api/alerts", params={"status": "open"})).json()["items"]
        [alert] = [a for a in asf_alert if a["subject"]["code"] == site.asf["SLBATCH0001"]]
        found = (await site.client.get("/console/api/search", params={"code": alert["id"]})).json()
        assert found["alert"]["rule"] == "asf_positive"
        assert (await site.client.get("/console/api/search", params={"code": "NOTHING1"})).status_code == 404
    finally:
        site.client.cookies.clear()


def test_cookie_is_secure_except_on_loopback_http() -> None:
    from starlette.requests import Request

    from trace_service.web import session

    def request(url: str) -> Request:
        scheme, _, rest = url.partition("://")
        host = rest.split("/", 1)[0]
        return Request({"type": "http", "scheme": scheme, "server": None, "path": "/console", "query_string": b"",
                        "headers": [(b"host", host.encode())], "method": "GET"})  # fmt: skip

    assert not session.secure(request("http://127.0.0.1:8000"))
    assert not session.secure(request("http://localhost:8000"))
    assert session.secure(request("https://trace.example.cn"))
    assert session.secure(request("http://10.1.2.3:8000"))
    assert not session.can_sign_in(request("http://10.1.2.3:8000"))
    assert session.session_cookie(request("https://trace.example.cn")) == "__Secure-trace_console"
    assert json.dumps(session.csrf_token("k")) != json.dumps(session.csrf_token("other"))


async def test_the_short_supply_day_raised_an_alert(site: Site) -> None:
    """The chart's alert day is a real alert in the queue (the market rules ran on the same data)."""
    regulator = {"Authorization": f"Bearer {site.regulator_key}"}

    async def raised() -> list[dict[str, Any]]:
        r = await site.client.get("/v1/alerts", params={"rule": "supply_drop"}, headers=regulator)
        return [a for a in r.json()["items"] if a["subject"]["code"].startswith(site.supply_market)]

    assert await wait_for(raised, timeout=10)
