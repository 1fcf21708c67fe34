"""The write side of the lot store: applying a batch's projection plan with set-based SQL, the holders of codes
(contract section 7), and the unresolved lots a batch names. The read side is ``chain/reads.py``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.chain import ownership
from trace_service.chain.projection import Creation, Plan
from trace_service.chain.sql import Columns, found, walk

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
# The columns of a creation, by the fields of ``projection.Creation`` (documents as JSON text).
_CREATION = dict(  # noqa: C408  (names as keywords, like Columns.of)
    kind="text", product_code="text", product_name="text", holder="text", created_at="timestamptz", event_id="uuid",
    event_type="text", kg="numeric", head="int", origin_region="text", documents="jsonb", category="text",
    slaughtered_at="timestamptz",
)  # fmt: skip
_CREATED = Columns.of("c", code="text", **_CREATION, parent="text")

_INSERT_CREATED = f"""
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
FROM {_CREATED.unnest()}
CROSS JOIN LATERAL (SELECT c.kind IN ('received', 'sale') AS inherits) i
LEFT JOIN lots p ON p.code = c.parent
ORDER BY c.code
ON CONFLICT (code) DO NOTHING
RETURNING id, code
"""

# The earliest (occurred_at, event_id) among the events that claim to create a code wins, whatever
# the order they arrive in.
_RECREATED = Columns.of("c", id="bigint", **_CREATION)

_CREATE = f"""
UPDATE lots l SET
    kind = c.kind, product_code = c.product_code, product_name = c.product_name, holder = c.holder,
    created_at = c.created_at, created_by_event = c.event_id, creator_type = c.event_type,
    kg_created = c.kg, head_created = c.head, origin_region = c.origin_region, documents = c.documents,
    category = COALESCE(c.category, l.category), slaughtered_at = COALESCE(c.slaughtered_at, l.slaughtered_at),
    updated_at = now()
FROM {_RECREATED.unnest()}
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

_EDGE = Columns.of(
    "e",
    parent_id="bigint",
    child_id="bigint",
    event_id="uuid",
    kg="numeric",
    head="int",
    kind="text",
    voucher_key="text",
)
_EDGES = f"""
INSERT INTO edges ({_EDGE.names}, pending)
SELECT {_EDGE.names}, e.kind IN ('trade', 'intake')
FROM {_EDGE.unnest()}
ORDER BY parent_id, child_id, event_id
ON CONFLICT DO NOTHING
RETURNING parent_id, child_id, kind, kg, head, pending
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
RETURNING e.parent_id, e.child_id, e.head
"""

_FACT = Columns.of(
    "f", lot_id="bigint", event_id="uuid", fact="text", result="text", occurred_at="timestamptz", data="jsonb"
)
_FACTS = f"INSERT INTO lot_facts ({_FACT.names}) SELECT {_FACT.names} FROM {_FACT.unnest()} ON CONFLICT DO NOTHING"

_SHIPMENT = Columns.of(
    "s", event_id="uuid", seller="text", voucher_number="text", buyer="text", destination="text",
    occurred_at="timestamptz",
)  # fmt: skip
_SHIPMENTS = f"""
INSERT INTO shipments ({_SHIPMENT.names}) SELECT {_SHIPMENT.names} FROM {_SHIPMENT.unnest()} ON CONFLICT DO NOTHING
"""

_SHIPMENT_LINE = Columns.of(
    "s", event_id="uuid", lot_id="bigint", voucher_key="text", kg="numeric", unit_price="numeric"
)
_SHIPMENT_LINES = f"""
INSERT INTO shipment_lines ({_SHIPMENT_LINE.names}) SELECT {_SHIPMENT_LINE.names} FROM {_SHIPMENT_LINE.unnest()}
ON CONFLICT DO NOTHING
RETURNING lot_id, kg
"""

# A sale code printed twice: the earliest sale keeps it, whatever the arrival order.
_SALE = Columns.of(
    "s", sale_lot_id="bigint", lot_id="bigint", seller="text", stall="text", kg="numeric", unit_price="numeric",
    sold_at="timestamptz", event_id="uuid",
)  # fmt: skip
_SALES = f"""
INSERT INTO sales ({_SALE.names}) SELECT {_SALE.names} FROM {_SALE.unnest()}
ON CONFLICT (sale_lot_id) DO UPDATE SET
    lot_id = excluded.lot_id, seller = excluded.seller, stall = excluded.stall, kg = excluded.kg,
    unit_price = excluded.unit_price, sold_at = excluded.sold_at, event_id = excluded.event_id
WHERE (excluded.sold_at, excluded.event_id) < (sales.sold_at, sales.event_id)
"""

