"""SQL of alerts: writing findings (with the outbox row and the event links in the same transaction),
reading, acknowledging and resolving, and the outbox relay's queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.alerts.models import Finding


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


# How an alert is served by GET /v1/alerts, published on trace.alerts.v1 and streamed: one rendering.
ALERT_JSON = """
json_build_object(
    'id', a.id, 'rule', a.rule, 'severity', a.severity, 'level', a.level,
    'subject', json_build_object('type', a.subject_type, 'code', a.subject_code),
    'operator', a.operator,
    'message', json_build_object('zh', a.message_zh, 'en', a.message_en),
    'evidence', a.evidence, 'status', a.status, 'version', a.version,
    'created_at', a.created_at, 'updated_at', a.updated_at,
    'acknowledged', CASE WHEN a.acknowledged_at IS NOT NULL THEN json_build_object(
        'by', a.acknowledged_by, 'at', a.acknowledged_at, 'note', a.acknowledged_note) END,
    'resolved', CASE WHEN a.resolved_at IS NOT NULL THEN json_build_object(
        'by', a.resolved_by, 'at', a.resolved_at, 'note', a.resolved_note) END
)
"""

# A finding found again with the same evidence changes nothing; new evidence updates the alert (and
# re-opens it if it had been resolved).
_UPSERT = """
INSERT INTO alerts (id, rule, severity, level, subject_type, subject_code, operator, message_zh, message_en, evidence)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::text[], $10::jsonb[])
ORDER BY 1
ON CONFLICT (id) DO UPDATE SET
    severity = excluded.severity, level = excluded.level, operator = COALESCE(excluded.operator, alerts.operator),
    message_zh = excluded.message_zh, message_en = excluded.message_en, evidence = excluded.evidence,
    status = CASE WHEN alerts.status = 'resolved' THEN 'open' ELSE alerts.status END,
    resolved_at = CASE WHEN alerts.status = 'resolved' THEN NULL ELSE alerts.resolved_at END,
    resolved_by = CASE WHEN alerts.status = 'resolved' THEN NULL ELSE alerts.resolved_by END,
    resolved_note = CASE WHEN alerts.status = 'resolved' THEN NULL ELSE alerts.resolved_note END,
    version = alerts.version + 1, updated_at = now()
WHERE alerts.evidence IS DISTINCT FROM excluded.evidence OR alerts.level IS DISTINCT FROM excluded.level
RETURNING id
"""

_LINK_EVENTS = """
INSERT INTO alert_events (event_id, alert_id)
SELECT * FROM unnest($1::uuid[], $2::text[]) ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""

_OUTBOX = f"""
INSERT INTO alert_outbox (alert_id, version, payload)
SELECT a.id, a.version, {ALERT_JSON}::jsonb FROM alerts a WHERE a.id = ANY($1::text[]) ORDER BY a.id
"""  # noqa: S608 - constant SQL


async def write_findings(conn: AsyncConnection, findings: Sequence[Finding]) -> list[str]:
    """Store findings as alerts; return the ids of the alerts created or changed (each got an outbox row)."""
    if not findings:
        return []
    unique: dict[str, Finding] = {}
    for f in findings:
        unique[f.alert_id] = f  # the last word of a batch about a subject wins
    rows = list(unique.values())
    result = await conn.exec_driver_sql(
        _UPSERT,
        (
            [f.alert_id for f in rows],
            [f.rule for f in rows],
            [f.severity.value for f in rows],
            [f.level.value if f.level else None for f in rows],
            [f.subject_type for f in rows],
            [f.subject_code for f in rows],
            [f.operator for f in rows],
            [f.message_zh for f in rows],
            [f.message_en for f in rows],
            [orjson.dumps(f.evidence, default=str).decode() for f in rows],
        ),
    )
    changed = sorted(r[0] for r in _rows(result))
    links = [(eid, f.alert_id) for f in findings for eid in f.event_ids]
    if links:
        await conn.exec_driver_sql(_LINK_EVENTS, ([e for e, _ in links], [a for _, a in links]))
    await publish(conn, changed)
    return changed


async def publish(conn: AsyncConnection, alert_ids: Sequence[str]) -> None:
    """Queue the current version of these alerts for Kafka and the live stream, in this transaction."""
    if not alert_ids:
        return
    await conn.exec_driver_sql(_OUTBOX, (list(alert_ids),))


# -- reads and transitions ---------------------------------------------------------------------------

_LIST = f"""
SELECT a.created_at, a.id, {ALERT_JSON}::text
FROM alerts a
WHERE ($1::text IS NULL OR a.status = $1)
  AND ($2::text IS NULL OR a.severity = $2)
  AND ($3::text IS NULL OR a.rule = $3)
  AND ($4::text IS NULL OR a.operator = $4)
  AND ($5::timestamptz IS NULL OR a.updated_at >= $5)
  AND ($6::timestamptz IS NULL OR (a.created_at, a.id) < ($6, $7::text))
  AND ($9::text IS NULL OR a.level = $9)
  -- a product: the market alerts about it (subject market/product/day) and its emergency_level alert
  AND ($10::text IS NULL OR (a.subject_type = 'market' AND split_part(a.subject_code, '/', 2) = $10)
       OR (a.subject_type = 'product' AND a.subject_code = $10))
ORDER BY a.created_at DESC, a.id DESC
LIMIT $8
"""  # noqa: S608 - constant SQL


