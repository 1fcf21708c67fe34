"""Errors under faults: every dependency failure answers the contract, and the API never answers 500.

* Postgres down (a port where nothing listens, and a real server that is stopped): every route answers
  503 with ``Retry-After`` and the error body, or does not need the database at all.
* The broker down: ``POST /v1/events`` answers 503 with ``Retry-After``.
* Text Postgres cannot store (NUL, lone surrogates), times the contract does not take, oversized forms:
  422 naming the field.
* Over a real uvicorn server: an error answer keeps the kept-alive connection usable; chunked bodies
  over the limit get 413; oversized headers get 431.
* Redirects and QR codes use ``TRACE_PUBLIC_BASE_URL``, never the request's ``Host`` header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import segno
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount, Route

from tests.conftest import ADMIN_TOKEN, api_client, make_settings
from tests.support import Actors, code, lot_tested_event
from trace_service.api.app import create_app
from trace_service.db.engine import migrate
from trace_service.runtime.embedded import EmbeddedPostgres, find_free_port
from trace_service.settings import Settings
from trace_service.web.session import csrf_token

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Well formed, so that authenticating it needs the key table.
UNKNOWN_KEY = "trk.abcdefghijkm." + "x" * 43
UNKNOWN = {"Authorization": f"Bearer {UNKNOWN_KEY}"}

# Routes that answer without Postgres: liveness, metrics, the documentation, and pages that only format
# what the URL says. Every other route, including any added later, must answer 503 with Postgres down.
NO_DATABASE = {
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("GET", "/t"),
    ("GET", "/t/{code}/qr.svg"),
    ("GET", "/t/{rest:path}"),
    ("GET", "/epcis"),  # the EPCIS and CBV versions the service speaks
}
PATH_VALUES = {
    "code": "ABCD12345678",
    "event_id": str(uuid.uuid4()),
    "key_id": "abcdefghijkm",
    "alert_id": "al_" + "0" * 24,
    "action": "acknowledge",
    "rest": "ABCD/1234",
}
# Bodies that pass validation, so that an admin request (no key lookup) reaches the endpoint's own queries.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/operators"): {"code": "OPFAULT0001", "name": "测试", "kind": "farm", "region": "442000"},
    ("PATCH", "/v1/operators/{code}"): {"status": "suspended"},
    ("POST", "/v1/operators/{code}/keys"): {"name": "test"},
    ("POST", "/v1/keys"): {"role": "regulator", "name": "test"},
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): {"note": "seen"},
    ("POST", "/v1/alerts/{alert_id}/resolve"): {"note": "done"},
    ("POST", "/console/api/alerts/{alert_id}/{action}"): {"note": "seen"},
    ("POST", "/v1/events"): lot_tested_event("442000200001"),
}


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, from its own routing table."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            continue  # the static files
        assert isinstance(route, APIRoute | Route), route
        found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return found


def _cookies(**values: str) -> dict[str, str]:
    # A Cookie header rather than httpx's per-request cookies (deprecated: they would persist).
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in values.items())}


def _concrete(path: str) -> str:
    return re.sub(r"{(\w+)(:\w+)?}", lambda m: PATH_VALUES.get(m.group(1), "ABCD12345678"), path)


async def _call(client: httpx.AsyncClient, method: str, path: str, key: str, *, login_csrf: str) -> httpx.Response:
    """One request as a client with ``key`` would make it: bearer header, console cookie and CSRF token."""
    cookies = _cookies(trace_console=key, trace_console_login=login_csrf)
    headers = {"Authorization": f"Bearer {key}", "X-CSRF-Token": csrf_token(key), **cookies}
    client.cookies.clear()
    if path == "/console/login":
        return await client.post(path, data={"key": key, "csrf": login_csrf}, headers=cookies)
    body = BODIES.get((method, path))
    url = _concrete(path)
    if method in ("POST", "PATCH", "PUT"):
        return await client.request(method, url, json=body if body is not None else {}, headers=headers)
    return await client.request(method, url, headers=headers)


def _assert_unavailable(r: httpx.Response, where: str) -> None:
    assert r.status_code == 503, (where, r.status_code, r.text[:300])
    assert int(r.headers["retry-after"]) > 0, where
    if r.headers["content-type"].startswith("text/html"):
        assert "Temporarily unavailable" in r.text, where  # a page a browser navigated to
    elif r.headers["content-type"].startswith("application/problem+json"):  # /epcis speaks the standard's shape
        problem = r.json()
        assert problem["status"] == 503, where
        assert problem["type"].startswith("epcisException:"), where
        assert problem["title"], where
    else:
        error = r.json()["error"]
        assert error["code"] == "unavailable", where
        assert error["message"], where


async def _sweep(app: FastAPI, client: httpx.AsyncClient) -> dict[str, int]:
    """Call every route twice: with a key that must be looked up, then with the admin token (no lookup,
    so the endpoint's own queries run). Never a 500; 503 with Retry-After wherever Postgres is needed."""
    statuses: dict[str, int] = {}
    for method, path in _routes(app):
        where = f"{method} {path}"
        r = await _call(client, method, path, UNKNOWN_KEY, login_csrf="t0ken")
        statuses[where] = r.status_code
        if (method, path) in NO_DATABASE:
            assert r.status_code < 500, (where, r.status_code, r.text[:300])
        else:
            _assert_unavailable(r, where)
        r = await _call(client, method, path, ADMIN_TOKEN, login_csrf="t0ken")
        assert r.status_code != 500, (where, r.text[:300])
        if r.status_code >= 500 or (method, path) in BODIES:
            _assert_unavailable(r, f"{where} (admin)")
    return statuses


async def test_every_route_answers_503_when_postgres_does_not_listen(broker_bootstrap: str) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{find_free_port()}/nothing"
    settings = make_settings(dead, broker_bootstrap)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            statuses = await _sweep(app, client)
            assert len(statuses) >= 40  # the sweep really covered the app
            assert (await client.get("/readyz")).status_code == 503


@pytest.mark.slow
async def test_every_route_answers_503_when_a_real_postgres_is_stopped(broker_bootstrap: str, tmp_path: Path) -> None:
    pg = await asyncio.to_thread(EmbeddedPostgres.start, tmp_path / "pg")
    try:
        await asyncio.to_thread(migrate, pg.url)
        settings = make_settings(pg.url, broker_bootstrap)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                # The pools hold live connections when the server goes away, as in production.
                actors = Actors(client, ADMIN_TOKEN)
                _, key = await actors.operator_with_key()
                assert (await client.get("/v1/alerts", headers=ADMIN)).status_code == 200
                assert (await client.get("/v1/lots/ABCD12345678", headers=key)).status_code == 404
                await asyncio.to_thread(pg.stop)
                # The operator's key was just authenticated: the cache answers, the endpoint's query fails.
                _assert_unavailable(await client.get("/v1/lots/ABCD12345678", headers=key), "cached key")
                await _sweep(app, client)
    finally:
        await asyncio.to_thread(pg.stop)


async def test_broker_down_gives_503_on_post_events(database_url: str) -> None:
    settings = make_settings(database_url, f"127.0.0.1:{find_free_port()}", produce_timeout_seconds=1.0)
    async with api_client(settings) as client:
        actors = Actors(client, ADMIN_TOKEN)
        op, key = await actors.operator_with_key()
        for path in ("/v1/events", "/v1/events?wait=true"):
            r = await client.post(path, json=[lot_tested_event(op)], headers=key)
            _assert_unavailable(r, path)
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["details"][0]["broker"] == "down"


# -- text Postgres cannot store, values the contract does not take ----------------------------------

NUL = "a\u0000b"
SURROGATE = "a\ud800b"


def _raw_json(value: Any) -> bytes:
    # json.dumps escapes both as \u0000 and \ud800, as any client would send them (httpx cannot encode a
    # lone surrogate at all).
    return json.dumps(value).encode()


def _fields(r: httpx.Response) -> set[tuple[str | None, str | None]]:
    return {(d.get("field"), d.get("in")) for d in r.json()["error"]["details"]}


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "surrogate"])
async def test_unstorable_text_in_bodies_is_422_with_the_field(
    client: httpx.AsyncClient, actors: Actors, bad: str
) -> None:
    op, key = await actors.operator_with_key()
    regulator = await actors.staff_key()
    console = {**_cookies(trace_console=ADMIN_TOKEN), "X-CSRF-Token": csrf_token(ADMIN_TOKEN)}
    alert = "al_" + "0" * 24
    cases = [
        ("POST", "/v1/operators", ADMIN, {"code": code("OP", 12), "name": bad, "kind": "farm", "region": "442000"}),
        ("PATCH", f"/v1/operators/{op}", ADMIN, {"name": bad}),
        ("POST", f"/v1/operators/{op}/keys", ADMIN, {"name": bad}),
        ("POST", "/v1/keys", ADMIN, {"role": "regulator", "name": bad}),
        ("POST", f"/v1/alerts/{alert}/acknowledge", regulator, {"note": bad}),
        ("POST", f"/v1/alerts/{alert}/resolve", regulator, {"note": bad}),
        ("POST", f"/console/api/alerts/{alert}/resolve", console, {"note": bad}),
    ]
    for method, path, headers, body in cases:
        r = await client.request(
            method, path, content=_raw_json(body), headers={**headers, "Content-Type": "application/json"}
        )
        assert r.status_code == 422, (path, r.text)
        field = "note" if "alerts" in path else "name"
        assert (field, "body") in _fields(r), (path, r.text)
    # Events are checked by the contract's own models, by item and field.
    event = lot_tested_event(op)
    event["data"]["method"] = NUL
    r = await client.post("/v1/events", content=_raw_json(event), headers=key)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "data.method"


