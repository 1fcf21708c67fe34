"""SQL of the trace graph: applying a projection plan (set-based, per batch) and walking lineage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.chain import ownership
from trace_service.chain.projection import Creation, Plan

# -- applying a plan ---------------------------------------------------------------------------------

_ENSURE_LOTS = """
WITH wanted AS (SELECT DISTINCT unnest($1::text[]) AS code),
ins AS (
    INSERT INTO lots (code) SELECT code FROM wanted ORDER BY code
    ON CONFLICT (code) DO NOTHING
    RETURNING id, code
)
SELECT id, code FROM ins
UNION ALL
SELECT l.id, l.code FROM lots l JOIN wanted w ON w.code = l.code
"""

# A code first seen with its creating event (the common case) is inserted whole: its creation, the figures
# it has before any edge or fact (a sale is sold out at once), and for a received lot or a sale what it
# inherits from its one parent when that parent is already stored. Edges and facts of the same batch are
# recomputed afterwards as for any lot; a lot that turns out right is not written again. Codes taken
# already (seen before, or by a concurrent worker) are not returned and go the general way below.
_INSERT_CREATED = """
INSERT INTO lots AS l (code, kind, product_code, product_name, holder, created_at, created_by_event, creator_type,
                       kg_created, head_created, origin_region, documents, category, slaughtered_at,
                       kg_in, head_in, kg_out, status)
SELECT c.code, c.kind,
       CASE WHEN inherits THEN COALESCE(c.product_code, p.product_code) ELSE c.product_code END,
       CASE WHEN inherits THEN COALESCE(c.product_name, p.product_name) ELSE c.product_name END,
       c.holder, c.created_at, c.event_id, c.event_type, c.kg, c.head, c.origin_region, c.documents,
       CASE WHEN inherits THEN COALESCE(c.category, p.category) ELSE c.category END,
       CASE WHEN inherits AND c.parent IS NOT NULL THEN p.slaughtered_at ELSE c.slaughtered_at END,
       c.kg, c.head, CASE WHEN c.kind = 'sale' THEN c.kg ELSE 0 END,
       CASE WHEN c.kind = 'sale' AND c.kg > 0 THEN 'exhausted' ELSE 'active' END
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::uuid[], $8::text[],
            $9::numeric[], $10::int[], $11::text[], $12::jsonb[], $13::text[], $14::timestamptz[], $15::text[])
     AS c(code, kind, product_code, product_name, holder, created_at, event_id, event_type, kg, head, origin_region,
          documents, category, slaughtered_at, parent)
CROSS JOIN LATERAL (SELECT c.kind IN ('received', 'sale') AS inherits) i
LEFT JOIN lots p ON p.code = c.parent
ORDER BY c.code
ON CONFLICT (code) DO NOTHING
RETURNING id, code
"""

# The earliest (occurred_at, event_id) among the events that claim to create a code wins, whatever
# the order they arrive in.
_CREATE = """
UPDATE lots l SET
    kind = c.kind, product_code = c.product_code, product_name = c.product_name, holder = c.holder,
    created_at = c.created_at, created_by_event = c.event_id, creator_type = c.event_type,
    kg_created = c.kg, head_created = c.head, origin_region = c.origin_region, documents = c.documents,
    category = COALESCE(c.category, l.category), slaughtered_at = COALESCE(c.slaughtered_at, l.slaughtered_at),
    updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::uuid[],
            $8::text[], $9::numeric[], $10::int[], $11::text[], $12::jsonb[], $13::text[], $14::timestamptz[])
     AS c(id, kind, product_code, product_name, holder, created_at, event_id, event_type, kg, head, origin_region,
          documents, category, slaughtered_at)
WHERE l.id = c.id
  AND (l.created_by_event IS NULL
       OR (l.holder = c.holder AND (c.created_at, c.event_id) < (l.created_at, l.created_by_event)))
"""

# Codes of this batch's creations that another holder created: a concurrent worker committed them after this
# batch judged its holders (contract section 7: the code is that holder's, never taken over).
_TAKEN_MEANWHILE = """
SELECT l.code FROM lots l JOIN unnest($1::text[], $2::text[]) AS c(code, holder) ON l.code = c.code
WHERE l.created_by_event IS NOT NULL AND l.holder IS DISTINCT FROM c.holder
"""


class OwnershipRace(Exception):
    """Another worker created one of this batch's codes for another holder while the batch ran. The batch is
    rolled back and tried again: judged afresh, the late creation is refused (``lot_taken``)."""


_LOTS_BY_CODE = "SELECT id, code FROM lots WHERE code = ANY($1::text[])"

_EDGES = """
INSERT INTO edges (parent_id, child_id, event_id, kg, head, kind, voucher_key, pending)
SELECT e.*, e.kind IN ('trade', 'intake')
FROM unnest($1::bigint[], $2::bigint[], $3::uuid[], $4::numeric[], $5::int[], $6::text[], $7::text[])
     AS e(parent_id, child_id, event_id, kg, head, kind, voucher_key)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""

