"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) render in headless Chromium on a closed network.

The app runs on a real port; the browser aborts every request to any other host, so a page that needs
a CDN, a web font or an outside favicon would stay blank (and the aborted request is reported). The
app's settings point at no database and no broker: the docs pages need neither. Screenshots land in
``test-artifacts/`` (the ones in ``docs/img/docs-*.png`` are copies).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright, expect

from tests.conftest import make_settings
from tests.test_alert_stream import served
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, DESK


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it); never skipped")
    return CHROMIUM


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def base() -> AsyncIterator[str]:
    async with served(make_settings("postgresql+asyncpg://-/-", "-:9")) as url:
        yield url


class ClosedNetwork:
    """A page whose requests reach the test server only; everything else is aborted and remembered, and
    so is what the page's content security policy refused before any request was made."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.origin = urlsplit(base).netloc
        self.served: list[str] = []
        self.aborted: list[str] = []
        self.refused: list[str] = []
        page.on("console", self.console)

    def console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.refused.append(message.text)

    async def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc == self.origin:
            self.served.append(urlsplit(url).path)
            await route.continue_()
        else:
            self.aborted.append(url)
            await route.abort()


async def _closed_page(browser: Browser, base: str) -> ClosedNetwork:
    context = await browser.new_context(base_url=base, viewport=DESK, locale="en-US")
    page = await context.new_page()
    network = ClosedNetwork(page, base)
    await context.route("**/*", network.route)
    return network


async def test_swagger_ui_renders_with_no_outside_request(browser: Browser, base: str, artifacts: Path) -> None:
    network = await _closed_page(browser, base)
    page = network.page
    try:
        response = await page.goto("/docs")
        assert response is not None
        assert response.status == 200
        events = page.locator(".opblock-post", has=page.locator(".opblock-summary-path[data-path='/v1/events']"))
        await expect(events).to_be_visible(timeout=20_000)
        await expect(events.locator(".opblock-summary-method")).to_have_text("POST")
        await expect(page.locator(".opblock-summary-path[data-path='/v1/public/trace/{code}']")).to_be_visible()
        # Opened, it shows the request's named examples (one per event type) and the error answers.
        await events.locator(".opblock-summary").click()
        await expect(events.locator(".opblock-section-request-body .examples-select")).to_contain_text("retail.sold")
        await expect(events.locator(".response[data-code='422']")).to_be_visible()
        await events.scroll_into_view_if_needed()
        await page.screenshot(path=str(artifacts / "docs-swagger.png"))
        assert network.aborted == []
        assert network.refused == []
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "/docs-assets/swagger-ui/swagger-ui-bundle.js" in network.served
        assert "/openapi.json" in network.served
    finally:
        await page.context.close()


async def test_redoc_renders_with_no_outside_request(browser: Browser, base: str, artifacts: Path) -> None:
    network = await _closed_page(browser, base)
    page = network.page
    try:
        response = await page.goto("/redoc")
        assert response is not None
        assert response.status == 200
        # ReDoc titles each operation in the side menu and as a heading of its section.
        await expect(page.locator("h2", has_text="Post Events")).to_be_visible(timeout=30_000)
        await expect(page.get_by_role("menuitem").filter(has_text="Public Trace").first).to_be_attached()
        # The error answers are the contract's (contract/responses.py words their descriptions).
        await expect(page.get_by_text("Invalid input (fields, parameters or values)").first).to_be_attached()
        await page.locator("h2", has_text="Post Events").scroll_into_view_if_needed()
        await page.screenshot(path=str(artifacts / "docs-redoc.png"))
        assert network.aborted == []
        # ReDoc 2 shows its maker's logo from its CDN in the side menu; the page's policy refuses it
        # before a request is made (the image then hides itself). Nothing else may be refused.
        assert all("cdn.redoc.ly/redoc/logo-mini.svg" in text for text in network.refused), network.refused
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "/docs-assets/redoc/redoc.standalone.js" in network.served
        assert "/openapi.json" in network.served
    finally:
        await page.context.close()
