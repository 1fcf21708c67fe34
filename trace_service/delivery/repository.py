"""SQL of subscriptions: the API's reads and changes, and the deliverers' leases, cursors and attempts.

Every write a deliverer makes is fenced by its lease (``lease_owner = :me``): once another deliverer has taken a
subscription over, the old one can neither move its cursor nor change its retry state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.db.tables import Subscription, SubscriptionDelivery

subscriptions = Subscription.__table__  # type: ignore[attr-defined]
deliveries = SubscriptionDelivery.__table__  # type: ignore[attr-defined]


def _one(result: sa.CursorResult[Any]) -> dict[str, Any] | None:
    row = result.mappings().first()
    return dict(row) if row else None


# -- the API ------------------------------------------------------------------------------------------


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    row = (await conn.execute(sa.insert(subscriptions).values(**values).returning(subscriptions))).mappings().one()
    return dict(row)


async def get(conn: AsyncConnection, subscription_id: str) -> dict[str, Any] | None:
    return _one(await conn.execute(sa.select(subscriptions).where(subscriptions.c.id == subscription_id)))


async def list_all(conn: AsyncConnection, *, owner: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first; ``owner`` None lists every key's."""
    stmt = sa.select(subscriptions).order_by(subscriptions.c.created_at.desc(), subscriptions.c.id).limit(limit)
    if owner is not None:
        stmt = stmt.where(subscriptions.c.owner_key_id == owner)
    if status is not None:
        stmt = stmt.where(subscriptions.c.status == status)
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


async def list_deliveries(conn: AsyncConnection, subscription_id: str, limit: int) -> list[dict[str, Any]]:
    stmt = (
        sa.select(deliveries)
        .where(deliveries.c.subscription_id == subscription_id)
        .order_by(deliveries.c.id.desc())
        .limit(limit)
    )
    return [dict(r) for r in (await conn.execute(stmt)).mappings()]


def _change(subscription_id: str, *where: Any, **values: Any) -> Any:
    return (
        sa.update(subscriptions)
        .where(subscriptions.c.id == subscription_id, *where)
        .values(**values, updated_at=sa.func.now())
        .returning(subscriptions)
    )


_FRESH_START = {
    "pending_id": None,
    "pending_until": None,
    "attempts": 0,
    "next_attempt_at": None,
    "failing_since": None,
}


async def rewind(conn: AsyncConnection, subscription_id: str, after: int) -> dict[str, Any] | None:
    """Move the cursor to ``after`` and drop the batch in flight: its acknowledgement, should it still come,
    no longer moves the cursor (acknowledge() checks the batch's id)."""
    stmt = _change(subscription_id, subscriptions.c.status != "ended", cursor_seq=after, **_FRESH_START)
    return _one(await conn.execute(stmt))


async def resume(conn: AsyncConnection, subscription_id: str) -> dict[str, Any] | None:
    """A paused subscription becomes active again and is retried at once (the batch in flight keeps its id)."""
    values = {**_FRESH_START, "pending_id": subscriptions.c.pending_id, "pending_until": subscriptions.c.pending_until}
    stmt = _change(subscription_id, subscriptions.c.status == "paused", status="active", paused_at=None, **values)
    return _one(await conn.execute(stmt))


async def end(conn: AsyncConnection, subscription_id: str, reason: str | None = None) -> dict[str, Any] | None:
    values: dict[str, Any] = {"status": "ended", "ended_at": sa.func.now(), "lease_owner": None}
    if reason is not None:
        values |= {"last_error": reason, "last_error_at": sa.func.now()}
    return _one(await conn.execute(_change(subscription_id, subscriptions.c.status != "ended", **values)))


# -- the deliverers: leases ------------------------------------------------------------------------------

_CLAIM = sa.text(
    """
    WITH free AS (
        SELECT id FROM subscriptions
        WHERE status = 'active' AND (lease_owner IS NULL OR lease_expires_at < now())
        ORDER BY lease_expires_at NULLS FIRST, id
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    )
    UPDATE subscriptions s
       SET lease_owner = :me, lease_expires_at = now() + make_interval(secs => :ttl)
      FROM free
     WHERE s.id = free.id
    RETURNING s.id
    """
)


async def claim(conn: AsyncConnection, me: str, ttl: float, n: int) -> list[str]:
    """Take up to ``n`` active subscriptions that no live deliverer holds (never expired, or lapsed)."""
    if n <= 0:
        return []
    rows = await conn.execute(_CLAIM, {"me": me, "ttl": ttl, "n": n})
    return sorted(r.id for r in rows)


_RENEW_ALL = sa.text(
    """
    UPDATE subscriptions SET lease_expires_at = now() + make_interval(secs => :ttl)
     WHERE lease_owner = :me AND status = 'active'
    RETURNING id
    """
)


async def renew_all(conn: AsyncConnection, me: str, ttl: float) -> set[str]:
    """Extend every lease this deliverer holds on an active subscription; the ids it still holds."""
    return {r.id for r in await conn.execute(_RENEW_ALL, {"me": me, "ttl": ttl})}


