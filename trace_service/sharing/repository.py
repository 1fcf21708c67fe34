"""SQL of sharing: appending items to the shared stream under its lock, reading it by seq, exports, the audit.

The order of the stream (docs/adr/0006-shared-stream-order.md): every writer takes the transaction-scoped
advisory lock :data:`STREAM_LOCK` as the last thing before its commit and only then draws ``seq`` values from
``shared_items_seq``. The lock is released after the commit has become visible, so the next writer's numbers
are larger than every number already committed: a reader that has seen ``seq`` N will never find a smaller
one appear later. Alert versions are appended by a deferred trigger on ``alert_outbox`` (migration 0011),
which runs at commit under the same lock, so every path that writes an alert version shares it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.access import repository as access_repo

# pg_advisory_xact_lock key of the stream: a constant, shared with the alert trigger of migration 0011.
STREAM_LOCK = 7_310_013_000_000_001


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


# -- writing ---------------------------------------------------------------------------------------------

_LOCK = "SELECT pg_advisory_xact_lock($1)"

# Events as stored, in the order given, plus what the service recorded; the region is the reporting operator's.
_EVENTS = """
INSERT INTO shared_items (seq, kind, event_type, region, operator, item)
SELECT nextval('shared_items_seq'), 'event', e.event_type, o.region, e.operator,
       e.envelope || jsonb_build_object('recorded_at', e.recorded_at, 'source', e.source)
FROM unnest($1::uuid[]) WITH ORDINALITY AS i(event_id, n)
JOIN events e ON e.event_id = i.event_id
LEFT JOIN operators o ON o.code = e.operator
ORDER BY i.n
"""

# The figures of each touched (day, market, product) as they stand now, summed over the writers' shards.
# Read after the lock is taken, so a later item of a cell includes every earlier writer's share of it.
_MARKET = """
INSERT INTO shared_items (seq, kind, region, operator, item)
SELECT nextval('shared_items_seq'), 'market', f.region, f.market,
       jsonb_build_object('day', f.day, 'market', f.market, 'region', f.region, 'product_code', f.product,
                          'kg_received', f.kg_received, 'kg_sold', f.kg_sold, 'head', f.head,
                          'avg_price', round(f.sales_amount / NULLIF(f.kg_sold, 0), 3))
FROM (
    SELECT c.day, c.market, c.product, o.region, sum(r.kg_received) AS kg_received, sum(r.kg_sold) AS kg_sold,
           sum(r.head) AS head, sum(r.sales_amount) AS sales_amount
    FROM (SELECT DISTINCT * FROM unnest($1::date[], $2::text[], $3::text[]) AS c(day, market, product)) c
    JOIN market_rollup_daily r ON r.market = c.market AND r.product_code = c.product AND r.day = c.day
    LEFT JOIN operators o ON o.code = c.market
    GROUP BY c.day, c.market, c.product, o.region
    ORDER BY c.day, c.market, c.product
) f
"""


async def lock_stream(conn: AsyncConnection) -> None:
    """Take the stream's lock until the end of this transaction: call it right before the commit."""
    await conn.exec_driver_sql(_LOCK, (STREAM_LOCK,))


async def append(
    conn: AsyncConnection,
    *,
    event_ids: Sequence[uuid.UUID] = (),
    market_cells: Sequence[tuple[date, str, str]] = (),
) -> None:
    """Share these applied events (in this order) and the current figures of these market cells.

    The last writes of the transaction: the stream's lock is held from here to the commit, and every other
    writer of the stream waits for it.
    """
    if not event_ids and not market_cells:
        return
    await lock_stream(conn)
    if event_ids:
        await conn.exec_driver_sql(_EVENTS, (list(event_ids),))
    if market_cells:
        cells = sorted(set(market_cells))
        await conn.exec_driver_sql(_MARKET, ([c[0] for c in cells], [c[1] for c in cells], [c[2] for c in cells]))


# -- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """Which items a reader gets, as SQL can test them. None means no restriction on that column."""

    kinds: Sequence[str]
    event_types: Sequence[str] | None = None
    rules: Sequence[str] | None = None
    regions: Sequence[str] | None = None  # prefixes of region codes

    @property
    def unrestricted(self) -> bool:
        return (
            set(self.kinds) >= {"event", "alert", "market"}
            and self.event_types is None
            and self.rules is None
            and self.regions is None
        )


_ALL = "SELECT seq, kind, event_type, item::text FROM shared_items WHERE seq > $1 ORDER BY seq LIMIT $2"

# A window of at most $2 items after the cursor is scanned (the primary key's range), filtered, and up to $3 of
# the items that pass are read whole. The first row is the last seq of the window, in the same snapshot: the
# cursor a reader with narrow scopes moves to when the window held fewer hits than it asked for.
_FILTERED = """
WITH scanned AS MATERIALIZED (
    SELECT seq, kind, event_type, rule, region FROM shared_items WHERE seq > $1 ORDER BY seq LIMIT $2
),
hits AS (
    SELECT seq FROM scanned
    WHERE kind = ANY($4::text[])
      AND (kind <> 'event' OR $5::text[] IS NULL OR event_type = ANY($5::text[]))
      AND (kind <> 'alert' OR $6::text[] IS NULL OR rule = ANY($6::text[]))
      AND ($7::text[] IS NULL OR EXISTS (SELECT 1 FROM unnest($7::text[]) p WHERE starts_with(region, p)))
    ORDER BY seq LIMIT $3
)
SELECT 0 AS part, max(seq), NULL, NULL, NULL FROM scanned
UNION ALL
SELECT 1, s.seq, s.kind, s.event_type, s.item::text FROM hits h JOIN shared_items s ON s.seq = h.seq
ORDER BY 1, 2
"""


