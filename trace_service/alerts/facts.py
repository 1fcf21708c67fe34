"""SQL that gathers the facts the integrity rules need for one batch, in a few set-based queries."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.alerts import rules as r


def _rows(result: Any) -> list[Any]:
    return list(result)


async def tag_uses(conn: AsyncConnection, tags: Sequence[str]) -> list[r.TagUse]:
    if not tags:
        return []
    rows = await conn.exec_driver_sql(
        # Only tags carried by two lots in one role can be a finding: filter them in SQL, so a normal
        # batch (every tag used once per role) returns no rows at all.
        """WITH dup AS (
               SELECT t.tag, t.role FROM unnest($1::text[]) AS u(tag) JOIN ear_tags t ON t.tag = u.tag
               GROUP BY t.tag, t.role HAVING count(DISTINCT t.lot_id) > 1
           )
           SELECT t.tag, t.role, l.code, t.event_id, ev.occurred_at, ev.operator
           FROM dup JOIN ear_tags t ON t.tag = dup.tag AND t.role = dup.role
           JOIN lots l ON l.id = t.lot_id JOIN events ev ON ev.event_id = t.event_id""",
        (list(tags),),
    )
    return [r.TagUse(*row) for row in _rows(rows)]


async def certificates(conn: AsyncConnection, numbers: Sequence[str]) -> tuple[list[r.Certificate], list[r.Claim]]:
    if not numbers:
        return [], []
    certs = await conn.exec_driver_sql(
        """SELECT c.number, c.kind, c.head_count, c.issued_at, l.code, c.event_id
           FROM pig_certificates c JOIN lots l ON l.id = c.lot_id WHERE c.number = ANY($1::text[])""",
        (list(numbers),),
    )
    claims = await conn.exec_driver_sql(
        """SELECT cl.number, l.code, cl.head, cl.operator, cl.occurred_at, cl.event_id
           FROM certificate_claims cl JOIN lots l ON l.id = cl.batch_lot_id
           WHERE cl.number = ANY($1::text[]) AND cl.occurred_at IS NOT NULL""",
        (list(numbers),),
    )
    return [r.Certificate(*row) for row in _rows(certs)], [r.Claim(*row) for row in _rows(claims)]


async def batches(conn: AsyncConnection, lot_ids: Sequence[int]) -> list[r.Batch]:
    if not lot_ids:
        return []
    rows = await conn.exec_driver_sql(
        """SELECT l.code, l.holder,
                  CASE WHEN l.creator_type = 'slaughter.pigs_received' THEN l.created_by_event END,
                  l.origin_region, l.head_created, l.kg_created,
                  sf.event_id, (sf.data->>'slaughtered')::int, (sf.data->>'condemned')::int,
                  (sf.data->>'carcass_kg')::float8
           FROM lots l
           LEFT JOIN LATERAL (
               SELECT f.event_id, f.data FROM lot_facts f WHERE f.lot_id = l.id AND f.fact = 'slaughtered'
               ORDER BY f.occurred_at, f.event_id LIMIT 1
           ) sf ON true
           WHERE l.id = ANY($1::bigint[]) AND (l.kind = 'slaughter_batch' OR sf.event_id IS NOT NULL)""",
        (list(lot_ids),),
    )
    return [r.Batch(*row) for row in _rows(rows)]


async def carcass_outflows(
    conn: AsyncConnection, carcass_ids: Sequence[int], event_ids: Sequence[uuid.UUID] | None
) -> list[dict[str, Any]]:
    """Shipments and receipts out of carcass lots (all of them, or only those of the given events)."""
    if not carcass_ids:
        return []
    rows = await conn.exec_driver_sql(
        """WITH c AS (
               SELECT c.id, c.code, c.holder, b.code AS batch
               FROM lots c JOIN edges t ON t.child_id = c.id AND t.kind = 'transform' JOIN lots b ON b.id = t.parent_id
               WHERE c.id = ANY($1::bigint[]) AND c.kind = 'carcass'
           )
           SELECT c.batch, c.code, c.holder, s.buyer, s.occurred_at, s.event_id
           FROM c JOIN shipment_lines sl ON sl.lot_id = c.id JOIN shipments s ON s.event_id = sl.event_id
           WHERE $2::uuid[] IS NULL OR s.event_id = ANY($2::uuid[])
           UNION ALL
           SELECT c.batch, c.code, c.holder, ev.operator, ev.occurred_at, e.event_id
           FROM c JOIN edges e ON e.parent_id = c.id AND e.kind = 'trade' JOIN events ev ON ev.event_id = e.event_id
           WHERE $2::uuid[] IS NULL OR e.event_id = ANY($2::uuid[])""",
        (list(carcass_ids), list(event_ids) if event_ids is not None else None),
    )
    return [
        {"batch": b, "carcass": c, "operator": h, "buyer": buyer, "shipped_at": at.isoformat(), "event_id": str(eid)}
        for b, c, h, buyer, at, eid in _rows(rows)
    ]


async def release_facts(conn: AsyncConnection, checks: list[dict[str, Any]]) -> list[r.CarcassShipment]:
    """Complete due release checks with what is known now: ASF results, quality certificate, buyer's province."""
    if not checks:
        return []
    batch_codes = sorted({c["batch"] for c in checks})
    carcass_codes = sorted({c["carcass"] for c in checks})
    buyers = sorted({c["buyer"] for c in checks if c.get("buyer")})
    asf: dict[str, list[r.AsfResult]] = {}
    for code, method, result, at, eid in _rows(
        await conn.exec_driver_sql(
            """SELECT l.code, f.data->>'method', f.result, f.occurred_at, f.event_id
               FROM lot_facts f JOIN lots l ON l.id = f.lot_id WHERE l.code = ANY($1::text[]) AND f.fact = 'asf'""",
            (batch_codes,),
        )
    ):
        asf.setdefault(code, []).append(r.AsfResult(method, result, at, eid))
    quality: dict[str, tuple[str | None, list[datetime]]] = {}
    for code, cert, passes in _rows(
        await conn.exec_driver_sql(
            """SELECT l.code, l.documents->>'quality_cert_number',
                      ARRAY(SELECT f.occurred_at FROM lot_facts f WHERE f.lot_id = l.id AND f.fact = 'test'
                            AND f.result = 'pass' AND f.data->>'test' = 'other')
               FROM lots l WHERE l.code = ANY($1::text[])""",
            (carcass_codes,),
        )
    ):
        quality[code] = (cert, list(passes or []))
    provinces = {
        code: region[:2]
        for code, region in _rows(
            await conn.exec_driver_sql("SELECT code, region FROM operators WHERE code = ANY($1::text[])", (buyers,))
        )
    }
    out = []
    for c in checks:
        cert, passes = quality.get(c["carcass"], (None, []))
        out.append(
            r.CarcassShipment(
                batch=c["batch"],
                carcass=c["carcass"],
                operator=c["operator"],
                buyer=c.get("buyer"),
                buyer_province=provinces.get(c.get("buyer") or ""),
                shipped_at=datetime.fromisoformat(c["shipped_at"]),
                event_id=uuid.UUID(c["event_id"]),
                quality_cert_number=cert,
                asf=tuple(asf.get(c["batch"], [])),
                quality_passes=tuple(passes),
            )
        )
    return out


