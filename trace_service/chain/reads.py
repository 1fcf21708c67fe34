"""The read side of the lot store: a lot, its facts, the lineage, the recall (paged) and the consumer's view.

Every read that walks the graph uses the one walk of ``chain/sql.py``. The lineage, the recall and the public
view each run as one statement that walks, loads what it found and renders the JSON in Postgres: the service
adds nothing per row. The write side is ``chain/writes.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.chain.sql import found, walk

_LOT_BY_CODE = "SELECT id FROM lots WHERE code = $1"

_LOAD_LOTS = """
SELECT l.id, l.code, l.kind, l.product_code, l.product_name, l.holder, o.name AS holder_name, o.kind AS holder_kind,
       o.parent AS holder_parent, l.status, l.kg_in, l.kg_out, l.kg_sold, l.head_in, l.head_out, l.created_at,
       l.created_by_event, l.creator_type, l.origin_region, l.documents::text AS documents
FROM lots l LEFT JOIN operators o ON o.code = l.holder
WHERE l.id = ANY($1::bigint[])
"""

_LOAD_EVENTS = """
SELECT event_id, event_type, occurred_at, operator, recorded_at
FROM events WHERE event_id = ANY($1::uuid[])
ORDER BY occurred_at, event_id
"""

_LOAD_FACTS = """
SELECT l.code AS lot, f.fact, f.result, f.occurred_at, f.event_id, f.data::text AS data
FROM lot_facts f JOIN lots l ON l.id = f.lot_id
WHERE f.lot_id = ANY($1::bigint[])
ORDER BY f.occurred_at, f.event_id
"""

# A buyer's claim that is still pending grants no right to read the seller's lot: the walk down from an
# operator's view follows confirmed links only.
_HELD_IN_SCOPE = f"""
WITH RECURSIVE {walk("down", "down", "SELECT $1::bigint, 0", max_depth="$2", skip_pending="true")}
SELECT EXISTS (SELECT 1 FROM down JOIN lots l ON l.id = down.id WHERE l.holder = ANY($3::text[]))
"""


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


async def lot_id(conn: AsyncConnection, code: str) -> int | None:
    row = (await conn.exec_driver_sql(_LOT_BY_CODE, (code,))).first()
    return int(row[0]) if row else None


async def load_lots(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = await conn.exec_driver_sql(_LOAD_LOTS, (list(ids),))
    out = []
    for r in rows.mappings():
        d = dict(r)
        d["documents"] = orjson.loads(d["documents"]) if d["documents"] else {}
        out.append(d)
    return out


async def load_events(conn: AsyncConnection, event_ids: Sequence[Any]) -> list[dict[str, Any]]:
    if not event_ids:
        return []
    return [dict(r) for r in (await conn.exec_driver_sql(_LOAD_EVENTS, (list(event_ids),))).mappings()]


async def load_facts(conn: AsyncConnection, ids: Sequence[int]) -> list[dict[str, Any]]:
    out = []
    for r in (await conn.exec_driver_sql(_LOAD_FACTS, (list(ids),))).mappings():
        d = dict(r)
        d["data"] = orjson.loads(d["data"])
        out.append(d)
    return out


async def feeds_scope(conn: AsyncConnection, root: int, scope: Sequence[str], max_depth: int) -> bool:
    """Is the lot, or any lot made from it, held by one of these operators?"""
    row = (await conn.exec_driver_sql(_HELD_IN_SCOPE, (root, max_depth, list(scope)))).first()
    return bool(row and row[0])


# -- lineage as one statement --------------------------------------------------------------------------
# $1 code, $2 max depth, $3 direction (up | down | both), $4 confirmed links only.

_ROOT = "SELECT l.id, 0 FROM lots l WHERE l.code = $1::text AND $3::text IN ('{way}', 'both')"
_WALKS = f"""
WITH RECURSIVE
{walk("up", "up", _ROOT.format(way="up"), max_depth="$2", skip_pending="$4::bool")},
{walk("down", "down", _ROOT.format(way="down"), max_depth="$2", skip_pending="$4::bool")},
{found("up", "down")}
"""

TRACE_JSON = (
    _WALKS
    + """,