async def test_nul_in_paths_and_queries_is_422_with_the_field(client: httpx.AsyncClient, actors: Actors) -> None:
    regulator = await actors.staff_key()
    cases = [
        ("GET", "/v1/operators/AB%00CDEF", ADMIN, ("code", "path")),
        ("PATCH", "/v1/operators/AB%00CDEF", ADMIN, ("code", "path")),
        ("POST", "/v1/operators/AB%00CDEF/keys", ADMIN, ("code", "path")),
        ("DELETE", "/v1/keys/abc%00def", ADMIN, ("key_id", "path")),
        ("GET", "/v1/lots/ABCD%0012345", regulator, ("code", "path")),
        ("GET", "/v1/public/trace/ABCD%0012345", {}, ("code", "path")),
        ("GET", "/v1/alerts?cursor=AB%00", regulator, ("cursor", "query")),
        ("GET", "/v1/alerts?rule=a%00b", regulator, ("rule", "query")),
        ("GET", "/v1/dead-letters?cursor=1%00", regulator, ("cursor", "query")),
        ("GET", "/v1/monitor/supply?product=P%00", regulator, ("product", "query")),
        ("GET", "/t/ABCD%0012345", {}, ("code", "path")),
    ]
    for method, path, headers, field in cases:
        r = await client.request(method, path, headers=headers)
        assert r.status_code == 422, (path, r.text)
        assert field in _fields(r), (path, r.text)


