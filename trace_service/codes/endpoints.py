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
from trace_service.contract.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/v1", tags=["codes"])


class CodesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"count": 3}]})

    count: Annotated[int, Field(strict=True, ge=1, le=MAX_CODES_PER_REQUEST, description="how many codes to issue")]


class CodesOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "codes": ["00004226112500000016", "00004226112500000023", "00004226112500000030"],
                    "operator": "442000600012",
                }
            ]
        }
    )

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
    responses=errors(
        400,
        *AUTHENTICATED,
        409,
        413,
        422,
        503,
        examples={
            409: {
                "code_quota_exhausted": {
                    "summary": "the operator's codes of the day are used up",
                    "value": {
                        "error": {
                            "code": "code_quota_exhausted",
                            "message": "operator 442000600012 has used up today's 9999999 codes; ask again tomorrow",
                            "details": [],
                        }
                    },
                }
            }
        },
    ),
)
async def issue_codes(
    body: CodesIn,
    principal: Annotated[Principal, Depends(issuing_operator)],
    conn: UnitOfWork,
) -> Any:
    issued = await service.issue_codes(conn, principal, body.count)
    return {"codes": issued.codes, "operator": issued.operator}
