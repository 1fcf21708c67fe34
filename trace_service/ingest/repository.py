"""SQL of the intake path: conflict checks, the intake ledger and event statuses."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_KNOWN = sa.text(
    """
    SELECT event_id, sha256, true AS applied FROM events WHERE event_id = ANY(CAST(:ids AS uuid[]))
    UNION ALL
    SELECT event_id, sha256, false FROM intake WHERE event_id = ANY(CAST(:ids AS uuid[]))
    """
)

_RECORD_INTAKE = sa.text(
    """
    INSERT INTO intake (event_id, operator, sha256)
    SELECT i.event_id, i.operator, i.sha256
    FROM unnest(CAST(:ids AS uuid[]), CAST(:operators AS text[]), CAST(:hashes AS bytea[]))
         AS i(event_id, operator, sha256)
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = i.event_id)
    ORDER BY i.event_id
    ON CONFLICT (event_id) DO NOTHING
    """
)

# One row per id: applied beats rejected beats accepted.
_STATUS = sa.text(
    """
    SELECT DISTINCT ON (event_id) event_id, status, operator, reason, message
    FROM (
        SELECT event_id, 'applied' AS status, 1 AS rank, operator, NULL AS reason, NULL AS message
          FROM events WHERE event_id = ANY(CAST(:ids AS uuid[]))
        UNION ALL
        SELECT event_id, 'rejected', 2, operator, error_code, error_message
          FROM dead_letters WHERE event_id = ANY(CAST(:ids AS uuid[]))
        UNION ALL
        SELECT event_id, 'accepted', 3, operator, NULL, NULL
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


async def record_intake(
    conn: AsyncConnection, ids: Sequence[uuid.UUID], operators: Sequence[str], hashes: Sequence[bytes]
) -> None:
    await conn.execute(_RECORD_INTAKE, {"ids": list(ids), "operators": list(operators), "hashes": list(hashes)})


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