async def test_times_must_be_rfc3339_with_an_offset_in_range(client: httpx.AsyncClient, actors: Actors) -> None:
    regulator = await actors.staff_key()
    for since in (
        "0001-01-01T00:00:00+08:00",  # before 1970 (and before year 1 in UTC)
        "9999-12-31T23:59:59-08:00",  # after year 9999 in UTC
        "1700000000",  # unix seconds are not a time
        "2026-11-25T05:10:00",  # naive
        "yesterday",
    ):
        r = await client.get("/v1/alerts", params={"since": since}, headers=regulator)
        assert r.status_code == 422, (since, r.text)
        assert ("since", "query") in _fields(r), since
    ok = await client.get("/v1/alerts", params={"since": "2026-11-25T05:10:00+08:00"}, headers=regulator)
    assert ok.status_code == 200, ok.text

    # A cursor is the service's own; a forged one is refused, never a query Postgres cannot run.
    for forged in ("0001-01-01T00:00:00+08:00|al_" + "0" * 24, "2026-11-25T05:10:00+08:00|al_\u0000", "x|y"):
        cursor = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
        r = await client.get("/v1/alerts", params={"cursor": cursor}, headers=regulator)
        assert r.status_code == 422, (forged, r.text)
        assert r.json()["error"]["details"][0]["field"] == "cursor"


async def test_console_forms_with_too_many_fields_or_nul_are_422(client: httpx.AsyncClient) -> None:
    many = "&".join(f"f{i}=x" for i in range(11))
    form = {"Content-Type": "application/x-www-form-urlencoded", **_cookies(trace_console_login="t0ken")}
    for path in ("/console/login", "/console/logout"):
        r = await client.post(path, content=many, headers=form)
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"]["details"][0]["type"] == "too_many_fields"
    r = await client.post("/console/login", content="key=a%00b&csrf=t0ken", headers=form)
    assert r.status_code == 422, r.text
    assert ("key", "body") in _fields(r)


# -- over a real server ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[int]:
    """The app on a free loopback port, served by uvicorn (its default HTTP parser) in this event loop."""
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 15)
    return status, headers, body