async def stops(
    conn: AsyncConnection, items: Iterable[tuple[str, str, str | None, float | None, str, datetime, uuid.UUID]]
) -> list[r.Stop]:
    out = []
    for code, kind, test, value, operator, at, eid in items:
        rows = _rows(
            await conn.exec_driver_sql(
                """WITH RECURSIVE walk(id, depth) AS (
                       SELECT id, 0 FROM lots WHERE code = $1
                       UNION
                       SELECT e.child_id, w.depth + 1 FROM walk w JOIN edges e ON e.parent_id = w.id WHERE w.depth < 50
                   )
                   SELECT count(DISTINCT w.id) - 1,
                          COALESCE(array_agg(DISTINCT l.holder) FILTER (WHERE w.depth > 0 AND l.holder IS NOT NULL
                                                                          AND l.kind IS DISTINCT FROM 'sale'), '{}')
                   FROM walk w JOIN lots l ON l.id = w.id""",
                (code,),
            )
        )
        count, holders = rows[0]
        out.append(r.Stop(code, kind, test, value, operator, at, eid, tuple(sorted(holders)), int(count)))
    return out


async def outflows(conn: AsyncConnection, lot_ids: Sequence[int]) -> list[r.Outflow]:
    """Every trade out of these lots while they are stopped."""
    if not lot_ids:
        return []
    rows = await conn.exec_driver_sql(
        """SELECT l.code, l.status, l.stopped_at, 'shipped', s.occurred_at, s.event_id, s.seller
           FROM lots l JOIN shipment_lines sl ON sl.lot_id = l.id JOIN shipments s ON s.event_id = sl.event_id
           WHERE l.id = ANY($1::bigint[]) AND l.status = 'stopped'
           UNION ALL
           SELECT l.code, l.status, l.stopped_at, CASE e.kind WHEN 'sale' THEN 'sold' ELSE 'received' END,
                  ev.occurred_at, e.event_id, ev.operator
           FROM lots l JOIN edges e ON e.parent_id = l.id AND e.kind IN ('trade', 'sale')
           JOIN events ev ON ev.event_id = e.event_id
           WHERE l.id = ANY($1::bigint[]) AND l.status = 'stopped'""",
        (list(lot_ids),),
    )
    return [r.Outflow(*row) for row in _rows(rows)]