# A buyer's link to the seller's lot is confirmed once the seller's shipment on that voucher lists the lot
# for this buyer, whichever side arrives second. Returns the lots on both ends (their figures may change).
_CONFIRM_LINKS = """
UPDATE edges e SET pending = false
FROM shipment_lines s, shipments sh, lots c
WHERE e.pending AND e.kind = 'trade' AND e.voucher_key = ANY($1::text[])
  AND s.voucher_key = e.voucher_key AND s.lot_id = e.parent_id
  AND sh.event_id = s.event_id AND c.id = e.child_id AND sh.buyer = c.holder
RETURNING e.parent_id, e.child_id
"""

# A slaughterhouse's link to a farm's lot (pigs received) likewise waits for the farm's dispatch naming that
# slaughterhouse as its destination, whichever arrives second; until then it takes no head out of the farm's lot.
_CONFIRM_INTAKES = """
UPDATE edges e SET pending = false
FROM lots p, lots c
WHERE e.pending AND e.kind = 'intake' AND (e.parent_id = ANY($1::bigint[]) OR e.child_id = ANY($1::bigint[]))
  AND p.id = e.parent_id AND c.id = e.child_id AND p.documents->>'destination' = c.holder
RETURNING e.parent_id, e.child_id
"""

_FACTS = """
INSERT INTO lot_facts (lot_id, event_id, fact, result, occurred_at, data)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[])
ON CONFLICT DO NOTHING
"""

_SHIPMENTS = """
INSERT INTO shipments (event_id, seller, voucher_number, buyer, destination, occurred_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
ON CONFLICT DO NOTHING
"""

_SHIPMENT_LINES = """
INSERT INTO shipment_lines (event_id, lot_id, voucher_key, kg, unit_price)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::numeric[], $5::numeric[])
ON CONFLICT DO NOTHING
"""

# A sale code printed twice: the earliest sale keeps it, whatever the arrival order.
_SALES = """
INSERT INTO sales (sale_lot_id, lot_id, seller, stall, kg, unit_price, sold_at, event_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::numeric[], $6::numeric[],
                     $7::timestamptz[], $8::uuid[])
ON CONFLICT (sale_lot_id) DO UPDATE SET
    lot_id = excluded.lot_id, seller = excluded.seller, stall = excluded.stall, kg = excluded.kg,
    unit_price = excluded.unit_price, sold_at = excluded.sold_at, event_id = excluded.event_id
WHERE (excluded.sold_at, excluded.event_id) < (sales.sold_at, sales.event_id)
"""

_CERTIFICATES = """
INSERT INTO pig_certificates (number, event_id, lot_id, kind, head_count, issued_at)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::int[], $6::timestamptz[])
ON CONFLICT DO NOTHING
"""

_CLAIMS = """
INSERT INTO certificate_claims (event_id, number, batch_lot_id, head, from_lot_given, operator, occurred_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::int[], $5::bool[], $6::text[], $7::timestamptz[])
ON CONFLICT DO NOTHING
"""

_EAR_TAGS = """
INSERT INTO ear_tags (tag, event_id, lot_id, role)
SELECT * FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::text[])
ORDER BY 1, 2
ON CONFLICT DO NOTHING
"""

# -- cold chain (issue 14): temperatures and custody ----------------------------------------------------

