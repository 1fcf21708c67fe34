"""HTTP endpoints of webhook subscriptions (contract section 9)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status

from trace_service.access.http import CurrentPrincipal, CurrentSettings, UnitOfWork
from trace_service.contract.responses import AUTHENTICATED, errors
from trace_service.delivery import service
from trace_service.delivery.models import (
    DeliveryList,
    ReplayIn,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

SubscriptionId = Annotated[str, Path(pattern=r"^sub_[a-z0-9]{16}$", description="the id returned at creation")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    responses=errors(400, *AUTHENTICATED, 413, 422, 503),
)
async def create_subscription(
    body: SubscriptionIn, principal: CurrentPrincipal, conn: UnitOfWork, settings: CurrentSettings
) -> Any:
    """Subscribe a callback URL to the stream, within the key's scopes; the secret is shown once.

    Refused with 422: a URL that is not http(s) (`url_not_http`), carries credentials (`url_has_credentials`),
    resolves to a loopback, link-local, unspecified or multicast address (`url_private_address`), is this
    service itself (`url_is_self`) or does not resolve (`url_unresolvable`)."""
    return await service.create(conn, principal, body, settings)


@router.get("", response_model=SubscriptionList, responses=errors(*AUTHENTICATED, 422, 503))
async def list_subscriptions(
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    status: Literal["active", "paused", "ended"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    """The key's own subscriptions, newest first (regulators and admins see every key's)."""
    return await service.list_subscriptions(conn, principal, status=status, limit=limit)


@router.get("/{subscription_id}", response_model=SubscriptionOut, responses=errors(*AUTHENTICATED, 404, 422, 503))
async def read_subscription(subscription_id: SubscriptionId, principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    """Its cursor, the stream's head and the lag, its status and its last error."""
    return await service.read(conn, principal, subscription_id)


@router.get(
    "/{subscription_id}/deliveries", response_model=DeliveryList, responses=errors(*AUTHENTICATED, 404, 422, 503)
)
async def list_deliveries(
    subscription_id: SubscriptionId,
    principal: CurrentPrincipal,
    conn: UnitOfWork,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Its recent delivery attempts, newest first: the batch's id and seqs, the answer or the error, the time."""
    return await service.list_deliveries(conn, principal, subscription_id, limit=limit)


@router.post(
    "/{subscription_id}/replay",
    response_model=SubscriptionOut,
    responses=errors(400, *AUTHENTICATED, 404, 409, 413, 422, 503),
)
async def replay(subscription_id: SubscriptionId, body: ReplayIn, principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    """Rewind: every item after `after` is delivered again, in order (the batch in flight is dropped)."""
    return await service.replay(conn, principal, subscription_id, body.after)


@router.post(
    "/{subscription_id}/resume", response_model=SubscriptionOut, responses=errors(*AUTHENTICATED, 404, 409, 422, 503)
)
async def resume(subscription_id: SubscriptionId, principal: CurrentPrincipal, conn: UnitOfWork) -> Any:
    """Deliver a paused subscription again, from where it stopped, at once."""
    return await service.resume(conn, principal, subscription_id)


@router.delete(
    "/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(*AUTHENTICATED, 404, 422, 503)
)
async def end_subscription(subscription_id: SubscriptionId, principal: CurrentPrincipal, conn: UnitOfWork) -> Response:
    """End it: nothing more is delivered. It stays readable, with status `ended`."""
    await service.end(conn, principal, subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
