"""FastAPI dependencies for authentication, shared by every endpoint module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import service
from trace_service.access.models import Principal
from trace_service.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key: operator, regulator or admin")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def unit_of_work(engine: Annotated[AsyncEngine, Depends(get_engine)]) -> AsyncIterator[AsyncConnection]:
    """One transaction per request: committed when the endpoint returns, rolled back when it raises."""
    async with engine.begin() as conn:
        yield conn


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    engine: Annotated[AsyncEngine, Depends(get_engine)],
) -> Principal:
    settings = get_settings(request)
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else request.headers.get("authorization")
    admin = settings.admin_token.get_secret_value() if settings.admin_token else None
    async with engine.connect() as conn:
        return await service.authenticate(
            conn, header, admin_token=admin or None, pepper=settings.key_pepper.get_secret_value()
        )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
UnitOfWork = Annotated[AsyncConnection, Depends(unit_of_work)]
CurrentSettings = Annotated[Settings, Depends(get_settings)]