# One row per lot, instant and reporting event: a reading re-sent in another event is another row (the
# rules read them ordered by time).
_TEMPERATURES = """
INSERT INTO lot_temperatures (lot_id, at, event_id, celsius)
SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::uuid[], $4::numeric[])
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""

# The holder of a created lot with custody facts is the holder named by the latest of them by
# (occurred_at, event_id), whatever the order they arrived in; a lot without one keeps the creator its creating
# event set (custody facts are never removed, so no lot goes back from the first kind to the second). Returns
# the codes whose holder changed, for the worker to wake the events parked on them.
_CUSTODY = """
UPDATE lots l SET holder = c.holder, updated_at = now()
FROM (
    SELECT DISTINCT ON (f.lot_id) f.lot_id, f.data->>'holder' AS holder
    FROM lot_facts f
    WHERE f.lot_id = ANY($1::bigint[]) AND f.fact = 'custody' AND f.data->>'holder' IS NOT NULL
    ORDER BY f.lot_id, f.occurred_at DESC, f.event_id DESC
) c
WHERE l.id = c.lot_id AND l.created_by_event IS NOT NULL AND l.holder IS DISTINCT FROM c.holder
RETURNING l.code
"""

# Whichever of the certificate and the claim arrives second makes the edge.
_LINK_CLAIMS = """
INSERT INTO edges (parent_id, child_id, event_id, head, kind, pending)
SELECT c.lot_id, cl.batch_lot_id, cl.event_id, cl.head, 'intake', true
FROM certificate_claims cl JOIN pig_certificates c ON c.number = cl.number
WHERE cl.number = ANY($1::text[]) AND NOT cl.from_lot_given
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
RETURNING parent_id, child_id
"""

# A received lot or a sale takes what it did not state from its parents: product, category (pork or
# produce) and the earliest slaughter time. Aggregates over all parents keep it independent of order;
# one generation per pass. The candidates are the lots given (new edges into them, or changed in the
# pass before) and the children of the lots whose own product may have changed ($2: created in this batch,
# or changed in the pass before); both are index probes.
_INHERIT = """
WITH kids AS (
    SELECT unnest($1::bigint[]) AS id
    UNION
    SELECT e.child_id FROM edges e WHERE e.parent_id = ANY($2::bigint[]) AND e.kind IN ('trade', 'sale')
),
cand AS (
    SELECT k.id, min(p.product_code) AS product_code, min(p.product_name) AS product_name,
           min(p.category) AS category, min(p.slaughtered_at) AS slaughtered_at
    FROM kids k
    JOIN edges e ON e.child_id = k.id AND e.kind IN ('trade', 'sale')
    JOIN lots p ON p.id = e.parent_id
    GROUP BY k.id
)
UPDATE lots c SET
    product_code = COALESCE(c.product_code, cand.product_code),
    product_name = COALESCE(c.product_name, cand.product_name),
    category = COALESCE(c.category, cand.category),
    slaughtered_at = cand.slaughtered_at
FROM cand
WHERE c.id = cand.id AND c.kind IN ('received', 'sale')
  AND (c.product_name IS DISTINCT FROM COALESCE(c.product_name, cand.product_name)
       OR c.product_code IS DISTINCT FROM COALESCE(c.product_code, cand.product_code)
       OR c.category IS DISTINCT FROM COALESCE(c.category, cand.category)
       OR c.slaughtered_at IS DISTINCT FROM cand.slaughtered_at)
RETURNING c.id
"""

# A stop that reaches downstream (positive ASF, failed test, a hold with scope downstream) stops every
# descendant; a release lifts it. A lot's inherited stop is "some parent is stopped downstream or
# inherits a stop", recomputed for the lots a batch touched and, when that changed for a lot, for all
# of its descendants.
_PASSES = "SELECT id, stop_down OR stop_inherited FROM lots WHERE id = ANY($1::bigint[])"

_INHERIT_STOP = """
UPDATE lots c SET
    stop_inherited = s.inherited,
    stopped_at = CASE WHEN c.stop_own THEN c.stopped_at ELSE s.since END
FROM (
    SELECT x.id,
           COALESCE(bool_or(p.stop_down OR p.stop_inherited), false) AS inherited,
           min(p.stopped_at) FILTER (WHERE p.stop_down OR p.stop_inherited) AS since
    FROM unnest($1::bigint[]) AS x(id)
    LEFT JOIN edges e ON e.child_id = x.id
    LEFT JOIN lots p ON p.id = e.parent_id
    GROUP BY x.id
) s
WHERE c.id = s.id AND (c.stop_inherited IS DISTINCT FROM s.inherited OR c.stopped_at IS DISTINCT FROM
      CASE WHEN c.stop_own THEN c.stopped_at ELSE s.since END)