async def list_alerts(
    conn: AsyncConnection,
    *,
    status: str | None,
    severity: str | None,
    rule: str | None,
    operator: str | None,
    since: datetime | None,
    before: tuple[datetime, str] | None,
    limit: int,
    level: str | None = None,
    product: str | None = None,
) -> list[tuple[datetime, str, str]]:
    result = await conn.exec_driver_sql(
        _LIST,
        (
            status, severity, rule, operator, since, before[0] if before else None, before[1] if before else None,
            limit, level, product,
        ),
    )  # fmt: skip
    return [(r[0], r[1], r[2]) for r in _rows(result)]


async def get_alert(conn: AsyncConnection, alert_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    sql = "SELECT id, status, version FROM alerts WHERE id = $1" + (" FOR UPDATE" if lock else "")  # noqa: S608
    row = _rows(await conn.exec_driver_sql(sql, (alert_id,)))
    return {"id": row[0][0], "status": row[0][1], "version": row[0][2]} if row else None


async def alert_json(conn: AsyncConnection, alert_id: str) -> str | None:
    rows = _rows(await conn.exec_driver_sql(f"SELECT {ALERT_JSON}::text FROM alerts a WHERE a.id = $1", (alert_id,)))  # noqa: S608
    return str(rows[0][0]) if rows else None


async def transition(conn: AsyncConnection, alert_id: str, status: str, actor: str, note: str | None) -> None:
    if status == "acknowledged":
        sql = """UPDATE alerts SET status = 'acknowledged', acknowledged_by = $2, acknowledged_at = now(),
                 acknowledged_note = $3, version = version + 1, updated_at = now() WHERE id = $1"""
    else:
        sql = """UPDATE alerts SET status = 'resolved', resolved_by = $2, resolved_at = now(), resolved_note = $3,
                 version = version + 1, updated_at = now() WHERE id = $1"""
    await conn.exec_driver_sql(sql, (alert_id, actor, note))
    await publish(conn, [alert_id])


# The service withdrawing alerts that later data refutes (contract section 11): resolved by `system` with a
# note each, in id order (the lock order of the upsert), skipping those already resolved.
_RESOLVE_BY_SYSTEM = """
WITH target AS (
    SELECT a.id, n.note FROM alerts a JOIN unnest($1::text[], $2::text[]) AS n(id, note) ON n.id = a.id
    WHERE a.status <> 'resolved' ORDER BY a.id FOR UPDATE OF a
)
UPDATE alerts a SET status = 'resolved', resolved_by = 'system', resolved_at = now(), resolved_note = t.note,
    version = a.version + 1, updated_at = now()
FROM target t WHERE a.id = t.id
RETURNING a.id
"""


async def resolve_by_system(conn: AsyncConnection, notes: dict[str, str]) -> list[str]:
    """Resolve these alerts as the service (actor ``system``), each with its note, unless already resolved, and
    queue their new versions like any change; return the ids resolved."""
    if not notes:
        return []
    ids = sorted(notes)
    result = await conn.exec_driver_sql(_RESOLVE_BY_SYSTEM, (ids, [notes[i] for i in ids]))
    resolved = sorted(r[0] for r in _rows(result))
    await publish(conn, resolved)
    return resolved


async def alerts_of_events(conn: AsyncConnection, event_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    if not event_ids:
        return {}
    rows = await conn.exec_driver_sql(
        f"""SELECT ae.event_id, {ALERT_JSON}::text FROM alert_events ae JOIN alerts a ON a.id = ae.alert_id
            WHERE ae.event_id = ANY($1::uuid[]) ORDER BY a.created_at, a.id""",  # noqa: S608
        (list(event_ids),),
    )
    out: dict[uuid.UUID, list[Any]] = {}
    for event_id, body in _rows(rows):
        out.setdefault(event_id, []).append(orjson.loads(body))
    return out


# -- the outbox --------------------------------------------------------------------------------------


async def outbox_after(conn: AsyncConnection, after: int, limit: int = 500) -> list[tuple[int, str, str]]:
    """Outbox rows after an id, for the live stream: (id, alert id, payload)."""
    rows = await conn.exec_driver_sql(
        "SELECT id, alert_id, payload::text FROM alert_outbox WHERE id > $1 ORDER BY id LIMIT $2", (after, limit)
    )
    return [(r[0], r[1], r[2]) for r in _rows(rows)]


async def outbox_head(conn: AsyncConnection) -> int:
    rows = _rows(await conn.exec_driver_sql("SELECT COALESCE(max(id), 0) FROM alert_outbox"))
    return int(rows[0][0])


async def claim_unpublished(conn: AsyncConnection, limit: int = 1000) -> list[tuple[int, str, str]]:
    rows = await conn.exec_driver_sql(
        """SELECT id, alert_id, payload::text FROM alert_outbox WHERE published_at IS NULL
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        (limit,),
    )
    return [(r[0], r[1], r[2]) for r in _rows(rows)]


async def mark_published(conn: AsyncConnection, ids: Sequence[int]) -> None:
    await conn.exec_driver_sql(
        "UPDATE alert_outbox SET published_at = now() WHERE id = ANY($1::bigint[])", (list(ids),)
    )