_CERTIFICATE = Columns.of(
    "c", number="text", event_id="uuid", lot_id="bigint", kind="text", head_count="int", issued_at="timestamptz"
)
_CERTIFICATES = f"""
INSERT INTO pig_certificates ({_CERTIFICATE.names}) SELECT {_CERTIFICATE.names} FROM {_CERTIFICATE.unnest()}
ON CONFLICT DO NOTHING
"""

_CLAIM = Columns.of(
    "c", event_id="uuid", number="text", batch_lot_id="bigint", head="int", from_lot_given="bool", operator="text",
    occurred_at="timestamptz",
)  # fmt: skip
_CLAIMS = f"""
INSERT INTO certificate_claims ({_CLAIM.names}) SELECT {_CLAIM.names} FROM {_CLAIM.unnest()} ON CONFLICT DO NOTHING
"""

_EAR_TAG = Columns.of("t", tag="text", event_id="uuid", lot_id="bigint", role="text")
_EAR_TAGS = f"""
INSERT INTO ear_tags ({_EAR_TAG.names}) SELECT {_EAR_TAG.names} FROM {_EAR_TAG.unnest()}
ORDER BY tag, event_id
ON CONFLICT DO NOTHING
"""

# -- cold chain (issue 14): temperatures and custody ----------------------------------------------------

# One row per lot, instant and reporting event: a reading re-sent in another event is another row (the
# rules read them ordered by time).
_TEMPERATURE = Columns.of("t", lot_id="bigint", at="timestamptz", event_id="uuid", celsius="numeric")
_TEMPERATURES = f"""
INSERT INTO lot_temperatures ({_TEMPERATURE.names}) SELECT {_TEMPERATURE.names} FROM {_TEMPERATURE.unnest()}
ORDER BY lot_id, at, event_id
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

_DESCENDANTS = f"""
WITH RECURSIVE {walk("down", "down", "SELECT unnest($1::bigint[]), 0", max_depth="$2")}, {found("down")}
SELECT id FROM found
"""

_LOCK = "SELECT id FROM lots WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"

# The lock of the touched lots (in id order, so concurrent workers cannot deadlock) and whether each passed a
# stop down before this batch, in one statement.
_LOCK_PASSES = """
SELECT id, stop_down OR stop_inherited FROM lots WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE
"""

# The running sums of edges and shipment lines grow by the rows a batch inserted (or, for intakes, confirmed):
# ``ON CONFLICT DO NOTHING … RETURNING`` and ``UPDATE … WHERE pending`` return a row once however often it is
# sent, and sums commute, so the sums do not depend on the order in which the events arrived. One row per lot.
_SUMS = Columns.of(
    "d", id="bigint", kg_traded_in="numeric", kg_sold="numeric", kg_shipped="numeric", head_intake_out="int"
)
_ADD_SUMS = f"""
UPDATE lots l SET kg_traded_in = l.kg_traded_in + d.kg_traded_in, kg_sold = l.kg_sold + d.kg_sold,
                  kg_shipped = l.kg_shipped + d.kg_shipped, head_intake_out = l.head_intake_out + d.head_intake_out