RETURNING c.id
"""

_DESCENDANTS = """
WITH RECURSIVE walk(id, depth) AS (
    SELECT unnest($1::bigint[]), 0
    UNION
    SELECT e.child_id, w.depth + 1 FROM walk w JOIN edges e ON e.parent_id = w.id WHERE w.depth < $2
)
SELECT DISTINCT id FROM walk
"""

_LOCK = "SELECT id FROM lots WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"

# The lock of the touched lots (in id order, so concurrent workers cannot deadlock) and whether each passed a
# stop down before this batch, in one statement.
_LOCK_PASSES = """
SELECT id, stop_down OR stop_inherited FROM lots WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE
"""

# Quantities and status from the stored edges and facts: sums and maxima over sets, so the result
# does not depend on the order in which the events arrived. Each lot's sums are index probes of its own
# rows (edges by parent and by child, its shipment lines, its facts): the cost follows the lots touched,
# not the size of the graph. A lot whose figures did not change is not rewritten.
_RECOMPUTE = """
WITH t AS (SELECT DISTINCT unnest($1::bigint[]) AS id),
calc AS (
    SELECT l.id,
           l.kg_created + COALESCE(ei.kg_trade, 0) AS kg_in,
           l.head_created AS head_in,
           COALESCE(eo.kg_sold, 0) AS kg_sold,
           -- a sale leaves with the consumer at once: nothing of it is on hand anywhere. What left on a
           -- voucher is what the seller shipped: a buyer's receipt never moves quantity out of the seller's
           -- lot (contract section 7).
           CASE WHEN l.kind = 'sale' THEN l.kg_created ELSE 0 END
             + COALESCE(eo.kg_sold, 0) + COALESCE(sh.kg, 0)
             + COALESCE(f.kg_disposed, 0)
             + CASE WHEN COALESCE(f.head_slaughtered, 0) > 0 AND l.head_created > 0
                    THEN round(l.kg_created * LEAST(1, f.head_slaughtered::numeric / l.head_created), 3)
                    ELSE 0 END AS kg_out,
           COALESCE(eo.head_intake, 0) + COALESCE(f.head_slaughtered, 0) + COALESCE(f.head_disposed, 0) AS head_out,
           l.created_by_event IS NULL AS unresolved,
           COALESCE(f.last_stop IS NOT NULL AND (f.last_release IS NULL OR f.last_stop > f.last_release), false)
               AS stop_own,
           COALESCE(f.last_down_stop IS NOT NULL AND (f.last_release IS NULL OR f.last_down_stop > f.last_release),
                    false) AS stop_down,
           f.last_stop AS own_stopped_at,
           l.stop_inherited,
           COALESCE(f.disposed, false) AS disposed
    FROM t JOIN lots l ON l.id = t.id
    LEFT JOIN LATERAL (
        SELECT sum(e.kg) FILTER (WHERE e.kind = 'sale') AS kg_sold,
               sum(e.head) FILTER (WHERE e.kind = 'intake' AND NOT e.pending) AS head_intake
        FROM edges e WHERE e.parent_id = l.id
    ) eo ON true
    LEFT JOIN LATERAL (
        SELECT sum(e.kg) AS kg_trade FROM edges e WHERE e.child_id = l.id AND e.kind = 'trade'
    ) ei ON true
    LEFT JOIN LATERAL (SELECT sum(s.kg) AS kg FROM shipment_lines s WHERE s.lot_id = l.id) sh ON true
    LEFT JOIN LATERAL (
        SELECT sum((f.data->>'weight_kg')::numeric) FILTER (WHERE f.fact = 'disposed') AS kg_disposed,
               sum((f.data->>'head')::int) FILTER (WHERE f.fact = 'disposed') AS head_disposed,
               bool_or(f.fact = 'disposed') AS disposed,
               sum((f.data->>'head')::int) FILTER (WHERE f.fact = 'slaughtered') AS head_slaughtered,
               max(f.occurred_at) FILTER (
                   WHERE f.fact = 'hold' OR (f.fact = 'test' AND f.result = 'fail')
                      OR (f.fact = 'asf' AND f.result = 'positive')
               ) AS last_stop,
               max(f.occurred_at) FILTER (
                   WHERE (f.fact = 'hold' AND f.data->>'scope' = 'downstream')
                      OR (f.fact = 'test' AND f.result = 'fail') OR (f.fact = 'asf' AND f.result = 'positive')
               ) AS last_down_stop,
               max(f.occurred_at) FILTER (WHERE f.fact = 'release') AS last_release
        FROM lot_facts f WHERE f.lot_id = l.id
    ) f ON true
),
new AS (
    SELECT c.*,
           CASE WHEN c.stop_own THEN c.own_stopped_at WHEN c.stop_inherited THEN l.stopped_at END AS stopped_at,
           CASE
               WHEN c.unresolved THEN 'unresolved'
               WHEN c.stop_own OR c.stop_inherited THEN 'stopped'
               WHEN (c.kg_in > 0 AND c.kg_in - c.kg_out <= 0.001)
                 OR (c.kg_in = 0 AND c.head_in > 0 AND c.head_in <= c.head_out)
                   THEN CASE WHEN c.disposed THEN 'disposed' ELSE 'exhausted' END
               ELSE 'active' END AS status
    FROM calc c JOIN lots l ON l.id = c.id
)
UPDATE lots l SET
    kg_in = n.kg_in, head_in = n.head_in, kg_out = n.kg_out, head_out = n.head_out, kg_sold = n.kg_sold,
    stop_own = n.stop_own, stop_down = n.stop_down, stopped_at = n.stopped_at, status = n.status,
    updated_at = now()