async def lot_states(
    conn: AsyncConnection, lot_ids: Sequence[int], uses: dict[str, tuple[datetime, uuid.UUID]], created: set[str]
) -> list[r.LotState]:
    """The touched lots. The earliest use comes from this batch's events, and for a lot created in this
    batch from everything already stored about it."""
    if not lot_ids:
        return []
    rows = await conn.exec_driver_sql(
        """SELECT l.code, l.kind, l.category, l.status, l.holder, l.kg_in, l.kg_out, l.created_at,
                  l.created_by_event, l.documents::text, l.slaughtered_at,
                  CASE WHEN c.code IS NOT NULL THEN (
                      SELECT ARRAY[x.at::text, x.event_id::text] FROM (
                          SELECT f.occurred_at AS at, f.event_id FROM lot_facts f WHERE f.lot_id = l.id
                          UNION ALL
                          SELECT s.occurred_at, s.event_id FROM shipment_lines sl
                          JOIN shipments s ON s.event_id = sl.event_id WHERE sl.lot_id = l.id
                          UNION ALL
                          SELECT ev.occurred_at, ev.event_id FROM edges e JOIN events ev ON ev.event_id = e.event_id
                          WHERE e.parent_id = l.id
                      ) x ORDER BY x.at LIMIT 1) END,
                  (SELECT COALESCE(sum(e.kg), 0) FROM edges e
                   WHERE e.parent_id = l.id AND e.kind = 'trade' AND NOT EXISTS (
                       SELECT 1 FROM shipment_lines sl WHERE sl.lot_id = l.id AND sl.voucher_key = e.voucher_key))
           FROM lots l LEFT JOIN (SELECT DISTINCT unnest($2::text[]) AS code) c ON c.code = l.code
           WHERE l.id = ANY($1::bigint[])""",
        (list(lot_ids), sorted(created)),
    )
    out = []
    for code, kind, cat, status, holder, kg_in, kg_out, created_at, by, docs, slaughtered, first, rcv in _rows(rows):
        use = uses.get(code)
        if first:
            stored = (datetime.fromisoformat(first[0]), uuid.UUID(first[1]))
            use = stored if use is None or stored[0] < use[0] else use
        out.append(
            r.LotState(
                code, kind, cat, status, holder, kg_in or Decimal(0), kg_out or Decimal(0), created_at, by,
                orjson.loads(docs) if docs else {}, slaughtered,
                use[0] if use else None, use[1] if use else None, rcv or Decimal(0),
            )
        )  # fmt: skip
    return out


async def lot_ids(conn: AsyncConnection, codes: Sequence[str]) -> list[int]:
    if not codes:
        return []
    return [
        row[0]
        for row in _rows(await conn.exec_driver_sql("SELECT id FROM lots WHERE code = ANY($1::text[])", (list(codes),)))
    ]


