"""Set-based SQL of the projector. Every statement takes a whole batch; nothing runs per event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.worker.decode import Dead, Decoded

# Rows are inserted in event_id order so that two workers handed overlapping batches during a
# rebalance take row locks in the same order and cannot deadlock.
_INSERT_EVENTS = """
INSERT INTO events (event_id, event_type, occurred_at, operator, envelope, sha256, source,
                    kafka_partition, kafka_offset)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[], $6::bytea[],
                     $7::text[], $8::int[], $9::bigint[])
ORDER BY 1
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""

_EXISTING = "SELECT event_id, sha256 FROM events WHERE event_id = ANY($1::uuid[])"

_CLEAR_INTAKE = "DELETE FROM intake WHERE event_id = ANY($1::uuid[])"

_INSERT_DEAD = """
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, kafka_key, raw, error_code, error_message,
                          details, event_id, operator)
SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[], $6::text[], $7::text[],
                     $8::jsonb[], $9::uuid[], $10::text[])
ON CONFLICT ON CONSTRAINT uq_dead_letters_position DO NOTHING
"""


async def insert_events(conn: AsyncConnection, items: Sequence[Decoded]) -> set[uuid.UUID]:
    """Store the events; return the ids that were new (the rest were already stored)."""
    if not items:
        return set()
    ev = [i.event for i in items]
    result = await conn.exec_driver_sql(
        _INSERT_EVENTS,
        (
            [e.event_id for e in ev],  # type: ignore[attr-defined]
            [e.event_type for e in ev],  # type: ignore[attr-defined]
            [e.occurred_at for e in ev],  # type: ignore[attr-defined]
            [e.operator for e in ev],  # type: ignore[attr-defined]
            [i.canonical.decode() for i in items],
            [i.sha256 for i in items],
            [i.source for i in items],
            [i.position.partition for i in items],
            [i.position.offset for i in items],
        ),
    )
    return {row[0] for row in result}


async def stored_fingerprints(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, bytes]:
    if not ids:
        return {}
    result = await conn.exec_driver_sql(_EXISTING, (list(ids),))
    rows: list[Any] = list(result)
    return {row[0]: bytes(row[1]) for row in rows}


# The API records an intake row after the broker acknowledged the event; if the worker applied the event
# in a transaction that had not committed yet, the row is left behind (its status still reads "applied").
_CLEAR_APPLIED_INTAKE = """
DELETE FROM intake i WHERE EXISTS (SELECT 1 FROM events e WHERE e.event_id = i.event_id)
"""


async def clear_applied_intake(conn: AsyncConnection) -> int:
    """Delete the intake rows of events already applied (left behind by that race); how many."""
    result = await conn.exec_driver_sql(_CLEAR_APPLIED_INTAKE)
    return int(result.rowcount or 0)


async def clear_intake(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> None:
    if ids:
        await conn.exec_driver_sql(_CLEAR_INTAKE, (list(ids),))


async def insert_dead_letters(conn: AsyncConnection, dead: Sequence[Dead]) -> None:
    if not dead:
        return
    await conn.exec_driver_sql(
        _INSERT_DEAD,
        (
            [d.position.topic for d in dead],
            [d.position.partition for d in dead],
            [d.position.offset for d in dead],
            [d.key for d in dead],
            [d.raw for d in dead],
            [d.code for d in dead],
            [d.message for d in dead],
            [orjson.dumps(d.details).decode() if d.details else None for d in dead],
            [d.event_id for d in dead],
            [d.operator for d in dead],
        ),
    )
