"""What a consumer and an integrator meet first (issue 15): the codes the service takes, and the trace page.

Codes (contract section 1): another platform's 20-digit code is taken as it is, a code under the prefix of
an issuer of this service must be a well-formed issued code (the API answers 422, the worker dead-letters
it alike), and codes are case-insensitive wherever a consumer or a client looks one up.

The page, in headless Debian Chromium (as ``tests/test_web.py`` drives it): one test per state (normal,
held upstream, unknown code, lower-case code) and the layouts at 320, 360 and 414 px in Chinese and
English, each checked in the page for boxes that overflow and labels or dates that wrap. The screenshots
go to ``docs/img/consumer-<state>-<lang>-<width>.png``.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import segno
from playwright.async_api import Browser, BrowserContext, Dialog, Page, async_playwright, expect

from tests.conftest import ADMIN_TOKEN, make_settings, running_worker
from tests.support import Actors, as_api, harvested_event, post_events, produce, scenario_tag, wait_for
from tests.test_alert_stream import served
from tests.test_web import CHROMIUM, CHROMIUM_ARGS
from trace_service.api.app import create_app
from trace_service.chain import scenarios
from trace_service.contract.codes import gs1_check_digit
from trace_service.contract.events import LOT_FIELDS, EventType, build_catalogue
from trace_service.settings import Settings

# Screenshots go to test-artifacts/; with TRACE_UPDATE_DOCS_IMAGES=1 they replace the ones in docs/img/ (the
# README's), so that an ordinary test run leaves the working tree as it found it.
IMG = Path(__file__).resolve().parent.parent / (
    "docs/img" if os.environ.get("TRACE_UPDATE_DOCS_IMAGES") == "1" else "test-artifacts/img"
)
WIDTHS = (320, 360, 414)
HEIGHT = 800
STALL = "A区12号"
HELD_STALL = "B-07"


# -- the lot fields of the contract ----------------------------------------------------------------------


def _lot_paths(schema: dict[str, Any], node: dict[str, Any], lot_pattern: str, prefix: str) -> set[str]:
    """Dotted paths (``*`` for list items) of every string property with the lot pattern, however nested."""
    if "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    found: set[str] = set()
    for option in node.get("anyOf", []):
        found |= _lot_paths(schema, option, lot_pattern, prefix)
    if node.get("type") == "string" and node.get("pattern") == lot_pattern:
        found.add(prefix)
    if node.get("type") == "array":
        found |= _lot_paths(schema, node["items"], lot_pattern, f"{prefix}.*")
    for name, child in node.get("properties", {}).items():
        found |= _lot_paths(schema, child, lot_pattern, f"{prefix}.{name}" if prefix else name)
    return found


def test_every_lot_code_field_is_listed() -> None:
    """``LOT_FIELDS`` names exactly the fields the models type as lot codes, so the issued-code check (which
    runs after validation, over those fields) cannot miss a new one."""
    catalogue = build_catalogue()
    assert set(LOT_FIELDS) == {e.value for e in EventType}
    for event_type, model in catalogue.data_models.items():
        schema = model.model_json_schema()
        assert _lot_paths(schema, schema, catalogue.patterns.lot, "") == set(LOT_FIELDS[event_type]), event_type


# -- codes through the API and the worker ------------------------------------------------------------------


def _with_wrong_digit(body: str) -> str:
    """A 20-digit code whose last digit is not the GS1 check digit of the 19 before it."""
    assert len(body) == 19
    return body + str((gs1_check_digit(body) + 1) % 10)


async def _issued(client: httpx.AsyncClient, key: dict[str, str]) -> str:
    r = await client.post("/v1/codes", json={"count": 1}, headers=key)
    assert r.status_code == 201, r.text
    issued: str = r.json()["codes"][0]
    return issued


async def test_another_platforms_20_digit_code_is_taken_as_it_is(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    base, key = await actors.operator_with_key(kind="planting_base")
    # A national-platform style code: region first, no GS1 check digit. 442000 is no issuer's sequence.
    foreign = _with_wrong_digit("442000" + "".join(secrets.choice("0123456789") for _ in range(13)))
    event = harvested_event(base)
    event["data"]["lot"] = foreign
    body = (await post_events(client, key, [event])).json()
    assert body["events"][0]["status"] == "applied"

    regulator = await actors.staff_key("regulator")
    r = await client.get(f"/v1/lots/{foreign}/trace?direction=up", headers=regulator)
    assert r.status_code == 200, r.text
    assert [lot["code"] for lot in r.json()["lots"]] == [foreign]
    view = (await client.get(f"/v1/public/trace/{foreign}")).json()
    assert view["code"] == foreign
    assert view["product"]["name"] == "菜心"
    page = await client.get(f"/t/{foreign}")
    assert page.status_code == 200
    assert foreign in page.text
    assert "菜心" in page.text


async def test_a_code_under_an_issuers_prefix_must_be_a_well_formed_issued_code(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    base, key = await actors.operator_with_key(kind="planting_base")
    issued = await _issued(client, key)
    wrong = _with_wrong_digit(issued[:19])

    # A code the service issued is taken.
    event = harvested_event(base)
    event["data"]["lot"] = issued
    assert (await post_events(client, key, [event])).json()["events"][0]["status"] == "applied"

    # The same prefix with a wrong check digit: 422 on the field, with the digit it should have been.
    bad = harvested_event(base)
    bad["data"]["lot"] = wrong
    r = await client.post("/v1/events", json=bad, headers=key)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid"
    [detail] = error["details"]
    assert (detail["field"], detail["type"]) == ("data.lot", "issued_code_invalid")
    assert f"expected {issued[-1]}" in detail["message"]
    assert "check digit" in detail["message"]

    # In a batch the detail has the item's index, and nothing of the batch is accepted.
    tested = {
        "event_id": str(uuid.uuid4()),
        "event_type": "lot.tested",
        "occurred_at": "2026-11-25T06:00:00+08:00",
        "operator": base,
        "data": {"lot": issued, "test": "pesticide_rapid", "method": "enzyme", "result": "pass"},
    }
    received = {
        "event_id": str(uuid.uuid4()),
        "event_type": "trade.received",
        "occurred_at": "2026-11-25T06:00:00+08:00",
        "operator": base,
        "data": {
            "voucher_number": "V-" + scenario_tag(),
            "seller": base,
            "lines": [{"lot": "RC" + scenario_tag() + "0001", "from_lot": wrong, "weight_kg": 5.0}],
            "documents": {},
        },
    }
    r = await client.post("/v1/events", json=[tested, received], headers=key)
    assert r.status_code == 422, r.text
    assert [(d["index"], d["field"]) for d in r.json()["error"]["details"]] == [(1, "data.lines.0.from_lot")]
    assert (await client.get(f"/v1/events/{tested['event_id']}", headers=key)).status_code == 404

    # A regulator's key gets the same answer: the check is validation, not ownership.
    regulator = await actors.staff_key("regulator")
    hold = {**tested, "event_id": str(uuid.uuid4()), "event_type": "regulator.lot_held"}
    hold["data"] = {"lot": wrong, "reason": "复检", "scope": "lot"}
    r = await client.post("/v1/events", json=hold, headers=regulator)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "data.lot"


async def test_the_worker_refuses_a_misissued_code_as_the_api_does(
    client: httpx.AsyncClient, actors: Actors, worker: None, settings: Settings, db: asyncpg.Connection
) -> None:
    base, key = await actors.operator_with_key(kind="planting_base")
    wrong = _with_wrong_digit((await _issued(client, key))[:19])
    event = harvested_event(base)
    event["data"]["lot"] = wrong
    foreign = harvested_event(base)
    foreign["data"]["lot"] = _with_wrong_digit("310000" + "".join(secrets.choice("0123456789") for _ in range(13)))
    # Straight onto the topic, signed as the API signs a regulator's events: only the worker decides.
    await produce(settings, as_api(settings, [event, foreign]))

    async def dead() -> asyncpg.Record | None:
        return await db.fetchrow(
            "SELECT error_code, details FROM dead_letters WHERE event_id = $1", uuid.UUID(event["event_id"])
        )

    row = await wait_for(dead)
    assert row["error_code"] == "invalid_event"
    [detail] = json.loads(row["details"])
    assert (detail["field"], detail["type"]) == ("data.lot", "issued_code_invalid")
    status = (await client.get(f"/v1/events/{event['event_id']}", headers=key)).json()
    assert (status["status"], status["reason"]) == ("rejected", "invalid_event")

    async def applied() -> bool:
        r = await client.get(f"/v1/events/{foreign['event_id']}", headers=key)
        return r.status_code == 200 and r.json()["status"] == "applied"

    await wait_for(applied)


async def test_codes_are_case_insensitive(
    client: httpx.AsyncClient, actors: Actors, worker: None, settings: Settings
) -> None:
    sc = scenarios.instantiate(scenarios.load("produce_chain"), scenario_tag())
    for op in sc["operators"]:
        r = await client.post("/v1/operators", json=op, headers=actors.admin)
        assert r.status_code == 201, r.text
    await post_events(client, actors.admin, sc["events"])
    sale = sc["mapping"]["SALEV2026112500001"]
    lower = sale.lower()
    assert lower != sale

    public = await client.get(f"/v1/public/trace/{lower}")
    assert public.status_code == 200, public.text
    assert public.json()["code"] == sale
    regulator = await actors.staff_key("regulator")
    lot = await client.get(f"/v1/lots/{lower}", headers=regulator)
    assert lot.status_code == 200, lot.text
    assert lot.json()["code"] == sale
    assert (await client.get(f"/v1/lots/{lower}/trace", headers=regulator)).json()["root"] == sale

    # The page redirects to its one address (path only: no Host header is ever echoed), the QR code is the
    # canonical page's whatever the letter case asked for.
    r = await client.get(f"/t/{lower}?lang=en", headers={"Host": "evil.example"})
    assert r.status_code == 301
    assert r.headers["location"] == f"/t/{sale}?lang=en"
    assert (await client.get(f"/t/{lower}")).headers["location"] == f"/t/{sale}"
    upper_qr = await client.get(f"/t/{sale}/qr.svg")
    lower_qr = await client.get(f"/t/{lower}/qr.svg")
    assert lower_qr.status_code == 200
    assert lower_qr.content == upper_qr.content
    # The look-up form's answer goes to the same address.
    r = await client.get(f"/t?code= {lower} ")
    assert r.status_code == 303
    assert r.headers["location"] == f"/t/{sale}?lang=zh"


def _expected_qr(url: str) -> bytes:
    out = io.BytesIO()
    segno.make(url, error="m", micro=False).save(out, kind="svg", scale=4, border=4, xmldecl=True)
    return out.getvalue()


async def test_the_qr_code_encodes_the_public_base_url(database_url: str, broker_bootstrap: str) -> None:
    settings = make_settings(database_url, broker_bootstrap, public_base_url="https://trace.zs.example/gov/")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.7:8000") as client:
            code = "SALE" + scenario_tag() + "20261125"
            for asked in (code, code.lower()):
                r = await client.get(f"/t/{asked}/qr.svg", headers={"Host": "evil.example", "X-Forwarded-Host": "x"})
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("image/svg+xml")
                # segno is deterministic: the same URL gives the same SVG, so this pins the payload.
                assert r.content == _expected_qr(f"https://trace.zs.example/gov/t/{code}")
                assert r.content != _expected_qr(f"http://evil.example/t/{code}")


# -- the page in a browser ---------------------------------------------------------------------------------


@dataclass
class ConsumerSite:
    base: str
    normal: str  # a pork sale, with a stall label and a wholesaler as supplier
    held: str  # a pork sale whose carcass a regulator holds (every check passed)
    vegetables: str  # a vegetable sale with a dated pesticide test
    dialogs: list[str] = field(default_factory=list)


async def _replay(client: httpx.AsyncClient, admin: dict[str, str], sc: dict[str, Any]) -> None:
    for op in sc["operators"]:  # parents first, as the scenario files list them
        r = await client.post("/v1/operators", json=op, headers=admin)
        assert r.status_code == 201, r.text

        async def visible(code: str = op["code"]) -> bool:
            return (await client.get(f"/v1/operators/{code}", headers=admin)).status_code == 200

        await wait_for(visible, timeout=10, interval=0.02)
    await post_events(client, admin, sc["events"])


def _pig_chain(stall: str) -> dict[str, Any]:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    for event in sc["events"]:
        if event["event_type"] == "retail.sold":
            event["data"]["stall"] = stall
    return sc


@pytest.fixture(scope="module")
async def consumer_site(database_url: str, broker_bootstrap: str) -> AsyncIterator[ConsumerSite]:
    settings = make_settings(database_url, broker_bootstrap)
    async with (
        running_worker(settings),
        served(settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        normal = _pig_chain(STALL)
        await _replay(client, admin, normal)
        held = _pig_chain(HELD_STALL)
        await _replay(client, admin, held)
        hold = {
            "event_id": str(uuid.uuid4()),
            "event_type": "regulator.lot_held",
            "occurred_at": "2026-11-25T09:30:00+08:00",
            "operator": held["mapping"]["442000100001"],
            "data": {"lot": held["mapping"]["CARCASS0001"], "reason": "抽检复核", "scope": "downstream"},
        }
        await post_events(client, admin, [hold])
        vegetables = scenarios.instantiate(scenarios.load("produce_chain"), scenario_tag())
        await _replay(client, admin, vegetables)
        yield ConsumerSite(
            base,
            normal=normal["mapping"]["SALE2026112500001"],
            held=held["mapping"]["SALE2026112500001"],
            vegetables=vegetables["mapping"]["SALEV2026112500001"],
        )


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it); never skipped")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _phone(browser: Browser, site: ConsumerSite, width: int) -> BrowserContext:
    context = await browser.new_context(
        base_url=site.base,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport={"width": width, "height": HEIGHT},
        device_scale_factor=2,
    )

    async def on_dialog(dialog: Dialog) -> None:
        site.dialogs.append(dialog.message)
        await dialog.dismiss()

    context.on("page", lambda page: page.on("dialog", on_dialog))
    return context


# Text that must stay on one line: labels, dates, check results, the language switch, headings of steps.
ONE_LINE = ".facts dt, .facts dd.when, .badge .result, .verdict .mark, .lang-switch, .brand, .step h2, .lookup button"

# Every problem of the layout, found in the page itself: the page wider than the viewport, an element
# leaving the viewport or its parent's box, content overflowing its box (scrollWidth beyond clientWidth),
# and any ONE_LINE element whose text takes more than one line.
LAYOUT_PROBLEMS = """
(oneLine) => {
  const vw = document.documentElement.clientWidth;
  const problems = [];
  const name = (el) => el.tagName.toLowerCase() + (el.classList.length ? "." + [...el.classList].join(".") : "")
    + " '" + (el.textContent || "").trim().replace(/\\s+/g, " ").slice(0, 40) + "'";
  if (document.documentElement.scrollWidth > vw) {
    problems.push(`the page is ${document.documentElement.scrollWidth}px wide in a ${vw}px viewport`);
  }
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;
    if (box.left < -0.5 || box.right > vw + 0.5) {
      problems.push(`${name(el)} leaves the viewport (${box.left.toFixed(1)}..${box.right.toFixed(1)})`);
    }
    if (style.display !== "inline" && el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name(el)} overflows its box (${el.scrollWidth} > ${el.clientWidth})`);
    }
    const parent = el.parentElement;
    if (parent && parent !== document.body && getComputedStyle(parent).display !== "inline") {
      const outer = parent.getBoundingClientRect();
      if (box.left < outer.left - 0.5 || box.right > outer.right + 0.5) {
        problems.push(`${name(el)} sticks out of ${name(parent)}`);
      }
    }
  }
  for (const el of document.querySelectorAll(oneLine)) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0).sort((a, b) => a.top - b.top);
    let lines = 0, lineTop = -Infinity, lineHeight = 0;
    for (const r of rects) {
      if (r.top >= lineTop + lineHeight / 2) { lines += 1; lineTop = r.top; lineHeight = r.height; }
    }
    if (lines > 1) problems.push(`${name(el)} wraps onto ${lines} lines`);
  }
  return problems;
}
"""


async def _check_layout(page: Page, shot: str) -> None:
    assert await page.locator(ONE_LINE).count() > 0
    problems = await page.evaluate(LAYOUT_PROBLEMS, ONE_LINE)
    IMG.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=IMG / f"{shot}.png", full_page=True)
    assert problems == [], problems


async def _open(page: Page, path: str, lang: str) -> None:
    response = await page.goto(f"{path}?lang={lang}" if lang == "en" else path)
    assert response is not None
    assert response.status == 200


async def test_the_normal_page(consumer_site: ConsumerSite, browser: Browser) -> None:
    context = await _phone(browser, consumer_site, 360)
    try:
        page = await context.new_page()
        await _open(page, f"/t/{consumer_site.normal}", "zh")
        await expect(page.locator(".verdict")).to_have_attribute("data-status", "passed")
        await expect(page.locator(".verdict")).to_have_text(re.compile("各项检测与证明均合格"))
        await expect(page.get_by_role("alert")).to_have_count(0)
        sale = page.locator(".step-sale")
        await expect(sale.locator(".fact", has_text="摊位")).to_contain_text(STALL)
        await expect(page.locator(".step-market .fact", has_text="供货方")).to_contain_text("批发商A101")
        contact = page.locator("section.contact")
        await expect(contact).to_contain_text("请到中山市石岐综合市场服务台咨询")
        await expect(contact).to_contain_text("市场监管投诉举报电话 12315")
        content = await page.content()
        assert "李某某" not in content and "JY-100001" not in content  # noqa: PT018
        assert not re.search(r"\b44200030\d{4}\b", content), "an operator code is shown as the stall"
        await _check_layout(page, "consumer-normal-zh-360")
        await page.screenshot(path=IMG / "consumer-page.png", full_page=True)  # the README's picture
    finally:
        await context.close()
    assert consumer_site.dialogs == []


async def test_the_page_of_a_sale_held_upstream(consumer_site: ConsumerSite, browser: Browser) -> None:
    """Every check passed, but a regulator holds the carcass: the page says stopped, never "all passed"."""
    context = await _phone(browser, consumer_site, 360)
    try:
        page = await context.new_page()
        await _open(page, f"/t/{consumer_site.held}", "zh")
        warning = page.get_by_role("alert")
        await expect(warning).to_contain_text("请勿食用")
        await expect(warning).to_contain_text("原因：监管部门控制")
        await expect(warning).to_contain_text("请到中山市石岐综合市场服务台咨询")
        await expect(warning).to_contain_text("12315")
        verdict = page.locator(".verdict")
        await expect(verdict).to_have_attribute("data-status", "stopped")
        await expect(verdict).to_have_text(re.compile("已暂停销售"))
        assert "均合格" not in await page.locator("main").inner_text()
        await expect(page.locator("li.badge.fail[data-check='sale']")).to_contain_text("暂停销售")
        await expect(page.locator(".step-sale")).to_contain_text(HELD_STALL)
        await _check_layout(page, "consumer-stopped-zh-360")

        await _open(page, f"/t/{consumer_site.held}", "en")
        await expect(page.get_by_role("alert")).to_contain_text("held by the regulator")
        await expect(page.locator(".verdict")).to_have_text(re.compile("Sale stopped"))
        await expect(page.locator("li.badge.fail[data-check='sale']")).to_contain_text("Stopped")
        await _check_layout(page, "consumer-stopped-en-360")
    finally:
        await context.close()


async def test_the_page_of_an_unknown_code(consumer_site: ConsumerSite, browser: Browser) -> None:
    context = await _phone(browser, consumer_site, 360)
    try:
        page = await context.new_page()
        response = await page.goto("/t/NOSUCHCODE20261125")
        assert response is not None
        assert response.status == 404
        await expect(page.locator("h1")).to_have_text("未找到该追溯码")
        await expect(page.locator("section.contact")).to_contain_text("12315")
        await _check_layout(page, "consumer-not-found-zh-360")
        await page.goto("/t/NOSUCHCODE20261125?lang=en")
        await expect(page.locator("h1")).to_have_text("Trace code not found")
        await _check_layout(page, "consumer-not-found-en-360")
    finally:
        await context.close()


async def test_the_page_of_a_code_typed_in_lower_case(consumer_site: ConsumerSite, browser: Browser) -> None:
    context = await _phone(browser, consumer_site, 360)
    try:
        page = await context.new_page()
        response = await page.goto(f"/t/{consumer_site.normal.lower()}?lang=en")
        assert response is not None
        assert response.status == 200
        await expect(page).to_have_url(f"{consumer_site.base}/t/{consumer_site.normal}?lang=en")
        await expect(page.locator("dd.code")).to_have_text(consumer_site.normal)
        await expect(page.locator(".step-sale")).to_contain_text(STALL)
        await _check_layout(page, "consumer-lowercase-en-360")
    finally:
        await context.close()


async def test_english_at_320_px(consumer_site: ConsumerSite, browser: Browser) -> None:
    context = await _phone(browser, consumer_site, 320)
    try:
        page = await context.new_page()
        for state, code in (("normal", consumer_site.normal), ("vegetables", consumer_site.vegetables)):
            await _open(page, f"/t/{code}", "en")
            await expect(page.locator("html")).to_have_attribute("lang", "en")
            await expect(page.locator(".step-slaughter, .step-origin").first).to_be_visible()
            await _check_layout(page, f"consumer-{state}-en-320")
        await expect(page.locator(".step-market")).to_contain_text("Tested")
        await _open(page, f"/t/{consumer_site.held}", "en")
        await _check_layout(page, "consumer-stopped-en-320")
    finally:
        await context.close()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_layouts(consumer_site: ConsumerSite, browser: Browser, width: int, lang: str) -> None:
    context = await _phone(browser, consumer_site, width)
    try:
        page = await context.new_page()
        for state, code in (("normal", consumer_site.normal), ("stopped", consumer_site.held)):
            await _open(page, f"/t/{code}", lang)
            await _check_layout(page, f"consumer-{state}-{lang}-{width}")
        # The vegetable page and the look-up form: checked, not kept as pictures.
        await _open(page, f"/t/{consumer_site.vegetables}", lang)
        assert await page.evaluate(LAYOUT_PROBLEMS, ONE_LINE) == []
        await page.goto(f"/t?lang={lang}")
        assert await page.evaluate(LAYOUT_PROBLEMS, ONE_LINE) == []
    finally:
        await context.close()