FROM new n
WHERE l.id = n.id
  AND (l.kg_in, l.head_in, l.kg_out, l.head_out, l.kg_sold, l.stop_own, l.stop_down, l.stopped_at, l.status)
      IS DISTINCT FROM (n.kg_in, n.head_in, n.kg_out, n.head_out, n.kg_sold, n.stop_own, n.stop_down, n.stopped_at,
                        n.status)
"""


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _earliest(creations: Iterable[Creation]) -> list[Creation]:
    best: dict[str, Creation] = {}
    for c in creations:
        current = best.get(c.code)
        if current is None or (c.created_at, c.event_id.bytes) < (current.created_at, current.event_id.bytes):
            best[c.code] = c
    return list(best.values())


def _creation_columns(creations: Sequence[Creation]) -> list[list[Any]]:
    """The columns of ``_INSERT_CREATED`` and ``_CREATE`` after the lot (code or id), in their order."""
    return [
        [c.kind for c in creations],
        [c.product_code for c in creations],
        [c.product_name for c in creations],
        [c.holder for c in creations],
        [c.created_at for c in creations],
        [c.event_id for c in creations],
        [c.event_type for c in creations],
        [c.kg for c in creations],
        [c.head for c in creations],
        [c.origin_region for c in creations],
        [_json(c.documents) for c in creations],
        [c.category for c in creations],
        [c.slaughtered_at for c in creations],
    ]


def _sole_parents(plan: Plan) -> dict[str, str]:
    """The one parent (by a trade or sale edge of this batch) of each lot that has exactly one."""
    found: dict[str, set[str]] = {}
    for e in plan.edges:
        if e.kind in ("trade", "sale"):
            found.setdefault(e.child, set()).add(e.parent)
    return {child: next(iter(ps)) for child, ps in found.items() if len(ps) == 1}


@dataclass
class Applied:
    """What a batch did to the graph, for the rules: lot ids by code, the lots recomputed, and the lots
    whose stop changed (themselves or inherited)."""

    ids: dict[str, int] = field(default_factory=dict)
    touched: list[int] = field(default_factory=list)
    stop_changed: set[int] = field(default_factory=set)
    # Codes whose holder a custody fact changed (cold chain, issue 14): events parked on them may now apply.
    holder_changed: list[str] = field(default_factory=list)


async def apply_plan(conn: AsyncConnection, plan: Plan) -> Applied:
    """Write a batch's projection."""
    if not plan.codes:
        return Applied()
    creations = _earliest(plan.creations)
    ids: dict[str, int] = {}
    if creations:
        sole = _sole_parents(plan)
        rows = await conn.exec_driver_sql(
            _INSERT_CREATED,
            ([c.code for c in creations], *_creation_columns(creations), [sole.get(c.code) for c in creations]),
        )
        ids.update((r[1], r[0]) for r in _rows(rows))
    rest = plan.codes.difference(ids)
    if rest:
        rows = await conn.exec_driver_sql(_ENSURE_LOTS, (sorted(rest),))
        ids.update((r[1], r[0]) for r in _rows(rows))
        # A code another worker inserted and committed while that statement ran was skipped by its insert
        # and is invisible to its snapshot; a new statement sees it.
        late = sorted(rest.difference(ids))
        if late:
            rows = await conn.exec_driver_sql(_LOTS_BY_CODE, (late,))
            ids.update((r[1], r[0]) for r in _rows(rows))
    touched: set[int] = set(ids.values())

    # Creations of codes stored before (unresolved, or claimed by another event): the earliest wins.
    older = [c for c in creations if c.code in rest]
    if older:
        await conn.exec_driver_sql(
            _CREATE,
            ([ids[c.code] for c in older], *_creation_columns(older)),
        )
        taken = _rows(
            await conn.exec_driver_sql(_TAKEN_MEANWHILE, ([c.code for c in older], [c.holder for c in older]))
        )
        if taken:
            raise OwnershipRace(f"created meanwhile by another holder: {', '.join(sorted(r[0] for r in taken))}")
    if plan.edges:
        e = plan.edges
        await conn.exec_driver_sql(
            _EDGES,
            (
                [ids[x.parent] for x in e],
                [ids[x.child] for x in e],
                [x.event_id for x in e],
                [x.kg for x in e],
                [x.head for x in e],
                [x.kind for x in e],
                [x.voucher_key for x in e],
            ),
        )
    if plan.facts:
        f = plan.facts
        await conn.exec_driver_sql(
            _FACTS,
            (
                [ids[x.lot] for x in f],
                [x.event_id for x in f],
                [x.fact for x in f],
                [x.result for x in f],
                [x.occurred_at for x in f],
                [_json(x.data) for x in f],
            ),
        )
    if plan.shipments:
        s = plan.shipments
        await conn.exec_driver_sql(
            _SHIPMENTS,
            (
                [x.event_id for x in s],
                [x.seller for x in s],
                [x.voucher_number for x in s],
                [x.buyer for x in s],
                [x.destination for x in s],
                [x.occurred_at for x in s],
            ),
        )
    if plan.shipment_lines:
        sl = plan.shipment_lines
        await conn.exec_driver_sql(
            _SHIPMENT_LINES,
            (
                [x.event_id for x in sl],
                [ids[x.lot] for x in sl],
                [x.voucher_key for x in sl],
                [x.kg for x in sl],
                [x.unit_price for x in sl],
            ),
        )
    if plan.sales:
        sa_ = plan.sales
        await conn.exec_driver_sql(
            _SALES,
            (
                [ids[x.sale_code] for x in sa_],
                [ids[x.lot] for x in sa_],
                [x.seller for x in sa_],
                [x.stall for x in sa_],
                [x.kg for x in sa_],
                [x.unit_price for x in sa_],
                [x.sold_at for x in sa_],
                [x.event_id for x in sa_],
            ),
        )
    numbers: set[str] = set()
    if plan.certificates:
        c = plan.certificates
        await conn.exec_driver_sql(
            _CERTIFICATES,
            (
                [x.number for x in c],
                [x.event_id for x in c],
                [ids[x.lot] for x in c],
                [x.kind for x in c],
                [x.head_count for x in c],
                [x.issued_at for x in c],
            ),
        )
        numbers.update(x.number for x in c)
    if plan.claims:
        cl = plan.claims
        await conn.exec_driver_sql(
            _CLAIMS,
            (
                [x.event_id for x in cl],
                [x.number for x in cl],
                [ids[x.batch_lot] for x in cl],
                [x.head for x in cl],
                [x.from_lot_given for x in cl],
                [x.operator for x in cl],
                [x.occurred_at for x in cl],
            ),
        )
        numbers.update(x.number for x in cl)
    if plan.ear_tags:
        et = plan.ear_tags
        await conn.exec_driver_sql(
            _EAR_TAGS, ([x.tag for x in et], [x.event_id for x in et], [ids[x.lot] for x in et], [x.role for x in et])
        )
    vouchers = sorted(
        {x.voucher_key for x in plan.edges if x.voucher_key} | {x.voucher_key for x in plan.shipment_lines}
    )
    if vouchers:
        confirmed = await conn.exec_driver_sql(_CONFIRM_LINKS, (vouchers,))
        for r in _rows(confirmed):
            touched.update((r[0], r[1]))
    if numbers:
        linked = await conn.exec_driver_sql(_LINK_CLAIMS, (sorted(numbers),))
        for r in _rows(linked):
            touched.update((r[0], r[1]))

    # Only a farm's dispatch or a slaughterhouse's intake can confirm an intake link: most batches have neither.
    if numbers or any(e.kind == "intake" for e in plan.edges):
        confirmed = await conn.exec_driver_sql(_CONFIRM_INTAKES, (sorted(touched),))
        for r in _rows(confirmed):
            touched.update((r[0], r[1]))

    # Products flow down to received lots that did not name one, however many generations arrived
    # before their ancestors did.
    given, parents = sorted(touched), sorted({ids[c.code] for c in creations})
    for _ in range(64):
        changed = [r[0] for r in _rows(await conn.exec_driver_sql(_INHERIT, (given, parents)))]
        if not changed:
            break
        touched.update(changed)  # what they inherited (category, slaughter time) matters to the rules
        given = parents = sorted(changed)

    if plan.temperatures:
        tr = plan.temperatures
        await conn.exec_driver_sql(
            _TEMPERATURES,
            ([ids[x.lot] for x in tr], [x.at for x in tr], [x.event_id for x in tr], [x.celsius for x in tr]),
        )

    order = sorted(touched)
    before = {r[0]: r[1] for r in _rows(await conn.exec_driver_sql(_LOCK_PASSES, (order,)))}
    await conn.exec_driver_sql(_RECOMPUTE, (order,))
    stop_changed = await _propagate_stops(conn, order, before)
    # Custody, like status, from the stored facts: only a batch with custody facts, or one that created a code
    # stored before (its creation reset the holder to the creator), can change a holder.
    holder_changed: list[str] = []
    if older or any(f.fact == "custody" for f in plan.facts):
        holder_changed = sorted(r[0] for r in _rows(await conn.exec_driver_sql(_CUSTODY, (order,))))
    return Applied(ids=ids, touched=order, stop_changed=stop_changed, holder_changed=holder_changed)


