"""HTTP endpoints of operators, keys and integrators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from trace_service.access import integrators, service
from trace_service.access.http import CurrentPrincipal, CurrentSettings, UnitOfWork, forget_principals
from trace_service.access.models import (
    IntegratorIn,
    IntegratorList,
    IntegratorOut,
    IntegratorPatch,
    KeyOut,
    NewIntegratorOut,
    OperatorIn,
    OperatorKeyIn,
    OperatorOut,
    OperatorPatch,
    StaffKeyIn,
)
from trace_service.contract.responses import AUTHENTICATED, errors

router = APIRouter(prefix="/v1", tags=["operators and keys"])
integrators_router = APIRouter(prefix="/v1", tags=["integrators"])

Code = Annotated[str, Path(min_length=1, max_length=64)]
KeyId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/operators",
    status_code=status.HTTP_201_CREATED,
    response_model=OperatorOut,
    responses=errors(400, *AUTHENTICATED, 409, 413, 422, 503),
)
async def register_operator(
    body: OperatorIn, principal: CurrentPrincipal, conn: UnitOfWork, settings: CurrentSettings
) -> Any:
    return await service.register_operator(conn, principal, body, settings.codes)


@router.get("/operators/{code}", response_model=OperatorOut, responses=errors(*AUTHENTICATED, 404, 422, 503))
async def read_operator(code: Code, principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    return await service.read_operator(conn, principal, code)


@router.patch(
    "/operators/{code}", response_model=OperatorOut, responses=errors(400, *AUTHENTICATED, 404, 413, 422, 503)
)
async def change_operator(
    request: Request, code: Code, body: OperatorPatch, principal: CurrentPrincipal, conn: UnitOfWork
) -> Any:
    row = await service.change_operator(conn, principal, code, body)
    forget_principals(request)
    return row


@router.post(
    "/operators/{code}/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyOut,
    responses=errors(400, *AUTHENTICATED, 404, 413, 422, 503),
)
async def issue_operator_key(
    code: Code,
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    settings: CurrentSettings,
    body: OperatorKeyIn | None = None,
) -> Any:
    name = body.name if body else None
    return await service.issue_operator_key(conn, principal, code, name, settings.key_pepper.get_secret_value())


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyOut,
    responses=errors(400, *AUTHENTICATED, 413, 422, 503),
)
async def issue_staff_key(
    body: StaffKeyIn, principal: CurrentPrincipal, conn: UnitOfWork, settings: CurrentSettings
) -> Any:
    return await service.issue_staff_key(
        conn, principal, body.role, body.name, settings.key_pepper.get_secret_value(), body.scopes
    )


@router.delete(
    "/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*AUTHENTICATED, 404, 422, 503)
)
async def revoke_key(
    request: Request, key_id: Annotated[str, Path(max_length=64)], principal: CurrentPrincipal, conn: UnitOfWork
) -> Response:
    await service.revoke_key(conn, principal, key_id)
    forget_principals(request)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- integrators: direct producers of the events topic (contract section 8) ----------------------------


@integrators_router.post(
    "/integrators",
    status_code=status.HTTP_201_CREATED,
    response_model=NewIntegratorOut,
    responses=errors(400, *AUTHENTICATED, 413, 422, 503),
)
async def register_integrator(
    body: IntegratorIn, principal: CurrentPrincipal, conn: UnitOfWork, settings: CurrentSettings
) -> Any:
    """Register a direct Kafka producer for these operators (and those under them); its secret is shown once."""
    return await integrators.register(conn, principal, body, settings)


@integrators_router.get("/integrators", response_model=IntegratorList, responses=errors(*AUTHENTICATED, 503))
async def list_integrators(principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    return await integrators.list_all(conn, principal)


@integrators_router.get(
    "/integrators/{key_id}", response_model=IntegratorOut, responses=errors(*AUTHENTICATED, 404, 422, 503)
)
async def read_integrator(key_id: KeyId, principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    return await integrators.read(conn, principal, key_id)


@integrators_router.patch(
    "/integrators/{key_id}",
    response_model=IntegratorOut,
    responses=errors(400, *AUTHENTICATED, 404, 409, 413, 422, 503),
)
async def change_integrator(
    key_id: KeyId, body: IntegratorPatch, principal: CurrentPrincipal, conn: UnitOfWork, settings: CurrentSettings
) -> Any:
    """Change its name or the operators it may report for; the worker applies the change from the next batch."""
    return await integrators.change(conn, principal, key_id, body, settings)


@integrators_router.delete(
    "/integrators/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*AUTHENTICATED, 404, 422, 503)
)
async def revoke_integrator(key_id: KeyId, principal: CurrentPrincipal, conn: UnitOfWork) -> Response:
    """Revoke it: its messages become dead letters (`unauthenticated`) from the next batch on."""
    await integrators.revoke(conn, principal, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
