"""Set-based SQL of the projector. Every statement takes a whole batch; nothing runs per event."""

from __future__ import annotations

import base64
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
            [e.event_id for e in ev],
            [e.event_type for e in ev],
            [e.occurred_at for e in ev],
            [e.operator for e in ev],
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


# -- events parked until the lot they name has a holder (contract section 7) -----------------------------

_PARK = """
INSERT INTO parked_events (topic, kafka_partition, kafka_offset, event_id, operator, kafka_key, raw, headers,
                           waits_for)
SELECT p.topic, p.part, p.off, p.event_id, p.operator, p.key, p.raw, p.headers::jsonb,
       ARRAY(SELECT jsonb_array_elements_text(p.waits::jsonb))
FROM unnest($1::text[], $2::int[], $3::bigint[], $4::uuid[], $5::text[], $6::bytea[], $7::bytea[], $8::text[],
            $9::text[]) AS p(topic, part, off, event_id, operator, key, raw, headers, waits)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""

_UNPARK = """
DELETE FROM parked_events p
USING unnest($1::text[], $2::int[], $3::bigint[]) AS x(topic, part, off)
WHERE p.topic = x.topic AND p.kafka_partition = x.part AND p.kafka_offset = x.off
"""

# Parked events all of whose lots now have a holder ($1: codes created just now, or NULL for any).
_READY = """
SELECT p.topic, p.kafka_partition, p.kafka_offset, p.kafka_key, p.raw, p.headers
FROM parked_events p
WHERE (CAST($1 AS text[]) IS NULL OR p.waits_for && $1::text[])
  AND (CAST($3 AS float8) IS NULL OR p.parked_at > now() - make_interval(secs => $3))
  AND NOT EXISTS (
      SELECT 1 FROM unnest(p.waits_for) w(code)
      LEFT JOIN lots l ON l.code = w.code
      WHERE l.created_by_event IS NULL
  )
ORDER BY p.parked_at
LIMIT $2
"""

# Parked longer than the grace period: the lot never got a creating event.
_EXPIRED = """
DELETE FROM parked_events p
WHERE (topic, kafka_partition, kafka_offset) IN (
    SELECT topic, kafka_partition, kafka_offset FROM parked_events
    WHERE parked_at < now() - make_interval(secs => $1)
    ORDER BY parked_at LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING topic, kafka_partition, kafka_offset, kafka_key, raw, headers, event_id, operator, waits_for
"""


def _headers_json(headers: Sequence[tuple[str, bytes]]) -> str:
    return orjson.dumps([[k, base64.b64encode(v).decode()] for k, v in headers]).decode()


def headers_from_json(value: Any) -> tuple[tuple[str, bytes], ...]:
    return tuple((str(k), base64.b64decode(v)) for k, v in (value or []))


async def park(conn: AsyncConnection, items: Sequence[tuple[Decoded, list[str]]]) -> None:
    if not items:
        return
    await conn.exec_driver_sql(
        _PARK,
        (
            [d.position.topic for d, _ in items],
            [d.position.partition for d, _ in items],
            [d.position.offset for d, _ in items],
            [d.event.event_id for d, _ in items],
            [d.event.operator for d, _ in items],
            [d.key for d, _ in items],
            [d.raw for d, _ in items],
            [_headers_json(d.headers) for d, _ in items],
            [orjson.dumps(sorted(set(w))).decode() for _, w in items],
        ),
    )


async def unpark(conn: AsyncConnection, positions: Sequence[tuple[str, int, int]]) -> None:
    if positions:
        await conn.exec_driver_sql(
            _UNPARK, ([p[0] for p in positions], [p[1] for p in positions], [p[2] for p in positions])
        )


async def ready_parked(
    conn: AsyncConnection, codes: Sequence[str] | None, limit: int = 5000, *, parked_within: float | None = None
) -> list[Any]:
    """Parked events whose lots all have a holder now: among those waiting for ``codes`` (None: any), parked in
    the last ``parked_within`` seconds (None: ever)."""
    if codes is not None and not codes:
        return []
    rows = await conn.exec_driver_sql(_READY, (list(codes) if codes is not None else None, limit, parked_within))
    return list(rows)


async def expire_parked(conn: AsyncConnection, after_seconds: float, limit: int = 5000) -> list[Any]:
    return list(await conn.exec_driver_sql(_EXPIRED, (float(after_seconds), limit)))