async def _propagate_stops(conn: AsyncConnection, touched: list[int], before: dict[int, bool]) -> set[int]:
    await conn.exec_driver_sql(_INHERIT_STOP, (touched,))
    after = {r[0]: r[1] for r in _rows(await conn.exec_driver_sql(_PASSES, (touched,)))}
    flipped = sorted(i for i, passes in after.items() if passes != before.get(i, False))
    if not flipped:
        return set()
    below = {r[0] for r in _rows(await conn.exec_driver_sql(_DESCENDANTS, (flipped, 50)))} - set(flipped)
    if not below:
        await conn.exec_driver_sql(_RECOMPUTE, (flipped,))
        return set(flipped)
    # Parents before children: repeat until nothing changes (bounded by the depth of the graph; a cycle
    # in bad data cannot loop because a pass that changes nothing ends it).
    ordered = sorted(below)
    await conn.exec_driver_sql(_LOCK, (ordered,))
    for _ in range(64):
        changed = _rows(await conn.exec_driver_sql(_INHERIT_STOP, (ordered,)))
        if not changed:
            break
    await conn.exec_driver_sql(_RECOMPUTE, (sorted(set(flipped) | below),))
    return set(flipped) | below


# -- reading -----------------------------------------------------------------------------------------

_LOT_BY_CODE = "SELECT id FROM lots WHERE code = $1"

