"""HTTP endpoint of issued lot codes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from trace_service.access.http import CurrentPrincipal, UnitOfWork
from trace_service.access.models import Principal, Role
from trace_service.access.service import require
from trace_service.codes import service
from trace_service.codes.service import MAX_CODES_PER_REQUEST

router = APIRouter(prefix="/v1", tags=["codes"])


class CodesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: Annotated[int, Field(strict=True, ge=1, le=MAX_CODES_PER_REQUEST, description="how many codes to issue")]


class CodesOut(BaseModel):
    codes: list[str] = Field(
        description="20-digit codes <issuer-seq 6><yyMMdd 6><serial 7><GS1 check digit 1>, reserved to the operator"
    )
    operator: str


async def issuing_operator(principal: CurrentPrincipal) -> Principal:
    """Only an operator key may ask; checked before the body, so a staff key gets 403 whatever it sends."""
    require(principal, Role.OPERATOR)
    return principal


@router.post(
    "/codes",
    status_code=status.HTTP_201_CREATED,
    response_model=CodesOut,
    responses={
        401: {"description": "no or bad key"},
        403: {"description": "not an operator key"},
        409: {"description": "the operator's codes of the day are used up"},
        422: {"description": "count is not between 1 and 1000"},
    },
)
async def issue_codes(
    body: CodesIn,
    principal: Annotated[Principal, Depends(issuing_operator)],
    conn: UnitOfWork,
) -> Any:
    issued = await service.issue_codes(conn, principal, body.count)
    return {"codes": issued.codes, "operator": issued.operator}
