"""Routes of the pages: the consumer's trace page and QR code, and the regulator console with the small
JSON routes its script calls (``/console/api/...``: the console's cookie instead of a bearer header, the
same services as the API behind them).

Nothing here computes lineage, alerts or supply figures itself: it calls the services the API calls.
"""

from __future__ import annotations

import contextlib
import io
import re
from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import segno
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import service as access
from trace_service.access.http import CurrentSettings, ReadOnly, get_engine, unit_of_work
from trace_service.access.models import Role
from trace_service.alerts import service as alerts
from trace_service.alerts.endpoints import AlertId, Note, alert_event_stream
from trace_service.alerts.service import AlertStream
from trace_service.chain import endpoints as chain_endpoints
from trace_service.chain.endpoints import Code, ReadEngine
from trace_service.chain.service import VIEWS, ChainService, fresh_public_view
from trace_service.contract.events import storable_text
from trace_service.errors import DomainError, Forbidden, InvalidInput, NotFound, Unauthorized
from trace_service.market import service as market
from trace_service.settings import Settings
from trace_service.web import session, templates, views
from trace_service.web.session import Session

router = APIRouter(include_in_schema=False)

Engine = Annotated[AsyncEngine, Depends(get_engine)]
# The API's unit of work, ended before the response is sent: a page that changed something and the next
# request the browser makes must see the change committed (FastAPI's default ends it after the response).
UnitOfWork = Annotated[AsyncConnection, Depends(unit_of_work, scope="function")]
Lot = Code  # the API's lot code path parameter: the same format, any letter case
MAX_FORM_BYTES = 8192
MAX_FORM_FIELDS = 10  # the console's forms have two or three
SHOWN_CODE_CHARS = 64  # what a not-found page echoes of a code typed into the address bar


def static_files() -> StaticFiles:
    """The pages' CSS and JavaScript, served by the service itself (closed networks: no outside host)."""
    return StaticFiles(directory=templates.STATIC)


def is_page(path: str) -> bool:
    """Whether a browser navigates to ``path`` (an HTML page), as opposed to calling it from a script."""
    if path == "/t" or (path.startswith("/t/") and not path.endswith("/qr.svg")):
        return True
    return path in ("/console", "/console/login", "/console/logout", "/market")


def unavailable_page(retry_after: int, headers: dict[str, str]) -> Response:
    """The page of a 503: a dependency is down. Small, static, and it tells when to try again."""
    response = templates.render("unavailable.html", status=503, cache="no-store", lang="zh", retry_after=retry_after)
    response.headers.update(headers)
    return response


def public_url(settings: Settings, path: str) -> str:
    """The address of ``path`` as the public knows the service (``TRACE_PUBLIC_BASE_URL``), never as the
    request's ``Host`` header says: a forged header must not end up printed on a label."""
    return settings.public_base_url.rstrip("/") + path


def public_path(settings: Settings, path: str) -> str:
    """A redirect target: the public base URL's path before ``path``, without scheme and host, so the
    browser stays on the address it used (a dev server on another port, a proxy's own name) and no
    ``Host`` header is ever echoed."""
    return urlsplit(settings.public_base_url).path.rstrip("/") + path


# -- the consumer's page ---------------------------------------------------------------------------


def _lang_links(lang: views.Lang) -> dict[str, str]:
    other = "en" if lang == "zh" else "zh"
    return {"href": f"?lang={other}", "label": views.text("switch", lang), "lang": "en" if other == "en" else "zh-CN"}


def _hotline(settings: Settings, lang: views.Lang) -> str:
    return settings.consumer_contact if lang == "zh" else settings.consumer_contact_en


def _not_found(settings: Settings, code: str | None, lang: views.Lang, *, status: int = 404) -> Response:
    return templates.render(
        "not_found.html",
        status=status,
        lang=lang,
        t=lambda key: views.text(key, lang),
        switch=_lang_links(lang),
        code=code[:SHOWN_CODE_CHARS] if code else None,
        contact=views.contact(None, lang, _hotline(settings, lang)),
    )