_WALK = {
    "up": """
        WITH RECURSIVE walk(id, depth) AS (
            SELECT $1::bigint, 0
            UNION
            SELECT e.parent_id, w.depth + 1 FROM walk w JOIN edges e ON e.child_id = w.id
            WHERE w.depth < $2 AND NOT e.pending
        )
        SELECT id, min(depth) AS depth FROM walk GROUP BY id
    """,
    "down": """
        WITH RECURSIVE walk(id, depth) AS (
            SELECT $1::bigint, 0
            UNION
            SELECT e.child_id, w.depth + 1 FROM walk w JOIN edges e ON e.parent_id = w.id WHERE w.depth < $2
        )
        SELECT id, min(depth) AS depth FROM walk GROUP BY id
    """,
}

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

_HELD_IN_SCOPE = """
WITH RECURSIVE walk(id, depth) AS (
    SELECT $1::bigint, 0
    UNION
    SELECT e.child_id, w.depth + 1 FROM walk w JOIN edges e ON e.parent_id = w.id
    WHERE w.depth < $2 AND NOT e.pending
)
SELECT EXISTS (SELECT 1 FROM walk JOIN lots l ON l.id = walk.id WHERE l.holder = ANY($3::text[]))
"""


async def lot_id(conn: AsyncConnection, code: str) -> int | None:
    row = (await conn.exec_driver_sql(_LOT_BY_CODE, (code,))).first()
    return int(row[0]) if row else None


async def walk(conn: AsyncConnection, root: int, direction: str, max_depth: int) -> dict[int, int]:
    """Lot ids reachable from ``root`` (``up`` to ancestors, ``down`` to descendants) with their depth."""
    found: dict[int, int] = {}
    for way in ("up", "down") if direction == "both" else (direction,):
        for r in _rows(await conn.exec_driver_sql(_WALK[way], (root, max_depth))):
            found[r[0]] = min(r[1], found.get(r[0], r[1]))
    return found


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
# The walk and the loading of what it found run in one round trip, and Postgres renders the JSON the
# API answers with: the service adds nothing per row.

_WALKS = """
WITH RECURSIVE
up(id, depth) AS (
    SELECT l.id, 0 FROM lots l WHERE l.code = $1::text AND $3::text IN ('up', 'both')
    UNION
    SELECT e.parent_id, u.depth + 1 FROM up u JOIN edges e ON e.child_id = u.id
    WHERE u.depth < $2 AND NOT (e.pending AND $4::bool)
),
down(id, depth) AS (
    SELECT l.id, 0 FROM lots l WHERE l.code = $1::text AND $3::text IN ('down', 'both')
    UNION
    SELECT e.child_id, d.depth + 1 FROM down d JOIN edges e ON e.parent_id = d.id
    WHERE d.depth < $2 AND NOT (e.pending AND $4::bool)
),
found AS (SELECT id, min(depth) AS depth FROM (SELECT * FROM up UNION ALL SELECT * FROM down) x GROUP BY id)
"""