async def held(conn: AsyncConnection, me: str) -> dict[str, tuple[str, int, str | None]]:
    """What this deliverer holds: id -> (status, cursor, batch in flight). A read, so it may run often."""
    stmt = sa.select(
        subscriptions.c.id, subscriptions.c.status, subscriptions.c.cursor_seq, subscriptions.c.pending_id
    ).where(subscriptions.c.lease_owner == me)
    return {r.id: (r.status, r.cursor_seq, r.pending_id) for r in await conn.execute(stmt)}


_TAKE = sa.text(
    """
    UPDATE subscriptions SET lease_expires_at = now() + make_interval(secs => :ttl)
     WHERE id = :id AND lease_owner = :me
    RETURNING *, now() AS now
    """
)


async def take(conn: AsyncConnection, subscription_id: str, me: str, ttl: float) -> dict[str, Any] | None:
    """The subscription as it is now, with its lease extended; None once another deliverer holds it."""
    return _one(await conn.execute(_TAKE, {"id": subscription_id, "me": me, "ttl": ttl}))


async def release(conn: AsyncConnection, me: str, ids: Sequence[str] | None = None) -> None:
    """Give leases back (all of this deliverer's when ``ids`` is None), so another may take them at once."""
    stmt = sa.update(subscriptions).where(subscriptions.c.lease_owner == me)
    if ids is not None:
        stmt = stmt.where(subscriptions.c.id.in_(list(ids)))
    await conn.execute(stmt.values(lease_owner=None, lease_expires_at=None))


# -- the deliverers: batches, cursors, retries -----------------------------------------------------------


def _held(subscription_id: str, me: str) -> tuple[Any, ...]:
    return (subscriptions.c.id == subscription_id, subscriptions.c.lease_owner == me)


async def pin_batch(conn: AsyncConnection, subscription_id: str, me: str, delivery_id: str, until: int) -> bool:
    """Record the batch about to be sent, so every retry (by any deliverer) sends it under the same id."""
    stmt = (
        sa.update(subscriptions)
        .where(*_held(subscription_id, me), subscriptions.c.pending_id.is_(None))
        .values(pending_id=delivery_id, pending_until=until)
    )
    return bool((await conn.execute(stmt)).rowcount)


async def skip_to(conn: AsyncConnection, subscription_id: str, me: str, until: int) -> bool:
    """Move the cursor over a stretch of the stream that held nothing for this subscription."""
    stmt = (
        sa.update(subscriptions)
        .where(*_held(subscription_id, me), subscriptions.c.pending_id.is_(None), subscriptions.c.cursor_seq < until)
        .values(cursor_seq=until)
    )
    return bool((await conn.execute(stmt)).rowcount)


async def record_attempt(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(deliveries).values(**values))


async def acknowledge(conn: AsyncConnection, subscription_id: str, me: str, delivery_id: str) -> bool:
    """The receiver answered 2xx to this batch: the cursor moves past it. False when the batch is no longer the
    one in flight (a replay dropped it) or the lease was lost: then nothing moves."""
    stmt = (
        sa.update(subscriptions)
        .where(*_held(subscription_id, me), subscriptions.c.pending_id == delivery_id)
        .values(
            cursor_seq=subscriptions.c.pending_until,
            pending_id=None,
            pending_until=None,
            attempts=0,
            next_attempt_at=None,
            failing_since=None,
            last_success_at=sa.func.now(),
        )
    )
    return bool((await conn.execute(stmt)).rowcount)


_FAILED = sa.text(
    """
    UPDATE subscriptions
       SET attempts = attempts + 1,
           failing_since = COALESCE(failing_since, now()),
           last_error = :error,
           last_error_at = now(),
           next_attempt_at = now() + make_interval(secs => :delay),
           status = CASE WHEN now() - COALESCE(failing_since, now()) >= make_interval(secs => :pause_after)
                         THEN 'paused' ELSE status END,
           paused_at = CASE WHEN now() - COALESCE(failing_since, now()) >= make_interval(secs => :pause_after)
                            THEN now() ELSE paused_at END,
           updated_at = now()
     WHERE id = :id AND lease_owner = :me
    RETURNING status, attempts
    """
)


async def failed(
    conn: AsyncConnection, subscription_id: str, me: str, *, error: str, delay: float, pause_after: float
) -> str | None:
    """Record a failed attempt and when to try again; pauses the subscription once it has failed for
    ``pause_after`` seconds. Its status after that (None when the lease was lost)."""
    params = {"id": subscription_id, "me": me, "error": error[:500], "delay": delay, "pause_after": pause_after}
    row = (await conn.execute(_FAILED, params)).first()
    return None if row is None else str(row.status)


async def prune_attempts(conn: AsyncConnection, keep_days: int) -> int:
    stmt = sa.delete(deliveries).where(deliveries.c.at < sa.func.now() - sa.func.make_interval(0, 0, 0, keep_days))
    return int((await conn.execute(stmt)).rowcount)