FROM {_SUMS.unnest()}
WHERE l.id = d.id
"""


@dataclass
class _Sums:
    """What a batch's new rows add to one lot's running sums."""

    id: int
    kg_traded_in: Decimal = Decimal(0)
    kg_sold: Decimal = Decimal(0)
    kg_shipped: Decimal = Decimal(0)
    head_intake_out: int = 0


# Quantities and status: the running sums above, the creation (which may arrive after its edges), and the lot's
# facts (sums and maxima over sets, so the result does not depend on the order in which the events arrived; a
# lot has few facts). The cost follows the lots touched, not their edges. A lot whose figures did not change is
# not rewritten.
_RECOMPUTE = """
WITH t AS (SELECT DISTINCT unnest($1::bigint[]) AS id),
calc AS (
    SELECT l.id,
           l.kg_created + l.kg_traded_in AS kg_in,
           l.head_created AS head_in,
           l.kg_sold,
           -- a sale leaves with the consumer at once: nothing of it is on hand anywhere. What left on a
           -- voucher is what the seller shipped: a buyer's receipt never moves quantity out of the seller's
           -- lot (contract section 7).
           CASE WHEN l.kind = 'sale' THEN l.kg_created ELSE 0 END
             + l.kg_sold + l.kg_shipped
             + COALESCE(f.kg_disposed, 0)
             + CASE WHEN COALESCE(f.head_slaughtered, 0) > 0 AND l.head_created > 0
                    THEN round(l.kg_created * LEAST(1, f.head_slaughtered::numeric / l.head_created), 3)
                    ELSE 0 END AS kg_out,
           l.head_intake_out + COALESCE(f.head_slaughtered, 0) + COALESCE(f.head_disposed, 0) AS head_out,
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
            _CREATED.params(creations, documents=lambda c: _json(c.documents), parent=lambda c: sole.get(c.code)),
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
            _CREATE, _RECREATED.params(older, id=lambda c: ids[c.code], documents=lambda c: _json(c.documents))
        )
        taken = _rows(
            await conn.exec_driver_sql(_TAKEN_MEANWHILE, ([c.code for c in older], [c.holder for c in older]))
        )
        if taken:
            raise OwnershipRace(f"created meanwhile by another holder: {', '.join(sorted(r[0] for r in taken))}")
    lot = {"lot_id": lambda x: ids[x.lot]}
    sums: dict[int, _Sums] = {}

    def add(lot_id: int) -> _Sums:
        return sums.setdefault(lot_id, _Sums(lot_id))

    if plan.edges:
        inserted = await conn.exec_driver_sql(
            _EDGES, _EDGE.params(plan.edges, parent_id=lambda x: ids[x.parent], child_id=lambda x: ids[x.child])
        )
        for parent, child, kind, kg, head, pending in _rows(inserted):
            if kind == "trade" and kg is not None:
                add(child).kg_traded_in += kg
            elif kind == "sale" and kg is not None:
                add(parent).kg_sold += kg
            elif kind == "intake" and not pending and head is not None:
                add(parent).head_intake_out += head
    if plan.facts:
        await conn.exec_driver_sql(_FACTS, _FACT.params(plan.facts, **lot, data=lambda x: _json(x.data)))
    if plan.shipments:
        await conn.exec_driver_sql(_SHIPMENTS, _SHIPMENT.params(plan.shipments))
    if plan.shipment_lines:
        shipped = await conn.exec_driver_sql(_SHIPMENT_LINES, _SHIPMENT_LINE.params(plan.shipment_lines, **lot))
        for lot_id, kg in _rows(shipped):
            add(lot_id).kg_shipped += kg
    if plan.sales:
        await conn.exec_driver_sql(_SALES, _SALE.params(plan.sales, sale_lot_id=lambda x: ids[x.sale_code], **lot))
    numbers: set[str] = set()
    if plan.certificates:
        await conn.exec_driver_sql(_CERTIFICATES, _CERTIFICATE.params(plan.certificates, **lot))
        numbers.update(x.number for x in plan.certificates)
    if plan.claims:
        await conn.exec_driver_sql(_CLAIMS, _CLAIM.params(plan.claims, batch_lot_id=lambda x: ids[x.batch_lot]))
        numbers.update(x.number for x in plan.claims)
    if plan.ear_tags:
        await conn.exec_driver_sql(_EAR_TAGS, _EAR_TAG.params(plan.ear_tags, **lot))
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
            if r[2] is not None:
                add(r[0]).head_intake_out += r[2]

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
        await conn.exec_driver_sql(_TEMPERATURES, _TEMPERATURE.params(plan.temperatures, **lot))

    order = sorted(touched)
    before = {r[0]: r[1] for r in _rows(await conn.exec_driver_sql(_LOCK_PASSES, (order,)))}
    if sums:  # after the lock: every lot here is touched, and locked in id order
        await conn.exec_driver_sql(_ADD_SUMS, _SUMS.params([sums[i] for i in sorted(sums)]))
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
