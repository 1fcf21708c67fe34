"""Use cases of subscriptions (contract section 9): create, list, read, replay, resume and end them.

A subscription belongs to the key that created it. Departments see and change their own only (another's is a
404, as for an unknown id); regulators and admins see and change all. What it delivers is what its creator's
key may read, re-read from the key at every batch, intersected with its filters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access import integrators
from trace_service.access.models import Principal, Role
from trace_service.access.scopes import Scopes
from trace_service.delivery import repository as repo
from trace_service.delivery import rules, signing, urls
from trace_service.delivery.models import SubscriptionIn
from trace_service.delivery.transport import resolve
from trace_service.errors import Conflict, Forbidden, InvalidInput, NotFound
from trace_service.settings import Settings
from trace_service.sharing import service as sharing

SUBSCRIBERS = (Role.DEPARTMENT, Role.REGULATOR, Role.ADMIN)


def _require_subscriber(principal: Principal) -> None:
    if principal.role not in SUBSCRIBERS:
        raise Forbidden("subscriptions are for departments, regulators and admins; operators read their own lots")


async def policy(settings: Settings, *, allow_private: bool = False) -> urls.Policy:
    """The address rules in force, with the service's own addresses resolved now."""
    me = urls.self_target(settings.public_base_url)
    return urls.Policy(
        allow_private=allow_private,
        allowed_networks=urls.parse_networks(settings.webhook_allowed_networks),
        denied_networks=urls.parse_networks(settings.webhook_denied_networks),
        self_host=me.host,
        self_addresses=frozenset(urls.normalise(a) for a in await resolve(me.host, me.port)),
        self_port=me.port,
    )


async def check_url(url: str, settings: Settings, *, allow_private: bool) -> None:
    """:class:`InvalidInput` (with the refusal's code) for a callback URL the deliverer would refuse."""
    try:
        target = urls.parse(url)
        rules_now = await policy(settings, allow_private=allow_private)
        rules_now.check(target, await resolve(target.host, target.port))
    except urls.UrlRefused as exc:
        raise InvalidInput(exc.message, code=exc.code, details=[{"field": "url", "message": exc.message}]) from None


def public(row: dict[str, Any], head: int) -> dict[str, Any]:
    """A subscription as the API shows it (never its salt or its lease)."""
    return {
        "id": row["id"],
        "url": row["url"],
        "status": row["status"],
        "kinds": row["kinds"],
        "event_types": row["event_types"],
        "rules": row["rules"],
        "regions": row["regions"],
        "allow_private": row["allow_private"],
        "cursor": row["cursor_seq"],
        "head": head,
        "lag": max(0, head - row["cursor_seq"]),
        "last_error": row["last_error"],
        "last_error_at": row["last_error_at"],
        "failing_since": row["failing_since"],
        "next_attempt_at": row["next_attempt_at"] if row["status"] == "active" else None,
        "last_success_at": row["last_success_at"],
        "paused_at": row["paused_at"],
        "created_by": row["owner_key_id"],
        "created_at": row["created_at"],
        "ended_at": row["ended_at"],
    }