TRACE_JSON = (  # constant SQL joined from constant parts; no input reaches the text
    _WALKS  # noqa: S608
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
edge_rows AS (
    SELECT e.event_id,
           json_build_object('from', p.code, 'to', c.code, 'kg', e.kg, 'head', e.head, 'kind', e.kind,
                             'event_id', e.event_id, 'pending', e.pending) AS j
    FROM edges e
    JOIN found a ON a.id = e.parent_id
    JOIN found b ON b.id = e.child_id
    JOIN lots p ON p.id = e.parent_id
    JOIN lots c ON c.id = e.child_id
    WHERE NOT (e.pending AND $4::bool)
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
    'edges', COALESCE((SELECT json_agg(j) FROM edge_rows), '[]'),
    'events', COALESCE((SELECT json_agg(j ORDER BY occurred_at, event_id) FROM event_rows), '[]')
)::text
WHERE EXISTS (SELECT 1 FROM found)
"""
)

RECALL_JSON = (
    _WALKS  # noqa: S608
    + """,
r AS (
    SELECT l.code, l.kind, f.depth, l.product_code, l.product_name, l.status, l.holder,
           o.name AS holder_name, o.kind AS holder_kind, o.parent AS holder_parent,
           l.kg_in, l.kg_in - l.kg_out AS kg_on_hand, l.kg_sold,
           CASE WHEN l.kind = 'sale' THEN l.created_at END AS sold_at
    FROM found f JOIN lots l ON l.id = f.id LEFT JOIN operators o ON o.code = l.holder
),
h AS (
    SELECT holder AS code, max(holder_name) AS name, max(holder_kind) AS kind, max(holder_parent) AS parent,
           count(*) AS lots, sum(GREATEST(kg_on_hand, 0)) AS kg_on_hand, sum(kg_sold) AS kg_sold
    FROM r WHERE kind IS DISTINCT FROM 'sale' AND holder IS NOT NULL GROUP BY holder
)
SELECT json_build_object(
    'root', $1::text,
    'lots', COALESCE((SELECT json_agg(r ORDER BY depth, code) FROM r), '[]'),
    'holders', COALESCE((SELECT json_agg(h ORDER BY kg_on_hand DESC, code) FROM h), '[]'),
    'totals', (
        SELECT json_build_object(
            'lots', count(*) FILTER (WHERE kind IS DISTINCT FROM 'sale'),
            'sales', count(*) FILTER (WHERE kind = 'sale'),
            'kg_on_hand', COALESCE(sum(GREATEST(kg_on_hand, 0)) FILTER (WHERE kind IS DISTINCT FROM 'sale'), 0),
            'kg_sold', COALESCE(sum(kg_in) FILTER (WHERE kind = 'sale'), 0)
        ) FROM r
    )
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


async def recall_json(conn: AsyncConnection, code: str, max_depth: int) -> str | None:
    # A recall reaches buyers whose links are still pending too: they say they hold the food.
    row = (await conn.exec_driver_sql(RECALL_JSON, (code, max_depth, "down", False))).first()
    return str(row[0]) if row else None


# -- holders (contract section 7) -------------------------------------------------------------------------

_HOLDERS = "SELECT code, holder FROM lots WHERE code = ANY($1::text[]) AND created_by_event IS NOT NULL"

# The operator each issued code belongs to: the block of its issuer's day that holds its serial.
_ISSUED_OWNERS = """
SELECT c.code, b.operator
FROM unnest($1::text[], $2::int[], $3::date[], $4::int[]) AS c(code, seq, day, serial)
JOIN LATERAL (
    SELECT operator, first_serial, count FROM code_blocks
    WHERE seq = c.seq AND day = c.day AND first_serial <= c.serial
    ORDER BY first_serial DESC LIMIT 1
) b ON c.serial < b.first_serial + b.count
"""


async def holders(conn: AsyncConnection, codes: Iterable[str]) -> dict[str, str]:
    """The holder of each of these codes that has one: the creator of a created lot, else the operator an
    issued code was issued to."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    found: dict[str, str] = {}
    issued = [(c, p) for c in wanted if (p := ownership.issued_parts(c)) is not None]
    if issued:
        rows = await conn.exec_driver_sql(
            _ISSUED_OWNERS,
            ([c for c, _ in issued], [p[0] for _, p in issued], [p[1] for _, p in issued], [p[2] for _, p in issued]),
        )
        found.update((r[0], r[1]) for r in _rows(rows))
    rows = await conn.exec_driver_sql(_HOLDERS, (wanted,))
    found.update((r[0], r[1]) for r in _rows(rows) if r[1] is not None)
    return found


async def ensure_lots(conn: AsyncConnection, codes: Iterable[str]) -> None:
    """Make sure these codes exist (as unresolved lots when nothing created them yet)."""
    wanted = sorted(set(codes))
    if wanted:
        await conn.exec_driver_sql(_ENSURE_LOTS, (wanted,))
