"""The console's sign-in: the regulator key in a cookie, CSRF tokens, and the checks every console
request makes. See ``docs/web.md`` for the reasoning.

* The cookie holds the key itself and every request authenticates it with the same service as the API's
  bearer header, so a revoked key or a suspended operator stops working at once and there is no session
  table to keep. It is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page can
  make the browser send it), ``Path=/console`` and lives 8 hours.
* It is ``Secure`` (and named ``__Secure-…``, which browsers accept only from HTTPS) unless the request is
  plain HTTP to a loopback host, the one place plain HTTP is safe: ``trace-service dev`` and the tests.
  Plain HTTP to any other host refuses to sign in rather than send a key over the network in clear.
* CSRF: besides ``SameSite=Strict``, every state-changing request carries a token, and a request whose
  ``Origin`` or ``Sec-Fetch-Site`` says it came from another site is refused. The session's token is an
  HMAC of a fixed label keyed with the session's key: no server state, unguessable without the key. The
  sign-in form, which has no session yet, uses a random token in a short-lived cookie (double submit),
  so another site cannot sign a browser in with the attacker's key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.access import service as access
from trace_service.access.models import Principal, Role
from trace_service.errors import Forbidden, Unauthorized
from trace_service.settings import Settings

SESSION_SECONDS = 8 * 3600  # a working day; then sign in again
LOGIN_SECONDS = 3600
CONSOLE_PATH = "/console"
LOGIN_PATH = "/console/login"
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
CSRF_HEADER = "x-csrf-token"
_CSRF_LABEL = b"trace-service console csrf v1"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str


def is_loopback_http(request: Request) -> bool:
    return request.url.scheme == "http" and (request.url.hostname or "") in LOOPBACK


def secure(request: Request) -> bool:
    """Whether the console's cookies are ``Secure``: always, except plain HTTP to a loopback host."""
    return not is_loopback_http(request)


def can_sign_in(request: Request) -> bool:
    """HTTPS, or plain HTTP to a loopback host: never a key sent over the network in clear."""
    return request.url.scheme == "https" or is_loopback_http(request)


def session_cookie(request: Request) -> str:
    return "__Secure-trace_console" if secure(request) else "trace_console"


def login_cookie(request: Request) -> str:
    return "__Secure-trace_console_login" if secure(request) else "trace_console_login"


def csrf_token(key: str) -> str:
    return hmac.new(key.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (a forged form or fetch).

    ``Sec-Fetch-Site`` is what current browsers send on every request; ``Origin`` is the fallback (the
    console's pages use ``Referrer-Policy: same-origin`` so that their own forms carry a real origin).
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser, or one too old to say: the CSRF token still has to match
    own = f"{request.url.scheme}://{request.url.netloc}"
    return hmac.compare_digest(origin.encode(), own.encode())


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    """The sign-in form's token, also kept in a short-lived cookie (double submit)."""
    response.set_cookie(
        login_cookie(request), token, max_age=LOGIN_SECONDS, path=LOGIN_PATH, secure=secure(request),
        httponly=True, samesite="strict",
    )  # fmt: skip


def login_token_ok(request: Request, presented: str | None) -> bool:
    expected = request.cookies.get(login_cookie(request))
    return bool(presented and expected) and hmac.compare_digest(str(presented).encode(), str(expected).encode())


def set_session(request: Request, response: Response, key: str) -> None:
    response.set_cookie(
        session_cookie(request), key, max_age=SESSION_SECONDS, path=CONSOLE_PATH, secure=secure(request),
        httponly=True, samesite="strict",
    )  # fmt: skip
    response.delete_cookie(login_cookie(request), path=LOGIN_PATH, secure=secure(request), httponly=True)


def clear_session(request: Request, response: Response) -> None:
    response.delete_cookie(
        session_cookie(request), path=CONSOLE_PATH, secure=secure(request), httponly=True, samesite="strict"
    )


async def authenticate_key(engine: AsyncEngine, settings: Settings, key: str) -> Principal:
    """The same check as the API's bearer header; only regulators and admins may use the console."""
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    async with engine.connect() as conn:
        principal = await access.authenticate(
            conn, f"Bearer {key}", admin_token=admin or None, pepper=settings.key_pepper.get_secret_value()
        )
    if principal.role not in (Role.REGULATOR, Role.ADMIN):
        raise Forbidden(
            "the console needs a regulator key; operator and department keys cannot sign in", code="not_regulator"
        )
    return principal


async def current_session(request: Request, engine: AsyncEngine, settings: Settings) -> Session:
    key = request.cookies.get(session_cookie(request))
    if not key:
        raise Unauthorized("sign in to the console first")
    principal = await authenticate_key(engine, settings, key)
    return Session(principal, csrf_token(key))


def check_csrf(request: Request, session: Session, presented: str | None) -> None:
    if not same_origin(request):
        raise Forbidden("this request came from another site", code="csrf")
    if not presented or not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise Forbidden("the form's security token is missing or wrong; reload the page", code="csrf")