async def create(
    conn: AsyncConnection, principal: Principal, body: SubscriptionIn, settings: Settings
) -> dict[str, Any]:
    _require_subscriber(principal)
    if body.allow_private and principal.role != Role.ADMIN:
        raise Forbidden("only an admin key may allow a private callback address (allow_private)")
    scopes = Scopes.of(principal)
    if not (scopes.any_events or scopes.alerts or scopes.market):
        raise Forbidden("this key's scopes cover nothing that can be shared")
    filters, problems = rules.check_filters(scopes, body.kinds, body.event_types, body.rules, body.regions)
    if problems:
        raise InvalidInput("the subscription's filters are not valid", details=problems)
    await check_url(body.url, settings, allow_private=body.allow_private)
    head = await sharing.head(conn)
    after = head if body.after is None else body.after
    if after > head:
        message = f"after must be at most the stream's head, {head}"
        raise InvalidInput(message, details=[{"field": "after", "message": message}])
    master = integrators.require_master(settings)
    subscription_id = signing.new_subscription_id()
    salt = signing.new_salt()
    row = await repo.insert(
        conn,
        {
            "id": subscription_id,
            "url": body.url,
            "owner_key_id": principal.key_id,
            "owner_role": principal.role.value,
            "kinds": list(filters.kinds) if filters.kinds is not None else None,
            "event_types": list(filters.event_types) if filters.event_types is not None else None,
            "rules": list(filters.rules) if filters.rules is not None else None,
            "regions": list(filters.regions) if filters.regions is not None else None,
            "allow_private": body.allow_private,
            "secret_salt": salt,
            "cursor_seq": after,
        },
    )
    return {**public(row, head), "secret": signing.secret(master, subscription_id, salt)}


async def _visible(conn: AsyncConnection, principal: Principal, subscription_id: str) -> dict[str, Any]:
    _require_subscriber(principal)
    row = await repo.get(conn, subscription_id)
    # Another department's subscription is as unknown as one that does not exist.
    if row is None or (not principal.is_staff and row["owner_key_id"] != principal.key_id):
        raise NotFound(f"no subscription {subscription_id}")
    return row


async def list_subscriptions(
    conn: AsyncConnection, principal: Principal, *, status: str | None, limit: int
) -> dict[str, Any]:
    _require_subscriber(principal)
    owner = None if principal.is_staff else principal.key_id
    rows = await repo.list_all(conn, owner=owner, status=status, limit=limit)
    head = await sharing.head(conn)
    return {"items": [public(r, head) for r in rows]}


async def read(conn: AsyncConnection, principal: Principal, subscription_id: str) -> dict[str, Any]:
    row = await _visible(conn, principal, subscription_id)
    return public(row, await sharing.head(conn))


async def list_deliveries(
    conn: AsyncConnection, principal: Principal, subscription_id: str, *, limit: int
) -> dict[str, Any]:
    await _visible(conn, principal, subscription_id)
    rows = await repo.list_deliveries(conn, subscription_id, limit)
    return {
        "items": [
            {
                "delivery_id": r["delivery_id"],
                "first_seq": r["first_seq"],
                "last_seq": r["last_seq"],
                "until": r["until_seq"],
                "items": r["items"],
                "status_code": r["status_code"],
                "error": r["error"],
                "duration_ms": r["duration_ms"],
                "deliverer": r["deliverer"],
                "at": r["at"],
            }
            for r in rows
        ]
    }


def _ended(subscription_id: str) -> Conflict:
    return Conflict(f"subscription {subscription_id} has ended; create a new one", code="subscription_ended")


async def replay(conn: AsyncConnection, principal: Principal, subscription_id: str, after: int) -> dict[str, Any]:
    row = await _visible(conn, principal, subscription_id)
    if row["status"] == "ended":
        raise _ended(subscription_id)
    head = await sharing.head(conn)
    if after > head:
        message = f"after must be at most the stream's head, {head}"
        raise InvalidInput(message, details=[{"field": "after", "message": message}])
    changed = await repo.rewind(conn, subscription_id, after)
    if changed is None:
        raise _ended(subscription_id)
    return public(changed, head)


async def resume(conn: AsyncConnection, principal: Principal, subscription_id: str) -> dict[str, Any]:
    row = await _visible(conn, principal, subscription_id)
    if row["status"] == "ended":
        raise _ended(subscription_id)
    changed = await repo.resume(conn, subscription_id)
    # Resuming an active subscription changes nothing: it is already being delivered.
    return public(changed or row, await sharing.head(conn))


async def end(conn: AsyncConnection, principal: Principal, subscription_id: str) -> None:
    await _visible(conn, principal, subscription_id)
    await repo.end(conn, subscription_id)