lot_rows AS (
    SELECT l.code, f.depth, l.created_by_event,
           json_build_object(
               'code', l.code, 'kind', l.kind, 'product_code', l.product_code, 'product_name', l.product_name,
               'holder', l.holder, 'holder_name', o.name, 'status', l.status,
               'kg_in', l.kg_in, 'kg_out', l.kg_out, 'kg_on_hand', l.kg_in - l.kg_out, 'kg_sold', l.kg_sold,
               'head', CASE WHEN l.head_in > 0 THEN json_build_object(
                   'in', l.head_in, 'out', l.head_out, 'on_hand', l.head_in - l.head_out) END,
               'origin_region', l.origin_region, 'created_at', l.created_at,
               'created_by_event', l.created_by_event, 'depth', f.depth
           ) AS j
    FROM found f JOIN lots l ON l.id = f.id LEFT JOIN operators o ON o.code = l.holder
),
-- The edges between found lots, driven from the found lots through the (child, parent) index: on a small
-- graph the planner would otherwise scan and hash the whole edges table (OFFSET 0 keeps the lateral apart).
edge_rows AS (
    SELECT e.event_id, p.code AS parent, c.code AS child,
           json_build_object('from', p.code, 'to', c.code, 'kg', e.kg, 'head', e.head, 'kind', e.kind,
                             'event_id', e.event_id, 'pending', e.pending) AS j
    FROM found b
    JOIN LATERAL (SELECT * FROM edges x WHERE x.child_id = b.id OFFSET 0) e ON true
    JOIN lots p ON p.id = e.parent_id
    JOIN lots c ON c.id = e.child_id
    WHERE e.parent_id IN (SELECT id FROM found) AND NOT (e.pending AND $4::bool)
),
event_rows AS (
    SELECT ev.occurred_at, ev.event_id,
           json_build_object('event_id', ev.event_id, 'event_type', ev.event_type,
                             'occurred_at', ev.occurred_at, 'operator', ev.operator) AS j
    FROM events ev
    WHERE ev.event_id IN (
        SELECT event_id FROM edge_rows UNION SELECT created_by_event FROM lot_rows WHERE created_by_event IS NOT NULL
    )
)
SELECT json_build_object(
    'root', $1::text, 'direction', $3::text, 'max_depth', $2::int,
    'lots', COALESCE((SELECT json_agg(j ORDER BY depth, code) FROM lot_rows), '[]'),
    'edges', COALESCE((SELECT json_agg(j ORDER BY parent, child, event_id) FROM edge_rows), '[]'),
    'events', COALESCE((SELECT json_agg(j ORDER BY occurred_at, event_id) FROM event_rows), '[]')
)::text
WHERE EXISTS (SELECT 1 FROM found)
"""
)


async def trace_json(
    conn: AsyncConnection, code: str, direction: str, max_depth: int, *, confirmed_only: bool = False
) -> str | None:
    """The lineage of a lot code as JSON text; None when no such lot exists.

    ``confirmed_only`` leaves out pending trade links (an operator's view: a buyer's claim on a seller's lot
    grants nothing until the seller's shipment confirms it); regulators see them, marked ``pending``.
    """
    row = (await conn.exec_driver_sql(TRACE_JSON, (code, max_depth, direction, confirmed_only))).first()
    return str(row[0]) if row else None


# -- the recall: holders and totals of everything downstream, the lots by page -----------------------------
# $1 code, $2 max depth, $3 'down', $4 false (a recall reaches buyers whose links are still pending too: they
# say they hold the food), $5 / $6 the (depth, code) the page starts after, $7 the page size.

_RECALL_ROWS = (
    _WALKS
    + """,
r AS (
    SELECT l.id, l.code, l.kind, f.depth, l.holder, l.kg_in, l.kg_in - l.kg_out AS kg_on_hand, l.kg_sold
    FROM found f JOIN lots l ON l.id = f.id
)"""
)

# The rows of a page of lots, by (depth, code), as the recall lists them.
_RECALL_LOT = """
    SELECT p.code, p.kind, p.depth, l.product_code, l.product_name, l.status, p.holder,
           o.name AS holder_name, o.kind AS holder_kind, o.parent AS holder_parent,
           p.kg_in, p.kg_on_hand, p.kg_sold, CASE WHEN p.kind = 'sale' THEN l.created_at END AS sold_at
    FROM {page} p JOIN lots l ON l.id = p.id LEFT JOIN operators o ON o.code = p.holder
"""

# Holders and totals over every lot found; the holders' operators and the columns only a listed lot shows are
# read for the holders and for the page alone.
RECALL_JSON = (
    _RECALL_ROWS
    + """,
hs AS (
    SELECT holder, count(*) AS lots, sum(GREATEST(kg_on_hand, 0)) AS kg_on_hand, sum(kg_sold) AS kg_sold
    FROM r WHERE kind IS DISTINCT FROM 'sale' AND holder IS NOT NULL GROUP BY holder
),
h AS (
    SELECT hs.holder AS code, o.name, o.kind, o.parent, hs.lots, hs.kg_on_hand, hs.kg_sold
    FROM hs LEFT JOIN operators o ON o.code = hs.holder
),
page AS (
    SELECT * FROM r WHERE $5::int IS NULL OR (depth, code) > ($5::int, $6::text)
    ORDER BY depth, code LIMIT $7::int + 1
),
shown_ids AS (SELECT * FROM page ORDER BY depth, code LIMIT $7::int),
shown AS ("""
    + _RECALL_LOT.format(page="shown_ids")
    + """),
last AS (SELECT depth, code FROM shown_ids ORDER BY depth DESC, code DESC LIMIT 1)
SELECT json_build_object(
    'root', $1::text,
    'lots', COALESCE((SELECT json_agg(shown ORDER BY depth, code) FROM shown), '[]'),
    'holders', COALESCE((SELECT json_agg(h ORDER BY kg_on_hand DESC, code) FROM h), '[]'),
    'totals', (
        SELECT json_build_object(
            'lots', count(*) FILTER (WHERE kind IS DISTINCT FROM 'sale'),
            'sales', count(*) FILTER (WHERE kind = 'sale'),
            'kg_on_hand', COALESCE(sum(GREATEST(kg_on_hand, 0)) FILTER (WHERE kind IS DISTINCT FROM 'sale'), 0),
            'kg_sold', COALESCE(sum(kg_in) FILTER (WHERE kind = 'sale'), 0)
        ) FROM r
    ),
    'limit', $7::int,
    'next_cursor', CASE WHEN (SELECT count(*) FROM page) > $7::int THEN (SELECT depth || ':' || code FROM last) END
)::text
WHERE EXISTS (SELECT 1 FROM found)
"""
)

# The lots of a recall as rows, a page at a time (the CSV export streams them all).
RECALL_PAGE = (
    _RECALL_ROWS
    + """,
page AS (
    SELECT * FROM r WHERE $5::int IS NULL OR (depth, code) > ($5::int, $6::text) ORDER BY depth, code LIMIT $7::int
),
shown AS ("""
    + _RECALL_LOT.format(page="page")
    + """)
SELECT code, kind, depth, product_code, product_name, status, holder, holder_name, holder_kind, holder_parent,
       kg_in, kg_on_hand, kg_sold, to_json(sold_at) #>> '{}' AS sold_at
FROM shown ORDER BY depth, code
"""
)

RECALL_FIELDS = (
    "code", "kind", "depth", "product_code", "product_name", "status", "holder", "holder_name", "holder_kind",
    "holder_parent", "kg_in", "kg_on_hand", "kg_sold", "sold_at",
)  # fmt: skip


def parse_cursor(cursor: str) -> tuple[int, str] | None:
    """The (depth, code) a ``next_cursor`` names; None when it names none."""
    depth, sep, code = cursor.partition(":")
    ok = sep and depth.isascii() and depth.isdigit() and len(depth) <= 3 and code.isascii() and code.isalnum()
    return (int(depth), code) if ok else None


async def recall_json(
    conn: AsyncConnection, code: str, max_depth: int, *, after: tuple[int, str] | None = None, limit: int = 500
) -> str | None:
    """Holders and totals of the whole recall and one page of its lots (by depth, then code), with the
    ``next_cursor`` of the page after it; None when no such lot exists."""
    depth, last = after if after is not None else (None, None)
    row = (await conn.exec_driver_sql(RECALL_JSON, (code, max_depth, "down", False, depth, last, limit))).first()
    return str(row[0]) if row else None


async def recall_rows(
    conn: AsyncConnection, code: str, max_depth: int, *, after: tuple[int, str] | None = None, limit: int = 2000
) -> list[Any]:
    """One page of the recall's lots as rows in the order of ``RECALL_FIELDS``."""
    depth, last = after if after is not None else (None, None)
    return _rows(await conn.exec_driver_sql(RECALL_PAGE, (code, max_depth, "down", False, depth, last, limit)))


# -- the consumer's view in one statement ----------------------------------------------------------------
# The lots upstream of the code (confirmed links only), their facts, the operators who held them and the
# suppliers the received lots name (with the parents they are registered under: a stall's market), the open
# ``cold_chain_break`` alerts on them and whether any temperature was recorded. The text is the version of
# the page: a hold, a release, a recall, a new event on the chain or a cold-chain alert changes it at once.

PUBLIC_JSON = f"""
WITH RECURSIVE
{walk("up", "up", "SELECT l.id, 0 FROM lots l WHERE l.code = $1::text", max_depth="$2", skip_pending="true")},
{found("up")},
lr AS (
    SELECT l.id, l.code, l.kind, l.product_code, l.product_name, l.holder, l.status, l.kg_in, l.kg_out,
           l.created_at, l.origin_region, l.documents, f.depth
    FROM found f JOIN lots l ON l.id = f.id
),
named AS (
    SELECT holder AS code FROM lr WHERE holder IS NOT NULL
    UNION SELECT documents->>'seller' FROM lr WHERE kind = 'received' AND documents->>'seller' IS NOT NULL
),
ops AS (
    SELECT o.code, o.name, o.kind, o.region, o.parent FROM operators o
    WHERE o.code IN (SELECT code FROM named UNION SELECT p.parent FROM operators p JOIN named n ON n.code = p.code)
)
SELECT json_build_object(
    'lots', (SELECT json_agg(json_build_object(
                 'id', id, 'code', code, 'kind', kind, 'product_code', product_code, 'product_name', product_name,
                 'holder', holder, 'status', status, 'kg_in', kg_in, 'kg_on_hand', kg_in - kg_out,
                 'created_at', created_at, 'origin_region', origin_region,
                 'documents', COALESCE(documents, '{{}}'::jsonb), 'depth', depth
             ) ORDER BY depth, code) FROM lr),
    'facts', COALESCE((SELECT json_agg(json_build_object(
                 'lot', lr.code, 'fact', f.fact, 'result', f.result, 'occurred_at', f.occurred_at, 'data', f.data
             ) ORDER BY f.occurred_at, f.event_id) FROM lot_facts f JOIN lr ON lr.id = f.lot_id), '[]'),
    'operators', COALESCE((SELECT json_object_agg(code, json_build_object(
                 'code', code, 'name', name, 'kind', kind, 'region', region, 'parent', parent)) FROM ops), '{{}}'),
    'broken', COALESCE((SELECT json_agg(DISTINCT a.subject_code ORDER BY a.subject_code) FROM alerts a
                 WHERE a.rule = 'cold_chain_break' AND a.subject_type = 'lot' AND a.status <> 'resolved'
                   AND a.subject_code IN (SELECT code FROM lr)), '[]'),
    'readings', EXISTS (SELECT 1 FROM lot_temperatures t WHERE t.lot_id IN (SELECT id FROM found))
)::text
WHERE EXISTS (SELECT 1 FROM found)
"""


async def public_json(conn: AsyncConnection, code: str, max_depth: int) -> str | None:
    """What the consumer's view is made of, as JSON text; None when no such lot exists."""
    row = (await conn.exec_driver_sql(PUBLIC_JSON, (code, max_depth))).first()
    return str(row[0]) if row else None
