"""SQL of the intake path: conflict checks, the intake ledger (with each event's message) and event statuses."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_KNOWN = sa.text(
    """
    SELECT event_id, sha256, true AS applied FROM events WHERE event_id = ANY(CAST(:ids AS uuid[]))
    UNION ALL
    SELECT event_id, sha256, false FROM intake WHERE event_id = ANY(CAST(:ids AS uuid[]))
    """
)

# The ledger rows of a request, with the messages as they will be produced. Ids already applied need no
# row; ids with a row from an earlier attempt keep it (same content: the conflict check ran). RETURNING
# tells which rows this request added, the only ones it may take back if producing fails.
_RECORD_INTAKE = sa.text(
    """
    INSERT INTO intake (event_id, operator, sha256, topic, kafka_key, value, headers)
    SELECT i.event_id, i.operator, i.sha256, CAST(:topic AS text), i.kafka_key, i.value, i.headers
    FROM unnest(CAST(:ids AS uuid[]), CAST(:operators AS text[]), CAST(:hashes AS bytea[]),
                CAST(:keys AS bytea[]), CAST(:values AS bytea[]), CAST(:headers AS jsonb[]))
         AS i(event_id, operator, sha256, kafka_key, value, headers)
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = i.event_id)
    ORDER BY i.event_id
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
    """
)

_FORGET_INTAKE = sa.text("DELETE FROM intake WHERE event_id = ANY(CAST(:ids AS uuid[]))")

# One row per id: applied beats rejected beats waiting for a lot's holder (parked) beats accepted.
_STATUS = sa.text(
    """
    SELECT DISTINCT ON (event_id) event_id, status, operator, reason, message
    FROM (
        SELECT event_id, 'applied' AS status, 1 AS rank, operator, NULL AS reason, NULL AS message
          FROM events WHERE event_id = ANY(CAST(:ids AS uuid[]))
        UNION ALL
        SELECT d.event_id, 'rejected', 2, d.operator, d.error_code, d.error_message
          FROM dead_letters d WHERE d.event_id = ANY(CAST(:ids AS uuid[]))
           -- a refused copy that names another operator than the accepted event cannot reject it
           AND NOT EXISTS (SELECT 1 FROM intake i WHERE i.event_id = d.event_id AND i.operator <> d.operator)
        UNION ALL
        SELECT event_id, 'accepted', 3, operator, 'waiting_for_lot', array_to_string(waits_for, ',')
          FROM parked_events WHERE event_id = ANY(CAST(:ids AS uuid[]))
        UNION ALL
        SELECT event_id, 'accepted', 4, operator, NULL, NULL
          FROM intake WHERE event_id = ANY(CAST(:ids AS uuid[]))
    ) s
    ORDER BY event_id, rank
    """
)


async def known_fingerprints(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[bytes]]:
    found: dict[uuid.UUID, list[bytes]] = {}
    for row in await conn.execute(_KNOWN, {"ids": list(ids)}):
        found.setdefault(row.event_id, []).append(bytes(row.sha256))
    return found


@dataclass(frozen=True)
class LedgerEntry:
    """One accepted event and the message that carries it, as the API produces it."""

    event_id: uuid.UUID
    operator: str
    sha256: bytes
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]]


def encode_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    """Kafka headers as JSON ``[[name, base64 value], ...]``: byte-exact and in order (a signature covers them)."""
    return orjson.dumps([[name, base64.b64encode(value).decode()] for name, value in headers]).decode()


def decode_headers(stored: Sequence[Sequence[str]]) -> list[tuple[str, bytes]]:
    return [(name, base64.b64decode(value)) for name, value in stored]


async def record_intake(conn: AsyncConnection, topic: str, entries: Sequence[LedgerEntry]) -> list[uuid.UUID]:
    """Write the ledger rows of a request in one statement; the ids of the rows it added."""
    result = await conn.execute(
        _RECORD_INTAKE,
        {
            "topic": topic,
            "ids": [e.event_id for e in entries],
            "operators": [e.operator for e in entries],
            "hashes": [e.sha256 for e in entries],
            "keys": [e.key for e in entries],
            "values": [e.value for e in entries],
            "headers": [encode_headers(e.headers) for e in entries],
        },
    )
    return [row.event_id for row in result]


async def forget_intake(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> None:
    """Take back ledger rows whose events were not produced (the request answers 503)."""
    if ids:
        await conn.execute(_FORGET_INTAKE, {"ids": list(ids)})


async def statuses(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    rows = await conn.execute(_STATUS, {"ids": list(ids)})
    return {row.event_id: dict(row._mapping) for row in rows}


_DEAD_LETTERS = sa.text(
    """
    SELECT id, topic, kafka_partition, kafka_offset, kafka_key, raw, error_code, error_message, details,
           event_id, operator, recorded_at
    FROM dead_letters
    WHERE (CAST(:before AS bigint) IS NULL OR id < :before)
      AND (CAST(:code AS text) IS NULL OR error_code = :code)
    ORDER BY id DESC
    LIMIT :limit
    """
)


async def dead_letters(
    conn: AsyncConnection, *, before: int | None, code: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(_DEAD_LETTERS, {"before": before, "code": code, "limit": limit})
    return [dict(r._mapping) for r in rows]


# -- the redeliverer's side of the ledger (run by the worker, worker/redeliver.py) -------------------------

# A row whose message became a dead letter will never be applied: it drops its message (and leaves the
# redeliverer's index) but keeps its fingerprint, so its status still reads from the dead letter and the
# same id with other content is still a conflict.
_RETIRE_REJECTED = sa.text(
    """
    UPDATE intake i SET value = NULL, headers = NULL
    FROM dead_letters d
    WHERE i.value IS NOT NULL
      AND i.produced_at < now() - make_interval(secs => CAST(:after AS double precision))
      AND d.event_id = i.event_id AND d.raw = i.value
    """
)

# Rows not applied long after they were produced, each waiting after * 2^(attempts-1) s (capped) since
# its last production. Claimed by moving produced_at in the same statement: SKIP LOCKED keeps two workers
# off the same rows, and the moved time keeps the next pass off them. An event held back by the worker
# (parked until its lot has a holder) is in the database, not lost.
_CLAIM_DUE = sa.text(
    """
    UPDATE intake i
    SET produced_at = now(), attempts = i.attempts + 1
    FROM (
        SELECT c.event_id
        FROM intake c
        WHERE c.value IS NOT NULL
          AND c.produced_at < now() - make_interval(secs => CAST(:after AS double precision))
          AND c.produced_at < now() - make_interval(
                secs => least(CAST(:after AS double precision) * power(2, least(c.attempts - 1, 20)),
                              CAST(:cap AS double precision)))
          AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = c.event_id)
          AND NOT EXISTS (SELECT 1 FROM parked_events p WHERE p.event_id = c.event_id)
        ORDER BY c.produced_at
        LIMIT :limit
        FOR UPDATE OF c SKIP LOCKED
    ) due
    WHERE i.event_id = due.event_id
    RETURNING i.event_id, i.topic, i.kafka_key, i.value, i.headers
    """
)

# Accepted and neither applied nor rejected: what a stopping `dev` waits for.
_PENDING = sa.text(
    """
    SELECT count(*) FROM intake i
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = i.event_id)
      AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = i.event_id)
    """
)


@dataclass(frozen=True)
class Redelivery:
    event_id: uuid.UUID
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


async def retire_rejected(conn: AsyncConnection, *, after_seconds: float) -> int:
    result = await conn.execute(_RETIRE_REJECTED, {"after": after_seconds})
    return int(result.rowcount or 0)


async def claim_due(conn: AsyncConnection, *, after_seconds: float, cap_seconds: float, limit: int) -> list[Redelivery]:
    """Claim up to ``limit`` rows due for another production (their attempt counted now)."""
    rows = await conn.execute(_CLAIM_DUE, {"after": after_seconds, "cap": cap_seconds, "limit": limit})
    return [
        Redelivery(
            r.event_id,
            r.topic,
            bytes(r.kafka_key) if r.kafka_key is not None else None,
            bytes(r.value),
            decode_headers(r.headers or []),
        )
        for r in rows
    ]


async def pending_count(conn: AsyncConnection) -> int:
    return int((await conn.execute(_PENDING)).scalar_one())
