"""The public market bulletin's page, ``/market``: server-rendered, Chinese first with an English toggle,
the 30-day chart drawn as inline SVG, no script, so that it works with JavaScript off.

It renders exactly what ``GET /v1/public/market`` gives (``market.bulletin``, called in process): city-wide
figures only. The console's supply routes live in :mod:`trace_service.web.console_market`, included here.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Response

from trace_service.access.http import CurrentSettings, ReadOnly
from trace_service.errors import InvalidInput
from trace_service.market import bulletin
from trace_service.web import market_views, templates, views
from trace_service.web.console_market import router as console_router

router = APIRouter(include_in_schema=False)
router.include_router(console_router)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_day(value: str | None) -> tuple[date | None, bool]:
    """The day asked for, and whether it was unusable (then the latest day is shown, with a notice)."""
    if not value:
        return None, False
    if not _DAY.fullmatch(value):
        return None, True
    try:
        return date.fromisoformat(value), False
    except ValueError:
        return None, True


@router.get("/market")
async def market_page(
    settings: CurrentSettings,
    conn: ReadOnly,
    date_: Annotated[str | None, Query(alias="date", max_length=20)] = None,
    product: Annotated[str | None, Query(max_length=32)] = None,
    lang: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """The city's market bulletin of a finished day (default yesterday)."""
    language = views.parse_lang(lang)
    wanted, bad = _parse_day(date_)
    try:
        data = await bulletin.bulletin(conn, settings, wanted)
    except InvalidInput:
        data, bad = await bulletin.bulletin(conn, settings, None), True
    return templates.render(
        "market.html",
        cache=bulletin.CACHE_CONTROL,
        lang=language,
        t=lambda key, **values: market_views.text(key, language, **values),
        latest=bulletin.last_finished_day(settings).isoformat(),
        page=market_views.page(data, language, product, bad_date=bad),
    )
