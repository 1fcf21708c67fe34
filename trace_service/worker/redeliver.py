"""The redeliverer: events the API accepted that the broker forgot are produced again from the intake ledger.

The API writes each event's message into the ledger before producing it, and the worker deletes the row
in the transaction that applies the event. A row still there long after its message was produced means
the broker lost it (the embedded broker keeps everything in memory: a restarted one is a new, empty
cluster) or the API died between its ledger write and its produce. The worker's periodic tick calls
:func:`redeliver_forgotten`, which produces such rows again with their stored key, value and headers.

A copy of an event that was not lost after all is harmless: the worker deduplicates on ``event_id``.
Copies are still work, so a worker only redelivers while it is caught up with the partitions it holds
(a row waiting behind a backlog is not lost), and each row waits twice as long before every new attempt.
"""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from trace_service.db.uow import unit_of_work
from trace_service.ingest import repository as ledger
from trace_service.settings import Settings

log = structlog.get_logger(__name__)

# The longest a row waits between two productions, however many attempts it had.
BACKOFF_CAP_SECONDS = 600.0
# Rows produced again per pass (one pass per worker tick).
BATCH = 5000


async def caught_up(consumer: AIOKafkaConsumer | None, slack: int) -> bool:
    """Whether the worker has read its partitions to (nearly) their end: at most ``slack`` records behind.

    Lag is the high watermark of the last fetch minus the position (the embedded broker's end offsets are
    wrong after batched writes). A worker with no partitions, or one that has not fetched yet, is not.
    """
    if consumer is None:
        return False
    assigned = consumer.assignment()
    if not assigned:
        return False
    behind = 0
    for tp in assigned:
        high = consumer.highwater(tp)
        if high is None:
            return False
        behind += max(0, high - await consumer.position(tp))
    return behind <= slack


async def redeliver_forgotten(
    engine: AsyncEngine, producer: AIOKafkaProducer, settings: Settings, consumer: AIOKafkaConsumer | None
) -> int:
    """Produce again the ledger rows that are due (acks=all); how many. Failures are the caller's to log:
    a row claimed but not produced is tried again after its next backoff, so nothing is lost."""
    # A backlog is consumed first: behind one, old rows are many and mostly waiting in the log, and scanning
    # them every tick would only slow the catch-up. Within one batch of the end, a row older than `after` is
    # rarely still in the log (after a stall it may be: its copy is then only extra work).
    if not await caught_up(consumer, settings.worker_max_records):
        return 0
    after = settings.redeliver_after_seconds
    async with unit_of_work(engine) as conn:
        await ledger.retire_rejected(conn, after_seconds=after)
        due = await ledger.claim_due(
            conn, after_seconds=after, cap_seconds=max(BACKOFF_CAP_SECONDS, after), limit=BATCH
        )
    if not due:
        return 0
    async with asyncio.timeout(settings.produce_timeout_seconds):
        futures = [await producer.send(row.topic, value=row.value, key=row.key, headers=row.headers) for row in due]
        await asyncio.gather(*futures)
    log.warning("ledger_redelivered", count=len(due), first_event_id=str(due[0].event_id))
    return len(due)
