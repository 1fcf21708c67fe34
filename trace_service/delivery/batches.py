"""One step of one subscription: read the next batch (or the batch in flight), send it, and record the answer.

The step runs in two transactions around the request, so no connection is held while a receiver thinks:

1. Renew the lease and read the subscription; re-read its creator's key (a revoked key ends it); read the items
   after the cursor through :func:`trace_service.sharing.service.page`, which applies the key's scopes and the
   subscription's filters and removes personal data. A new batch is pinned (its ``webhook-id`` and the cursor
   it moves to) before it is sent, so a retry, by this deliverer or the next, sends the same batch under the
   same id.
2. After the request: record the attempt; on a 2xx move the cursor past the batch and write the delivery to the
   audit, in the same transaction; otherwise schedule the retry (backoff with jitter) and, after
   ``TRACE_WEBHOOK_PAUSE_AFTER_SECONDS`` of failures, pause the subscription.

Every write is fenced by the lease, so a deliverer that lost a subscription to another changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import repository as access_repo
from trace_service.access.models import Principal, Role
from trace_service.access.scopes import Scopes
from trace_service.access.service import ADMIN_TOKEN_KEY_ID
from trace_service.db.uow import unit_of_work
from trace_service.delivery import repository as repo
from trace_service.delivery import rules, signing
from trace_service.delivery.transport import Sender
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing_repo
from trace_service.sharing import service as sharing

log = structlog.get_logger(__name__)


class Outcome(Enum):
    DELIVERED = "delivered"  # a batch was acknowledged: there may be more at once
    SKIPPED = "skipped"  # the cursor moved over items that were not for this subscription
    IDLE = "idle"  # nothing new
    WAITING = "waiting"  # a failed batch waits for its retry
    FAILED = "failed"  # this attempt failed; the retry is scheduled
    GONE = "gone"  # no longer this deliverer's (lease lost, paused, ended)


@dataclass
class Step:
    outcome: Outcome
    cursor: int | None = None
    # Seconds until the subscription's next attempt is due, when it waits for one.
    wait: float | None = None


@dataclass(frozen=True)
class Context:
    settings: Settings
    engine: AsyncEngine
    sender: Sender
    master: bytes
    me: str
    lease_seconds: float


async def owner_principal(conn: AsyncConnection, row: dict[str, Any], settings: Settings) -> Principal | None:
    """The principal whose scopes bound the subscription, read again now; None when its key no longer works."""
    key_id = row["owner_key_id"]
    if key_id == ADMIN_TOKEN_KEY_ID:
        token = settings.admin_token.get_secret_value() if settings.admin_token else ""
        return Principal(role=Role.ADMIN, key_id=key_id) if token else None
    key = await access_repo.get_key(conn, key_id)
    if key is None or key["revoked_at"] is not None or key["role"] not in {r.value for r in Role}:
        return None
    role = Role(key["role"])
    if role == Role.OPERATOR:
        return None
    return Principal(role=role, key_id=key_id, scopes=tuple(key["scopes"] or ()))


def audience(row: dict[str, Any], principal: Principal) -> sharing.Audience:
    return sharing.Audience(
        scopes=Scopes.of(principal),
        kinds=frozenset(row["kinds"]) if row["kinds"] is not None else None,
        event_types=tuple(row["event_types"]) if row["event_types"] is not None else None,
        rules=frozenset(row["rules"]) if row["rules"] is not None else None,
        regions=tuple(rules.region_prefix(r) for r in row["regions"]) if row["regions"] is not None else None,
    )


async def _pinned_items(
    conn: AsyncConnection, who: sharing.Audience, after: int, until: int, batch: int
) -> list[dict[str, Any]]:
    """The items of the batch in flight: those after the cursor up to the cursor it moves to."""
    items: list[dict[str, Any]] = []
    while after < until:
        got, scanned = await sharing.page(conn, who, after, batch)
        items.extend(i for i in got if i["seq"] <= until)
        if scanned <= after:
            break
        after = scanned
    return items


@dataclass
class _Batch:
    row: dict[str, Any]
    principal: Principal
    delivery_id: str
    items: list[dict[str, Any]]
    until: int


async def _prepare(ctx: Context, subscription_id: str) -> _Batch | Step:
    s = ctx.settings
    async with unit_of_work(ctx.engine) as conn:
        row = await repo.take(conn, subscription_id, ctx.me, ctx.lease_seconds)
        if row is None or row["status"] != "active":
            return Step(Outcome.GONE)
        cursor = row["cursor_seq"]
        if row["next_attempt_at"] is not None and row["next_attempt_at"] > row["now"]:
            return Step(Outcome.WAITING, cursor, wait=(row["next_attempt_at"] - row["now"]).total_seconds())
        principal = await owner_principal(conn, row, s)
        if principal is None:
            await repo.end(conn, subscription_id, "the key that created this subscription was revoked")
            log.warning("subscription_ended_key_revoked", subscription=subscription_id, key_id=row["owner_key_id"])
            return Step(Outcome.GONE)
        who = audience(row, principal)
        if row["pending_id"] is not None:
            items = await _pinned_items(conn, who, cursor, row["pending_until"], s.webhook_batch_size)
            return _Batch(row, principal, row["pending_id"], items, row["pending_until"])
        items, scanned = await sharing.page(conn, who, cursor, s.webhook_batch_size)
        if not items:
            if scanned > cursor and await repo.skip_to(conn, subscription_id, ctx.me, scanned):
                return Step(Outcome.SKIPPED, scanned)
            return Step(Outcome.IDLE, cursor)
        delivery_id = signing.new_delivery_id()
        if not await repo.pin_batch(conn, subscription_id, ctx.me, delivery_id, scanned):
            return Step(Outcome.GONE)
        return _Batch(row, principal, delivery_id, items, scanned)


async def step(ctx: Context, subscription_id: str) -> Step:
    """Deliver the next batch of one subscription, or learn that there is nothing to do yet."""
    prepared = await _prepare(ctx, subscription_id)
    if isinstance(prepared, Step):
        return prepared
    s = ctx.settings
    row, items = prepared.row, prepared.items
    body = orjson.dumps({"subscription": subscription_id, "items": items})
    key = signing.secret_key(ctx.master, subscription_id, bytes(row["secret_salt"]))
    headers = signing.headers(key, prepared.delivery_id, int(time.time()), body)
    answer = await ctx.sender.post(row["url"], body, headers, allow_private=row["allow_private"])
    first = items[0]["seq"] if items else None
    last = items[-1]["seq"] if items else None
    async with unit_of_work(ctx.engine) as conn:
        await repo.record_attempt(
            conn,
            {
                "subscription_id": subscription_id,
                "delivery_id": prepared.delivery_id,
                "first_seq": first,
                "last_seq": last,
                "until_seq": prepared.until,
                "items": len(items),
                "status_code": answer.status,
                "error": answer.error,
                "duration_ms": answer.duration_ms,
                "deliverer": ctx.me,
            },
        )
        if answer.ok:
            if not await repo.acknowledge(conn, subscription_id, ctx.me, prepared.delivery_id):
                # A replay dropped the batch meanwhile, or another deliverer took over: nothing moves, and the next
                # step reads the subscription afresh (or finds it gone).
                return Step(Outcome.SKIPPED)
            await sharing_repo.record_audit(
                conn,
                actor=prepared.principal.key_id,
                role=prepared.principal.role.value,
                action="delivery",
                subject=subscription_id,
                count=len(items),
                first_seq=first,
                last_seq=last,
                detail={"delivery_id": prepared.delivery_id, "until": prepared.until, "url": row["url"]},
            )
            return Step(Outcome.DELIVERED, prepared.until)
        delay = rules.backoff(row["attempts"] + 1, s.webhook_retry_first_seconds, s.webhook_retry_max_seconds)
        if answer.retry_after is not None:
            delay = max(delay, min(answer.retry_after, s.webhook_retry_max_seconds))
        status = await repo.failed(
            conn,
            subscription_id,
            ctx.me,
            error=answer.error or "failed",
            delay=delay,
            pause_after=s.webhook_pause_after_seconds,
        )
    log.info(
        "delivery_failed",
        subscription=subscription_id,
        delivery_id=prepared.delivery_id,
        error=answer.error,
        retry_in=round(delay, 2),
        status=status,
    )
    if status != "active":
        if status == "paused":
            log.warning(
                "subscription_paused", subscription=subscription_id, after_seconds=s.webhook_pause_after_seconds
            )
        return Step(Outcome.GONE)
    return Step(Outcome.FAILED, row["cursor_seq"], wait=delay)