def _request(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_error_answers_keep_the_connection_usable(broker_bootstrap: str) -> None:
    """An unexpected exception, a dependency outage and a validation error, each followed by another
    request on the same kept-alive HTTP/1.1 connection."""
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{find_free_port()}/nothing"
    app = create_app(make_settings(dead, broker_bootstrap))

    async def boom() -> None:
        # A defect no input can cause today: the only way left to exercise the generic 500.
        raise RuntimeError("a defect")

    app.add_api_route("/test/boom", boom)
    async with served(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            requests = [
                (_request("GET", "/test/boom"), 500, "internal"),
                (
                    _request("GET", "/v1/lots/ABCD12345678", {"Authorization": f"Bearer {UNKNOWN_KEY}"}),
                    503,
                    "unavailable",
                ),
                (_request("GET", "/v1/operators/AB%00CDEF", ADMIN), 422, "invalid"),
                (_request("GET", "/no/such/route"), 404, "not_found"),
            ]
            for raw, status, error_code in requests:
                writer.write(raw)
                await writer.drain()
                got, headers, body = await _read_response(reader)
                assert got == status, body
                assert json.loads(body)["error"]["code"] == error_code
                assert headers.get("connection", "").lower() != "close"
                assert "Traceback" not in body.decode()
                # The same connection carries the next request.
                writer.write(_request("GET", "/healthz"))
                await writer.drain()
                got, _, body = await _read_response(reader)
                assert (got, json.loads(body)) == (200, {"status": "ok"})
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_chunked_bodies_over_the_limit_get_413(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"body_limit_bytes": 2048}))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the body is counted while it is read
        for _ in range(8):
            yield b" " * 512

    async with served(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for path, headers in (
            ("/v1/events", ADMIN),  # reads its raw body itself
            ("/v1/operators", {**ADMIN, "Content-Type": "application/json"}),  # a body model FastAPI reads
            ("/console/login", form),  # a form the page reads
        ):
            r = await client.post(path, content=chunks(), headers=headers)
            assert r.status_code == 413, (path, r.text)
            assert r.json()["error"]["code"] == "payload_too_large"
        # Declared up front: refused before reading.
        r = await client.post("/v1/events", content=b" " * 4096, headers=ADMIN)
        assert r.status_code == 413
        # Under the limit the same routes answer as usual.
        r = await client.post("/v1/operators", json={"code": "X"}, headers=ADMIN)
        assert r.status_code == 422


async def test_headers_over_the_limit_get_431(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_header_bytes": 4096}))
    async with served(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        r = await client.get("/healthz", headers={"X-Padding": "a" * 5000})
        assert r.status_code == 431
        error = r.json()["error"]
        assert error["code"] == "headers_too_large"
        assert error["details"][0]["limit"] == 4096
        assert (await client.get("/healthz", headers={"X-Padding": "a" * 1000})).status_code == 200


# -- public addresses ----------------------------------------------------------------------------------

PUBLIC = "https://trace.example.gov.cn/zs"


async def test_redirects_and_qr_codes_use_the_public_base_url(settings: Settings) -> None:
    public = settings.model_copy(update={"public_base_url": PUBLIC})
    forged = {"Host": "evil.example"}
    async with api_client(public) as client:
        r = await client.get("/t", params={"code": "abcd 12345678"}, headers=forged)
        assert r.status_code == 303
        assert r.headers["location"] == "/zs/t/ABCD12345678?lang=zh"

        # A trailing slash is not redirected (Starlette builds that redirect from the Host header).
        r = await client.get("/v1/alerts/", headers=forged)
        assert r.status_code == 404
        assert "location" not in r.headers

        # The QR code encodes the public page URL, whatever Host the request named.
        r = await client.get("/t/ABCD12345678/qr.svg", headers=forged)
        assert r.status_code == 200

        def svg(url: str) -> bytes:
            out = io.BytesIO()
            segno.make(url, error="m", micro=False).save(out, kind="svg", scale=4, border=4, xmldecl=True)
            return out.getvalue()

        assert r.content == svg(f"{PUBLIC}/t/ABCD12345678")
        assert r.content != svg("http://evil.example/t/ABCD12345678")

        # Signing in to the console redirects to the console under the public path.
        client.cookies.clear()
        r = await client.post(
            "/console/login",
            data={"key": ADMIN_TOKEN, "csrf": "t0ken"},
            headers={"Host": "127.0.0.1", **_cookies(trace_console_login="t0ken")},
        )
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/zs/console"