def canonical_code(settings: Settings, code: str) -> str | None:
    """The code as the service stores it (codes are case-insensitive on input, contract section 1), or None
    when it cannot be a lot or sale code at all."""
    upper = code.upper()
    return upper if re.fullmatch(settings.codes.lot, upper) else None


@router.get("/t")
async def lookup(
    settings: CurrentSettings,
    code: Annotated[str | None, Query(max_length=200)] = None,
    lang: Annotated[str | None, Query(max_length=10)] = None,
) -> Response:
    """The form to type a code in (and where it sends a typed code)."""
    language = views.parse_lang(lang)
    if code is None or not code.strip():
        return _not_found(settings, None, language, status=200)
    wanted = canonical_code(settings, re.sub(r"\s+", "", code))
    if wanted is None:
        return _not_found(settings, code, language)
    return RedirectResponse(public_path(settings, f"/t/{quote(wanted)}?lang={language}"), status_code=303)


@router.get("/t/{code}", name="consumer_trace")
async def consumer_trace(
    code: str,
    settings: CurrentSettings,
    engine: ReadEngine,
    lang: Annotated[str | None, Query(max_length=10)] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """What a consumer sees for the code on a receipt or label: server-rendered, no script needed."""
    language = views.parse_lang(lang)
    canonical = canonical_code(settings, code)
    if canonical is None:
        return _not_found(settings, code, language)
    if canonical != code:
        # One address per code: the address bar, a bookmark and the QR code all read the stored form.
        query = f"?lang={language}" if lang is not None else ""
        return RedirectResponse(public_path(settings, f"/t/{quote(canonical)}{query}"), status_code=301)
    try:
        found = await fresh_public_view(engine, code)
    except NotFound:
        return _not_found(settings, code, language)
    # The page of a version in a language is rendered once (the hotline is the process's setting); its ETag is
    # the view's, per language.
    cache = chain_endpoints.cache_headers(found, f"-{language}")
    if chain_endpoints.not_modified(found, if_none_match, f"-{language}"):
        return Response(status_code=304, headers={**templates.SECURITY_HEADERS, **cache})
    body = VIEWS.rendered(
        found.etag,
        f"page-{language}",
        lambda: (
            templates.environment()
            .get_template("trace.html")
            .render(
                lang=language,
                t=lambda key: views.text(key, language),
                switch=_lang_links(language),
                page=views.consumer_page(found.view, language, hotline=_hotline(settings, language)),
            )
        ),
    )
    return HTMLResponse(body, headers={**templates.SECURITY_HEADERS, **cache})


@router.get("/t/{code}/qr.svg")
async def consumer_qr(code: str, settings: CurrentSettings) -> Response:
    """A QR code of the page's URL, for labels and receipts. Any well-formed code: labels are printed
    before the lot is reported. A code in lower case gets the QR code of its canonical page, not a redirect:
    label printers fetch the image and seldom follow one."""
    canonical = canonical_code(settings, code)
    if canonical is None:
        raise NotFound(f"no lot or sale {code[:SHOWN_CODE_CHARS]}")
    url = public_url(settings, f"/t/{canonical}")
    out = io.BytesIO()
    segno.make(url, error="m", micro=False).save(out, kind="svg", scale=4, border=4, xmldecl=True)
    return Response(
        out.getvalue(),
        media_type="image/svg+xml",
        headers={
            "Cache-Control": "public, max-age=86400",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/t/{rest:path}")
async def consumer_other(
    rest: str, settings: CurrentSettings, lang: Annotated[str | None, Query(max_length=10)] = None
) -> Response:
    """Anything else under /t/ (a mistyped code with a slash in it): the friendly page, not a JSON error."""
    return _not_found(settings, rest, views.parse_lang(lang))


# -- the regulator console: sign-in -----------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # parse_qs refuses more fields than allowed with a bare ValueError
        raise InvalidInput(
            f"the form has more than {MAX_FORM_FIELDS} fields",
            details=[{"field": None, "in": "body", "type": "too_many_fields", "message": "too many form fields"}],
        ) from None
    form = {k: v[0] for k, v in fields.items()}
    problems = []
    for name, value in form.items():
        try:
            storable_text(value)
        except ValueError as exc:
            problems.append({"field": name[:64], "in": "body", "type": "string_not_storable", "message": str(exc)})
    if problems:
        raise InvalidInput("the form is not valid", details=problems)
    return form


def _login_page(request: Request, *, status: int = 200, error: str | None = None) -> Response:
    token = session.new_login_token()
    response = templates.render(
        "console_login.html",
        status=status,
        cache="no-store",
        referrer="same-origin",
        lang="zh",
        error=error,
        csrf=token,
        https_needed=not session.can_sign_in(request),
    )
    session.set_login_cookie(request, response, token)
    return response


@router.get("/console")
async def console(request: Request, engine: Engine, settings: CurrentSettings) -> Response:
    """The console when signed in, else the sign-in form."""
    try:
        current = await session.current_session(request, engine, settings)
    except (Unauthorized, Forbidden) as exc:
        stale = bool(request.cookies.get(session.session_cookie(request)))
        response = _login_page(request, error=exc.message if stale else None)
        if stale:
            session.clear_session(request, response)  # a revoked key or a suspended operator: forget it
        return response
    return templates.render(
        "console.html",
        cache="no-store",
        referrer="same-origin",
        lang="zh",
        csrf=current.csrf,
        role=current.principal.role.value,
        key_id=current.principal.key_id,
    )


@router.post("/console/login")
async def console_login(request: Request, engine: Engine, settings: CurrentSettings) -> Response:
    form = await _form(request)
    if not session.can_sign_in(request):
        return _login_page(request, status=403, error="登录需要 HTTPS。Signing in needs HTTPS.")
    if not session.same_origin(request) or not session.login_token_ok(request, form.get("csrf")):
        return _login_page(request, status=403, error="表单已过期，请重试。The form expired; try again.")
    key = form.get("key", "").strip()
    if not key:
        return _login_page(request, status=401, error="请输入监管密钥。Enter a regulator key.")
    try:
        await session.authenticate_key(engine, settings, key)
    except Unauthorized:
        return _login_page(request, status=401, error="密钥无效。The key is not valid.")
    except Forbidden as exc:
        message = (
            "经营者密钥不能登录监管台。Operator keys cannot sign in to the console."
            if exc.code == "not_regulator"
            else f"无法登录。{exc.message}"
        )
        return _login_page(request, status=403, error=message)
    response = RedirectResponse(public_path(settings, "/console"), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    session.set_session(request, response, key)
    return response


@router.post("/console/logout")
async def console_logout(request: Request, engine: Engine, settings: CurrentSettings) -> Response:
    form = await _form(request)
    try:
        current = await session.current_session(request, engine, settings)
    except DomainError:
        current = None  # already signed out, or the key was revoked: clearing the cookie is all there is
    if current is not None:
        session.check_csrf(request, current, form.get("csrf"))
    response = RedirectResponse(public_path(settings, "/console"), status_code=303)
    response.headers["Cache-Control"] = "no-store"
    session.clear_session(request, response)
    return response


# -- the regulator console: what its script calls ---------------------------------------------------


async def console_session(request: Request, engine: Engine, settings: CurrentSettings) -> Session:
    return await session.current_session(request, engine, settings)


ConsoleSession = Annotated[Session, Depends(console_session)]


async def csrf_checked(
    request: Request,
    current: ConsoleSession,
    token: Annotated[str | None, Header(alias=session.CSRF_HEADER, max_length=200)] = None,
) -> Session:
    session.check_csrf(request, current, token)
    return current


CheckedSession = Annotated[Session, Depends(csrf_checked)]


def _json(text: str) -> Response:
    return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/console/api/alerts")
async def console_alerts(
    current: ConsoleSession,
    conn: UnitOfWork,
    status: Literal["open", "acknowledged", "resolved"] | None = None,
    operator: Annotated[str | None, Query(pattern=r"^[0-9A-Z]{6,20}$")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    return await alerts.list_alerts(
        conn, current.principal, status=status, severity=None, rule=None, operator=operator, since=None,
        cursor=cursor, limit=limit,
    )  # fmt: skip


@router.get("/console/api/alerts/stream")
async def console_alert_stream(
    request: Request,
    current: ConsoleSession,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> Response:
    """The alert stream of ``GET /v1/alerts/stream`` (the same hub, the same ``id:``/``event: alert``
    framing and ``Last-Event-ID`` resume), with the console's cookie as the credential."""
    access.require(current.principal, Role.ADMIN, Role.REGULATOR)
    hub: AlertStream = request.app.state.alert_stream
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else None

    return alert_event_stream(hub, resume)


@router.post("/console/api/alerts/{alert_id}/{action}")
async def console_alert_action(
    alert_id: AlertId,
    action: Literal["acknowledge", "resolve"],
    current: CheckedSession,
    conn: UnitOfWork,
    body: Note | None = None,
) -> Any:
    target = "acknowledged" if action == "acknowledge" else "resolved"
    return await alerts.change_status(conn, current.principal, alert_id, target, body.note if body else None)


@router.get("/console/api/search")
async def console_search(
    current: ConsoleSession,
    conn: UnitOfWork,
    settings: CurrentSettings,
    code: Annotated[str, Query(min_length=1, max_length=64)],
) -> Any:
    """What a code names: a lot or sale, an operator (with its alerts), or an alert."""
    raw = code.strip()
    upper = raw.upper()
    found: dict[str, Any] = {"code": upper, "lot": None, "operator": None, "alert": None}
    if re.fullmatch(settings.codes.lot, upper):
        with contextlib.suppress(NotFound):
            lot = await ChainService(conn).lot(current.principal, upper)
            found["lot"] = {k: lot[k] for k in ("code", "kind", "status", "holder", "holder_name", "product_name")}
    if re.fullmatch(settings.codes.operator, upper):
        with contextlib.suppress(NotFound):
            found["operator"] = await access.read_operator(conn, current.principal, upper)
    if re.fullmatch(r"al_[0-9a-f]{24}", raw.lower()):
        with contextlib.suppress(NotFound):
            found["alert"] = await alerts.read_alert(conn, current.principal, raw.lower())
    if not any(found[k] for k in ("lot", "operator", "alert")):
        raise NotFound(f"nothing is known by the code {upper}")
    return found


@router.get("/console/api/lots/{code}/trace")
async def console_trace(
    code: Lot,
    current: ConsoleSession,
    conn: UnitOfWork,
    direction: Literal["up", "down", "both"] = "both",
) -> Response:
    return _json(await ChainService(conn).trace(current.principal, code, direction, 20))


@router.get("/console/api/lots/{code}/recall")
async def console_recall(code: Lot, current: ConsoleSession, conn: UnitOfWork) -> Response:
    return _json(await ChainService(conn).recall(current.principal, code))


@router.get("/console/api/lots/{code}/recall.csv")
async def console_recall_csv(code: Lot, current: ConsoleSession, conn: ReadOnly, engine: ReadEngine) -> Response:
    rows = await ChainService(conn).recall_csv(current.principal, code, engine.connect)
    return chain_endpoints.recall_csv_response(rows, code, **{"Cache-Control": "no-store"})


@router.get("/console/api/supply")
async def console_supply(
    current: ConsoleSession,
    conn: UnitOfWork,
    settings: CurrentSettings,
    product: Annotated[str | None, Query(max_length=32)] = None,
    market_code: Annotated[str | None, Query(alias="market", max_length=40)] = None,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
) -> Any:
    return await market.supply(
        conn, current.principal, settings, product=product or None, market=market_code or None, first=from_, last=to
    )
