"""The outbox relay: alert versions written in the worker's transactions, published on trace.alerts.v1.

A row is marked published only after the broker acknowledged it; a crash in between publishes it
again, so consumers see every alert version at least once and deduplicate on (id, version).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.alerts import repository as repo
from trace_service.db.uow import unit_of_work


async def relay_outbox(engine: AsyncEngine, producer: AIOKafkaProducer, topic: str, *, limit: int = 1000) -> int:
    published = 0
    while True:
        async with unit_of_work(engine) as conn:
            rows = await repo.claim_unpublished(conn, limit)
            if not rows:
                return published
            futures = [
                await producer.send(topic, key=alert_id.encode(), value=payload.encode())
                for _, alert_id, payload in rows
            ]
            await asyncio.gather(*futures)
            await repo.mark_published(conn, [row_id for row_id, _, _ in rows])
        published += len(rows)
        if len(rows) < limit:
            return published
