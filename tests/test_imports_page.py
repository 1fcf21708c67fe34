"""Imported meat on the consumer's view and page (issue 14): the country of origin and the port of entry, in
Chinese and English, the import checks, and a broken cold chain as a warning.

The chains are the scenario files: ``import_chain`` (frozen Brazilian beef through Nansha and a cold store to
a stall), its faulty twin ``faults/cold_chain_break`` (the cold store's readings above -15 °C for 45 minutes)
and ``pig_chain`` (domestic pork, which shows none of it). The page is checked in headless Debian Chromium
as ``tests/test_consumer_page.py`` does, layout included; the screenshots go to ``test-artifacts/img/``
(``docs/img/`` with ``TRACE_UPDATE_DOCS_IMAGES=1``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import ADMIN_TOKEN, _asyncpg_args, make_settings, running_worker
from tests.support import scenario_tag, wait_for
from tests.test_alert_stream import served
from tests.test_consumer_page import _check_layout, _open, _phone, _replay, browser, chromium_path
from trace_service.alerts.models import alert_id
from trace_service.chain import scenarios
from trace_service.chain.models import PublicTrace

__all__ = ["browser", "chromium_path"]  # fixtures of test_consumer_page, used here

SALE = "SALEIMP2026112500001"
IMPORTED = "IMPLOT0001"


@dataclass
class ImportSite:
    base: str
    imported: str  # a sale of the clean imported chain
    broken: str  # a sale of the chain whose cold store broke the cold chain
    broken_lot: str
    domestic: str  # a pork sale of the domestic pig chain
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def import_site(database_url: str, broker_bootstrap: str) -> AsyncIterator[ImportSite]:
    settings = make_settings(database_url, broker_bootstrap)
    async with (
        running_worker(settings),
        served(settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as client,
    ):
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        clean = scenarios.instantiate(scenarios.load("import_chain"), scenario_tag())
        await _replay(client, admin, clean)
        broken = scenarios.instantiate(scenarios.load("faults/cold_chain_break"), scenario_tag())
        await _replay(client, admin, broken)
        pigs = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
        await _replay(client, admin, pigs)
        site = ImportSite(
            base,
            imported=clean["mapping"][SALE],
            broken=broken["mapping"][SALE],
            broken_lot=broken["mapping"][IMPORTED],
            domestic=pigs["mapping"]["SALE2026112500001"],
        )
        db = await asyncpg.connect(**_asyncpg_args(database_url))  # type: ignore[arg-type]
        try:
            wanted = alert_id("cold_chain_break", "lot", site.broken_lot)
            codes = [site.imported, site.broken, site.domestic]

            async def ready() -> bool:
                sales = await db.fetchval("SELECT count(*) FROM lots WHERE code = ANY($1::text[])", codes)
                alert = await db.fetchval("SELECT count(*) FROM alerts WHERE id = $1", wanted)
                return bool(sales == len(codes) and alert == 1)

            await wait_for(ready, timeout=30, interval=0.2)
        finally:
            await db.close()
        yield site


async def _view(site: ImportSite, code: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=site.base) as client:
        r = await client.get(f"/v1/public/trace/{code}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    PublicTrace.model_validate(body)  # the documented schema (tests/test_openapi.py checks the same generally)
    assert set(body) == set(PublicTrace.model_fields)
    return body


# -- the public view ---------------------------------------------------------------------------------------


async def test_the_view_of_imported_meat_names_its_country_and_port(import_site: ImportSite) -> None:
    view = await _view(import_site, import_site.imported)
    assert view["origin_country"] == "BR"
    assert view["origin_country_name"] == {"zh": "巴西", "en": "Brazil"}
    assert view["entry_port"] == "南沙港"
    assert view["product"]["name"] == "冷冻去骨牛肉"
    # Customs entry, both certificates (the disinfection one supplied after clearance), readings recorded and
    # none above the limit: every check passed, no warning.
    assert view["checks"] == {
        "customs": "pass",
        "entry_inspection": "pass",
        "disinfection": "pass",
        "cold_chain": "pass",
    }
    assert view["warning"] is None
    assert view["status"] == "passed"
    assert view["origin"] is None  # a GB/T 2260 region is a domestic origin; an import has a country
    # Nothing private: no certificate or declaration number, no operator code of the importer.
    text = str(view)
    assert not re.search(r"CD5120|IQ5120|DS5120", text), text


async def test_a_broken_cold_chain_is_a_warning(import_site: ImportSite) -> None:
    view = await _view(import_site, import_site.broken)
    assert view["origin_country"] == "BR"
    assert view["checks"]["cold_chain"] == "fail"
    assert view["warning"]["level"] == "cold_chain"
    assert view["warning"]["reasons"] == ["cold_chain_break"]
    assert "冷链中断" in view["warning"]["zh"]
    assert "cold chain broken" in view["warning"]["en"]
    assert view["status"] == "failed"


async def test_a_domestic_sale_shows_no_import(import_site: ImportSite) -> None:
    view = await _view(import_site, import_site.domestic)
    assert (view["origin_country"], view["origin_country_name"], view["entry_port"]) == (None, None, None)
    assert not {"customs", "entry_inspection", "disinfection", "cold_chain"} & set(view["checks"])
    assert view["origin"]["kind"] == "farm"  # a domestic origin: a region of China


# -- the page ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "country", "port", "check"), [
    ("zh", "巴西", "南沙港", "入境货物检验检疫证明"),
    ("en", "Brazil", "Nansha Port", "Entry inspection and quarantine certificate"),
])  # fmt: skip
async def test_the_page_of_imported_meat(
    import_site: ImportSite, browser: Browser, lang: str, country: str, port: str, check: str
) -> None:
    context = await _phone(browser, import_site, 360)  # type: ignore[arg-type]
    try:
        page = await context.new_page()
        await _open(page, f"/t/{import_site.imported}", lang)
        step = page.locator(".step-import")
        await expect(step).to_have_count(1)
        await expect(step.locator("h2")).to_have_text("进口入境" if lang == "zh" else "Import")
        label = "原产国" if lang == "zh" else "Country of origin"
        await expect(step.locator(".fact", has_text=label).locator("dd")).to_have_text(country)
        label = "入境口岸" if lang == "zh" else "Port of entry"
        await expect(step.locator(".fact", has_text=label).locator("dd")).to_have_text(port)
        await expect(step.locator('[data-check="entry_inspection"]')).to_contain_text(check)
        await expect(step.locator(".badge.pass")).to_have_count(4)
        await expect(page.locator(".verdict")).to_have_attribute("data-status", "passed")
        await expect(page.get_by_role("alert")).to_have_count(0)
        # The import comes first: the page reads from the port to the stall.
        assert await page.locator(".timeline > li").first.get_attribute("class") == "step step-import"
        await _check_layout(page, f"consumer-imported-{lang}-360")
    finally:
        await context.close()
    assert import_site.dialogs == []


async def test_the_page_of_a_broken_cold_chain(import_site: ImportSite, browser: Browser) -> None:
    context = await _phone(browser, import_site, 360)  # type: ignore[arg-type]
    try:
        page = await context.new_page()
        await _open(page, f"/t/{import_site.broken}", "zh")
        warning = page.get_by_role("alert")
        await expect(warning).to_have_count(1)
        await expect(warning.locator("h2")).to_contain_text("冷链中断")
        await expect(warning).to_contain_text("温度超标")
        await expect(page.locator('.step-import [data-check="cold_chain"]')).to_have_class(re.compile(r"\bfail\b"))
        await expect(page.locator(".verdict")).to_have_attribute("data-status", "failed")
        await expect(page.locator(".verdict")).to_contain_text("冷链温度")
        await _check_layout(page, "consumer-cold-chain-zh-360")
        await _open(page, f"/t/{import_site.broken}", "en")
        await expect(page.get_by_role("alert").locator("h2")).to_contain_text("Cold chain broken")
        await _check_layout(page, "consumer-cold-chain-en-360")
    finally:
        await context.close()
    assert import_site.dialogs == []


async def test_the_page_of_a_domestic_sale_shows_no_import(import_site: ImportSite, browser: Browser) -> None:
    context = await _phone(browser, import_site, 360)  # type: ignore[arg-type]
    try:
        page = await context.new_page()
        for lang in ("zh", "en"):
            await _open(page, f"/t/{import_site.domestic}", lang)
            await expect(page.locator(".step-origin")).to_have_count(1)
            await expect(page.locator(".step-import")).to_have_count(0)
            content = await page.content()
            assert "原产国" not in content and "Country of origin" not in content  # noqa: PT018
            assert "入境口岸" not in content and "Port of entry" not in content  # noqa: PT018
    finally:
        await context.close()
