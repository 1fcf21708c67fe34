"""Use cases of the alert queue: list, read, acknowledge, resolve, and the live stream."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trace_service.access import service as access
from trace_service.access.models import Principal, Role
from trace_service.access.scopes import ALERTS, require_flag
from trace_service.alerts import repository as repo
from trace_service.contract.events import storable_time
from trace_service.errors import Conflict, InvalidInput, NotFound
from trace_service.sharing import service as sharing

log = structlog.get_logger(__name__)
_ALERT_ID = re.compile(r"al_[0-9a-f]{24}")


def _cursor(created_at: datetime, alert_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{alert_id}".encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, alert_id = raw.partition("|")
        # A cursor comes back from the client: only what this service could have written is taken, so a
        # forged one (a NUL in the id, year 1 with an offset) is a 422, not a query Postgres refuses.
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None or not _ALERT_ID.fullmatch(alert_id):
            raise ValueError(raw)
        storable_time(parsed)
    except ValueError:
        raise InvalidInput(
            "the cursor is not valid", details=[{"field": "cursor", "message": "not a cursor"}]
        ) from None
    return parsed, alert_id


async def list_alerts(
    conn: AsyncConnection,
    principal: Principal,
    *,
    status: str | None,
    severity: str | None,
    rule: str | None,
    operator: str | None,
    since: datetime | None,
    cursor: str | None,
    limit: int,
    level: str | None = None,
    product: str | None = None,
) -> dict[str, Any]:
    require_flag(principal, ALERTS)  # regulators, admins, departments with `alerts`
    before = _parse_cursor(cursor) if cursor else None
    rows = await repo.list_alerts(
        conn, status=status, severity=severity, rule=rule, operator=operator, since=since, before=before, limit=limit,
        level=level, product=product,
    )  # fmt: skip
    items = [orjson.loads(body) for _, _, body in rows]
    next_cursor = _cursor(rows[-1][0], rows[-1][1]) if len(rows) == limit else None
    await sharing.record_read(conn, principal, "/v1/alerts", len(items))
    return {"items": items, "next_cursor": next_cursor}


async def read_alert(conn: AsyncConnection, principal: Principal, alert_id: str) -> Any:
    require_flag(principal, ALERTS)
    body = await repo.alert_json(conn, alert_id)
    if body is None:
        raise NotFound(f"no alert {alert_id}")
    await sharing.record_read(conn, principal, f"/v1/alerts/{alert_id}", 1)
    return orjson.loads(body)


async def change_status(
    conn: AsyncConnection, principal: Principal, alert_id: str, target: str, note: str | None
) -> Any:
    """open → acknowledged → resolved; resolving straight from open is allowed; nothing goes back."""
    access.require(principal, Role.ADMIN, Role.REGULATOR)
    current = await repo.get_alert(conn, alert_id, lock=True)
    if current is None:
        raise NotFound(f"no alert {alert_id}")
    allowed = {"acknowledged": {"open"}, "resolved": {"open", "acknowledged"}}[target]
    if current["status"] not in allowed:
        raise Conflict(f"the alert is {current['status']}; it cannot become {target}")
    await repo.transition(conn, alert_id, target, principal.key_id, note)
    return orjson.loads(await repo.alert_json(conn, alert_id) or "{}")


class AlertStream:
    """One poller per API process follows the outbox and fans new alert versions out to every
    connected client; it runs only while someone listens."""

    def __init__(self, engine: AsyncEngine, interval: float = 0.2) -> None:
        self._engine = engine
        self._interval = interval
        self._subscribers: set[asyncio.Queue[tuple[int, str]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._last = -1

    async def subscribe(self, last_event_id: int | None) -> AsyncIterator[tuple[int, str]]:
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=10_000)
        if self._last < 0:
            async with self._engine.connect() as conn:
                self._last = await repo.outbox_head(conn)
        if last_event_id is not None and last_event_id < self._last:
            # A client that reconnects with Last-Event-ID gets what it missed first.
            async with self._engine.connect() as conn:
                for row_id, _, payload in await repo.outbox_after(conn, last_event_id, 10_000):
                    if row_id <= self._last:
                        queue.put_nowait((row_id, payload))
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll())
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def _poll(self) -> None:
        while self._subscribers:
            try:
                async with self._engine.connect() as conn:
                    rows = await repo.outbox_after(conn, self._last)
            except Exception as exc:
                log.warning("alert_stream_poll_failed", error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for row_id, _, payload in rows:
                self._last = max(self._last, row_id)
                for queue in list(self._subscribers):
                    with contextlib.suppress(asyncio.QueueFull):  # a client that stopped reading loses alerts
                        queue.put_nowait((row_id, payload))
            if not rows:
                await asyncio.sleep(self._interval)

    async def close(self) -> None:
        self._subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