async def vouchers(conn: AsyncConnection, keys: Sequence[str]) -> list[r.Voucher]:
    if not keys:
        return []
    found: dict[str, dict[str, Any]] = {}
    for key, seller, number, buyer, kg, ids in _rows(
        await conn.exec_driver_sql(
            """SELECT sl.voucher_key, s.seller, s.voucher_number, s.buyer, sum(sl.kg), array_agg(DISTINCT s.event_id)
               FROM shipment_lines sl JOIN shipments s ON s.event_id = sl.event_id
               WHERE sl.voucher_key = ANY($1::text[]) GROUP BY 1, 2, 3, 4""",
            (list(keys),),
        )
    ):
        v = found.setdefault(key, {"seller": seller, "number": number, "shipped": {}, "received": {}, "ids": set()})
        v["shipped"][buyer] = v["shipped"].get(buyer, Decimal(0)) + kg
        v["ids"].update(ids)
    for key, receiver, kg, ids in _rows(
        await conn.exec_driver_sql(
            """SELECT e.voucher_key, ev.operator, sum(e.kg), array_agg(DISTINCT e.event_id)
               FROM edges e JOIN events ev ON ev.event_id = e.event_id
               WHERE e.voucher_key = ANY($1::text[]) AND e.kind = 'trade' GROUP BY 1, 2""",
            (list(keys),),
        )
    ):
        seller, _, number = key.partition("/")
        v = found.setdefault(key, {"seller": seller, "number": number, "shipped": {}, "received": {}, "ids": set()})
        v["received"][receiver] = v["received"].get(receiver, Decimal(0)) + kg
        v["ids"].update(ids)
    return [
        r.Voucher(key, v["seller"], v["number"], v["shipped"], v["received"], tuple(sorted(v["ids"], key=str)))
        for key, v in found.items()
    ]


async def unresolved_due(
    conn: AsyncConnection, grace_seconds: int, limit: int = 1000
) -> list[tuple[str, datetime, str | None]]:
    """Unresolved lots past their grace period that have no upstream_missing alert yet."""
    rows = await conn.exec_driver_sql(
        """SELECT l.code, l.first_seen_at,
                  (SELECT ev.operator FROM edges e JOIN events ev ON ev.event_id = e.event_id
                   WHERE e.parent_id = l.id OR e.child_id = l.id LIMIT 1)
           FROM lots l
           WHERE l.status = 'unresolved' AND l.first_seen_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (
                 SELECT 1 FROM alerts a WHERE a.id = 'al_' || left(encode(sha256(convert_to(
                     'upstream_missing' || chr(31) || 'lot' || chr(31) || l.code, 'UTF8')), 'hex'), 24))
           ORDER BY l.first_seen_at LIMIT $2""",
        (float(grace_seconds), limit),
    )
    return [(a, b, c) for a, b, c in _rows(rows)]


async def resolve_upstream_found(conn: AsyncConnection) -> list[str]:
    """upstream_missing alerts whose lot has since arrived are resolved by the system."""
    rows = await conn.exec_driver_sql(
        """UPDATE alerts a SET status = 'resolved', resolved_by = 'system', resolved_at = now(),
                  resolved_note = 'the upstream record arrived', version = version + 1, updated_at = now()
           FROM lots l
           WHERE a.rule = 'upstream_missing' AND a.status <> 'resolved' AND a.subject_code = l.code
             AND l.status <> 'unresolved'
           RETURNING a.id"""
    )
    return [row[0] for row in _rows(rows)]


# -- cold chain: imported meat and temperatures (issue 14) -------------------------------------------

# The lots with readings among the given ones and (up to $2 generations) their descendants, each with the
# lot among itself and its ancestors that is stored frozen (an import with storage frozen, or any lot whose
# documents say so): only those are frozen lots. The readings in time order.
_COLD_LOTS = """
WITH RECURSIVE
down(id, depth) AS (
    SELECT unnest($1::bigint[]), 0
    UNION
    SELECT e.child_id, d.depth + 1 FROM down d JOIN edges e ON e.parent_id = d.id WHERE d.depth < $2
),
cand AS (
    SELECT DISTINCT d.id FROM down d WHERE EXISTS (SELECT 1 FROM lot_temperatures t WHERE t.lot_id = d.id)
),
up(cand, id, depth) AS (
    SELECT id, id, 0 FROM cand
    UNION
    SELECT u.cand, e.parent_id, u.depth + 1 FROM up u JOIN edges e ON e.child_id = u.id WHERE u.depth < 50
),
frozen AS (
    SELECT u.cand, min(l.code) AS frozen_by
    FROM up u JOIN lots l ON l.id = u.id
    WHERE l.documents->>'storage' = 'frozen'
    GROUP BY u.cand
)
SELECT l.code, l.holder, f.frozen_by,
       array_agg(t.at ORDER BY t.at, t.event_id), array_agg(t.celsius ORDER BY t.at, t.event_id),
       array_agg(t.event_id ORDER BY t.at, t.event_id)
FROM frozen f JOIN lots l ON l.id = f.cand JOIN lot_temperatures t ON t.lot_id = f.cand
GROUP BY l.code, l.holder, f.frozen_by
"""


