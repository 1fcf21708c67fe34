"""FastAPI dependencies for authentication, shared by every endpoint module."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import service
from trace_service.access.models import Principal
from trace_service.db import uow
from trace_service.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key: operator, regulator or admin")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def unit_of_work(engine: Annotated[AsyncEngine, Depends(get_engine)]) -> AsyncIterator[AsyncConnection]:
    """One transaction per request: committed when the endpoint returns, rolled back when it raises."""
    async with uow.unit_of_work(engine) as conn:
        yield conn


async def get_read_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = getattr(request.app.state, "read_engine", None) or request.app.state.engine
    return engine


async def read_only(engine: Annotated[AsyncEngine, Depends(get_read_engine)]) -> AsyncIterator[AsyncConnection]:
    """A connection in autocommit for endpoints that only read (lineage, the public view, queues)."""
    async with uow.reading(engine) as conn:
        yield conn


async def database_answers(engine: Annotated[AsyncEngine, Depends(get_read_engine)]) -> None:
    """For an answer that would not query Postgres before it starts (a stream, behind a cached key): a
    503 now, rather than a 200 that never delivers anything."""
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))


class PrincipalCache:
    """Recently authenticated keys, so that a burst of reads does not query the key table each time.

    Keyed by a SHA-256 of the presented header (never the secret itself); an entry lives
    ``TRACE_AUTH_CACHE_SECONDS`` at most, which bounds how long a revoked key or a suspended operator
    keeps working on this process.
    """

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: dict[bytes, tuple[float, Principal]] = {}

    def get(self, key: bytes) -> Principal | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return hit[1]

    def clear(self) -> None:
        self._entries.clear()

    def put(self, key: bytes, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, principal)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    engine: Annotated[AsyncEngine, Depends(get_read_engine)],
) -> Principal:
    settings = get_settings(request)
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else request.headers.get("authorization")
    cache: PrincipalCache | None = getattr(request.app.state, "principal_cache", None)
    digest = hashlib.sha256((header or "").encode()).digest()
    if cache is not None and header and (hit := cache.get(digest)) is not None:
        return hit
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    async with engine.connect() as conn:
        principal = await service.authenticate(
            conn, header, admin_token=admin or None, pepper=settings.key_pepper.get_secret_value()
        )
    if cache is not None:
        cache.put(digest, principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
ReadOnly = Annotated[AsyncConnection, Depends(read_only, scope="function")]
# scope="function": the transaction commits before the response is sent, so a client never sees an
# answer for a write that later fails to commit (or races a follow-up request against it).
UnitOfWork = Annotated[AsyncConnection, Depends(unit_of_work, scope="function")]
CurrentSettings = Annotated[Settings, Depends(get_settings)]


def forget_principals(request: Request) -> None:
    """After a revocation or a suspension this process stops trusting what it remembered at once."""
    cache: PrincipalCache | None = getattr(request.app.state, "principal_cache", None)
    if cache is not None:
        cache.clear()