Row = tuple[int, str, str | None, str]  # seq, kind, event type (events), item as JSON text


async def read_after(
    conn: AsyncConnection, after: int, limit: int, where: Filter, *, scan: int
) -> tuple[list[Row], int]:
    """Items after ``after`` that pass ``where``, and the last seq scanned (``after`` when nothing was)."""
    if where.unrestricted:
        rows: list[Row] = [(r[0], r[1], r[2], r[3]) for r in _rows(await conn.exec_driver_sql(_ALL, (after, limit)))]
        return rows, rows[-1][0] if rows else after
    if not where.kinds:
        return [], after
    result = await conn.exec_driver_sql(
        _FILTERED,
        (
            after,
            max(scan, 1),
            limit,
            list(where.kinds),
            None if where.event_types is None else list(where.event_types),
            None if where.rules is None else list(where.rules),
            None if where.regions is None else list(where.regions),
        ),
    )
    found = _rows(result)
    window_end = found[0][1] if found and found[0][0] == 0 and found[0][1] is not None else after
    hits: list[Row] = [(r[1], r[2], r[3], r[4]) for r in found if r[0] == 1]
    next_seq = hits[-1][0] if len(hits) == limit else window_end
    return hits, next_seq


async def event_type(conn: AsyncConnection, event_id: uuid.UUID) -> str | None:
    """The type of a stored event (for the scope of a department's read), None when it is not stored."""
    rows = _rows(await conn.exec_driver_sql("SELECT event_type FROM events WHERE event_id = $1", (event_id,)))
    return str(rows[0][0]) if rows else None


async def head(conn: AsyncConnection) -> int:
    rows = _rows(await conn.exec_driver_sql("SELECT COALESCE(max(seq), 0) FROM shared_items"))
    return int(rows[0][0])


# -- exports ---------------------------------------------------------------------------------------------

# A page of stored events in (occurred_at, event_id) order, keyset-paged, for the streamed export.
_EXPORT = """
SELECT e.occurred_at, e.event_id, e.event_type,
       (e.envelope || jsonb_build_object('recorded_at', e.recorded_at, 'source', e.source))::text
FROM events e
WHERE e.occurred_at >= $1 AND e.occurred_at < $2
  AND e.event_type = ANY($3::text[])
  AND (e.occurred_at, e.event_id) > ($4, $5::uuid)
ORDER BY e.occurred_at, e.event_id
LIMIT $6
"""


async def export_page(
    conn: AsyncConnection,
    *,
    start: datetime,
    end: datetime,
    event_types: Sequence[str],
    after: tuple[datetime, uuid.UUID],
    limit: int,
) -> list[tuple[datetime, uuid.UUID, str, str]]:
    """Events with ``start <= occurred_at < end`` of these types after the key ``after``: (occurred_at,
    event_id, event_type, item JSON text)."""
    rows = await conn.exec_driver_sql(_EXPORT, (start, end, list(event_types), after[0], after[1], limit))
    return [(r[0], r[1], r[2], r[3]) for r in _rows(rows)]


# -- the audit -------------------------------------------------------------------------------------------


# One line of the audit. The statement is access's, so that the read endpoints below this package (chain,
# which may not import sharing) write the same lines; this name is the sharing side's way to it.
record_audit = access_repo.record_audit


async def open_audit(
    conn: AsyncConnection, *, actor: str, role: str, action: str, subject: str, detail: dict[str, Any]
) -> int:
    """An audit line for something that is still being sent (an export); :func:`close_audit` gives its count."""
    return await access_repo.record_audit(
        conn, actor=actor, role=role, action=action, subject=subject, count=0, detail=detail
    )


async def close_audit(conn: AsyncConnection, entry_id: int, count: int, *, complete: bool) -> None:
    await conn.exec_driver_sql(
        "UPDATE audit_log SET count = $2, detail = detail || jsonb_build_object('complete', $3::bool) WHERE id = $1",
        (entry_id, count, complete),
    )


_AUDIT_LIST = """
SELECT id, actor, role, action, subject, count, first_seq, last_seq, detail::text, at
FROM audit_log
WHERE ($1::text IS NULL OR actor = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
  AND ($4::bigint IS NULL OR id < $4)
ORDER BY id DESC
LIMIT $5
"""


async def list_audit(
    conn: AsyncConnection,
    *,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = await conn.exec_driver_sql(_AUDIT_LIST, (actor, action, since, before, limit))
    return [
        {
            "id": r[0],
            "actor": r[1],
            "role": r[2],
            "action": r[3],
            "subject": r[4],
            "count": r[5],
            "first_seq": r[6],
            "last_seq": r[7],
            "detail": orjson.loads(r[8]),
            "at": r[9],
        }
        for r in _rows(rows)
    ]
