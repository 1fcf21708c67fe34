"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from trace_service.api.errors import error_response
from trace_service.contract.responses import errors
from trace_service.errors import DependencyDown

router = APIRouter(tags=["health"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: str = Field(description="always `ok`: the process answers")


class Ready(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "checks": {"postgres": "ok", "broker": "ok"}}]}
    )

    status: str = Field(description="`ready`")
    checks: dict[str, str] = Field(description="each dependency and `ok` (a 503 names the one that is down)")


_NOT_READY = {
    503: {
        "not_ready": {
            "summary": "a dependency does not answer",
            "value": {
                "error": {
                    "code": "unavailable",
                    "message": "not ready",
                    "details": [{"postgres": "ok", "broker": "down"}],
                }
            },
        }
    }
}


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses={200: {"model": Ready}, **errors(503, examples=_NOT_READY)})
async def readyz(request: Request) -> Any:
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(3), request.app.state.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"down: {type(exc).__name__}"
    try:
        await request.app.state.publisher.ping()
        checks["broker"] = "ok"
    except DependencyDown:
        checks["broker"] = "down"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    return error_response(503, "unavailable", "not ready", [checks], headers={"Retry-After": "5"})


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