async def cold_lots(conn: AsyncConnection, lot_ids: Sequence[int], generations: int = 50) -> list[r.ColdLot]:
    """The frozen lots with readings among these lots and their descendants (``generations`` below them)."""
    if not lot_ids:
        return []
    rows = await conn.exec_driver_sql(_COLD_LOTS, (sorted(set(lot_ids)), generations))
    return [
        r.ColdLot(code, holder, frozen_by, tuple(r.Reading(a, c, e) for a, c, e in zip(ats, cs, eids, strict=True)))
        for code, holder, frozen_by, ats, cs, eids in _rows(rows)
    ]


# The imported lots among these lots and their ancestors.
_IMPORTED_ABOVE = """
WITH RECURSIVE up(id, depth) AS (
    SELECT unnest($1::bigint[]), 0
    UNION
    SELECT e.parent_id, u.depth + 1 FROM up u JOIN edges e ON e.child_id = u.id WHERE u.depth < 50
)
SELECT DISTINCT l.id FROM up JOIN lots l ON l.id = up.id WHERE l.kind = 'imported'
"""

_IMPORTED_LOTS = """
SELECT l.id, l.code, l.holder, l.created_by_event, l.documents::text,
       COALESCE((SELECT json_agg(json_build_object('at', f.occurred_at, 'event_id', f.event_id, 'data', f.data))
                 FROM lot_facts f WHERE f.lot_id = l.id AND f.fact = 'import_docs'), '[]')::text
FROM lots l WHERE l.id = ANY($1::bigint[]) AND l.kind = 'imported'
"""

# What left each imported lot or a lot made from it: the seller's shipments, retail sales, and the shipped or
# sold facts of captured EPCIS events.
_IMPORT_OUTFLOWS = """
WITH RECURSIVE fam(root, id, depth) AS (
    SELECT id, id, 0 FROM unnest($1::bigint[]) AS x(id)
    UNION
    SELECT f.root, e.child_id, f.depth + 1 FROM fam f JOIN edges e ON e.parent_id = f.id WHERE f.depth < 50
)
SELECT f.root, l.code, 'shipped', s.occurred_at, s.event_id, s.seller
FROM fam f JOIN lots l ON l.id = f.id JOIN shipment_lines sl ON sl.lot_id = f.id
JOIN shipments s ON s.event_id = sl.event_id
UNION ALL
SELECT f.root, l.code, 'sold', sa.sold_at, sa.event_id, sa.seller
FROM fam f JOIN lots l ON l.id = f.id JOIN sales sa ON sa.lot_id = f.id
UNION ALL
SELECT f.root, l.code, x.fact, x.occurred_at, x.event_id, NULL
FROM fam f JOIN lots l ON l.id = f.id JOIN lot_facts x ON x.lot_id = f.id AND x.fact IN ('shipped', 'sold')
"""


async def imported_above(conn: AsyncConnection, lot_ids: Sequence[int]) -> list[int]:
    """The imported lots among these lots and their ancestors."""
    if not lot_ids:
        return []
    return [row[0] for row in _rows(await conn.exec_driver_sql(_IMPORTED_ABOVE, (sorted(set(lot_ids)),)))]


async def imported_lots(conn: AsyncConnection, lot_ids: Sequence[int]) -> list[r.ImportedLot]:
    """Imported lots with the certificates supplied later and what left them or the lots made from them."""
    if not lot_ids:
        return []
    wanted = sorted(set(lot_ids))
    outflows: dict[int, list[r.ImportOutflow]] = {}
    for root, code, kind, at, eid, operator in _rows(await conn.exec_driver_sql(_IMPORT_OUTFLOWS, (wanted,))):
        outflows.setdefault(root, []).append(r.ImportOutflow(code, kind, at, eid, operator))
    out = []
    for lot_id, code, holder, by, docs, supplied in _rows(await conn.exec_driver_sql(_IMPORTED_LOTS, (wanted,))):
        sup = tuple(
            r.Supplied(datetime.fromisoformat(x["at"]), uuid.UUID(x["event_id"]), x["data"] or {})
            for x in orjson.loads(supplied)
        )
        out.append(
            r.ImportedLot(code, holder, by, orjson.loads(docs) if docs else {}, sup, tuple(outflows.get(lot_id, [])))
        )
    return out
