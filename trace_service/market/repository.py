"""SQL of the market figures: adding a batch's deltas (set-based), reading cells and series for the rules
and the supply API, and the markers of the clock-driven judgements."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.market.projection import Contribution
from trace_service.market.rules import CITY


def _rows(result: Any) -> list[Any]:
    """Plain rows of a driver-level result (typed loosely: their shape is the SQL's)."""
    return list(result)


# One statement per batch: the batch's rows whose product is known now, plus the rows of earlier batches
# that were waiting for their product and now have it, are summed into the daily and hourly figures
# (ordered by key, so concurrent workers lock rows in the same order); rows still without a product wait.
# A market is its reporting operator's parent, or the operator itself.
_ADD = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::date[], $5::smallint[], $6::text[], $7::text[],
                         $8::text[], $9::numeric[], $10::numeric[], $11::numeric[], $12::int[], $13::int[])
        AS i(event_id, seq, operator, day, hour, product_code, lookup, alt_lookup, kg_received, kg_sold,
             sales_amount, sale_count, head)
),
resolved AS (
    SELECT i.*, COALESCE(i.product_code, a.product_code, b.product_code) AS product
    FROM input i LEFT JOIN lots a ON a.code = i.lookup LEFT JOIN lots b ON b.code = i.alt_lookup
),
waiting AS (
    INSERT INTO market_pending (event_id, seq, operator, day, hour, lot, alt_lot, kg_received, kg_sold,
                                sales_amount, sale_count, head)
    SELECT event_id, seq, operator, day, hour, lookup, alt_lookup, kg_received, kg_sold, sales_amount, sale_count, head
    FROM resolved WHERE product IS NULL AND lookup IS NOT NULL
    ORDER BY event_id, seq
    ON CONFLICT DO NOTHING
),
ready AS (
    SELECT p.event_id, p.seq, COALESCE(a.product_code, b.product_code) AS product
    FROM market_pending p LEFT JOIN lots a ON a.code = p.lot LEFT JOIN lots b ON b.code = p.alt_lot
    WHERE COALESCE(a.product_code, b.product_code) IS NOT NULL
    FOR UPDATE OF p SKIP LOCKED
),
settled AS (
    DELETE FROM market_pending p USING ready r WHERE p.event_id = r.event_id AND p.seq = r.seq
    RETURNING p.event_id, p.operator, p.day, p.hour, r.product, p.kg_received, p.kg_sold, p.sales_amount,
              p.sale_count, p.head
),
counted AS (
    SELECT event_id, operator, day, hour, product, kg_received, kg_sold, sales_amount, sale_count, head
    FROM resolved WHERE product IS NOT NULL
    UNION ALL
    SELECT * FROM settled
),
daily AS (
    INSERT INTO market_daily AS m (operator, product_code, day, kg_received, kg_sold, sales_amount, sale_count, head)
    SELECT operator, product, day, sum(kg_received), sum(kg_sold), sum(sales_amount), sum(sale_count), sum(head)
    FROM counted GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (operator, product_code, day) DO UPDATE SET
        kg_received = m.kg_received + excluded.kg_received,
        kg_sold = m.kg_sold + excluded.kg_sold,
        sales_amount = m.sales_amount + excluded.sales_amount,
        sale_count = m.sale_count + excluded.sale_count,
        head = m.head + excluded.head
),
hourly AS (
    INSERT INTO market_hourly AS m (operator, product_code, day, hour, kg_received, head)
    SELECT operator, product, day, hour, sum(kg_received), sum(head)
    FROM counted WHERE kg_received > 0 OR head > 0
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (operator, product_code, day, hour) DO UPDATE SET
        kg_received = m.kg_received + excluded.kg_received,
        head = m.head + excluded.head
),
-- The same deltas rolled up to their market (the reporting operator's parent, or itself) and to the city,
-- into this worker's shard.
rolled AS (
    SELECT COALESCE(o.parent, c.operator) AS market, c.product, c.day, c.hour, c.kg_received, c.kg_sold,
           c.sales_amount, c.sale_count, c.head
    FROM counted c LEFT JOIN operators o ON o.code = c.operator
    UNION ALL
    SELECT $15::text, c.product, c.day, c.hour, c.kg_received, c.kg_sold, c.sales_amount, c.sale_count, c.head
    FROM counted c
),
rollup_daily AS (
    INSERT INTO market_rollup_daily AS m (market, product_code, day, shard, kg_received, kg_sold, sales_amount,
                                          sale_count, head)
    SELECT market, product, day, $14::smallint, sum(kg_received), sum(kg_sold), sum(sales_amount), sum(sale_count),
           sum(head)
    FROM rolled GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (market, product_code, day, shard) DO UPDATE SET
        kg_received = m.kg_received + excluded.kg_received,
        kg_sold = m.kg_sold + excluded.kg_sold,
        sales_amount = m.sales_amount + excluded.sales_amount,
        sale_count = m.sale_count + excluded.sale_count,
        head = m.head + excluded.head
),
rollup_hourly AS (
    INSERT INTO market_rollup_hourly AS m (market, product_code, day, hour, shard, kg_received, head)
    SELECT market, product, day, hour, $14::smallint, sum(kg_received), sum(head)
    FROM rolled WHERE kg_received > 0 OR head > 0
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (market, product_code, day, hour, shard) DO UPDATE SET
        kg_received = m.kg_received + excluded.kg_received,
        head = m.head + excluded.head
)
SELECT c.day, COALESCE(o.parent, c.operator) AS market, c.product, bool_or(c.head > 0) AS heads,
       array_agg(DISTINCT c.event_id) AS event_ids
FROM counted c LEFT JOIN operators o ON o.code = c.operator
GROUP BY 1, 2, 3
"""


@dataclass(frozen=True)
class Touched:
    """A (day, market, product) cell whose figures a batch changed, and the events that changed them."""

    day: date
    market: str
    product: str
    heads: bool
    event_ids: tuple[uuid.UUID, ...]


async def add(conn: AsyncConnection, rows: Sequence[Contribution], *, shard: int = 0) -> list[Touched]:
    """Add a batch's deltas (and settle the deltas that were waiting for their product). ``shard`` names the
    rolled-up rows this writer adds to: a Kafka partition the calling worker owns, so that two workers never
    update the same rolled-up row."""
    result = await conn.exec_driver_sql(
        _ADD,
        (
            [r.event_id for r in rows],
            [r.seq for r in rows],
            [r.operator for r in rows],
            [r.day for r in rows],
            [r.hour for r in rows],
            [r.product_code for r in rows],
            [r.lookup for r in rows],
            [r.alt_lookup for r in rows],
            [r.kg_received for r in rows],
            [r.kg_sold for r in rows],
            [r.sales_amount for r in rows],
            [r.sale_count for r in rows],
            [r.head for r in rows],
            shard,
            CITY,
        ),
    )
    return [Touched(r[0], r[1], r[2], bool(r[3]), tuple(sorted(r[4]))) for r in _rows(result)]


# The figures of cells on their own day and on earlier days (``back`` days before): whole days from
# market_daily, the hours before ``through`` from market_hourly for a day in progress. A market's
# figures are those of the operators whose parent it is, and its own unless it has a parent itself;
# the city's are everyone's.
_FIGURES = """
WITH cells AS (
    SELECT DISTINCT * FROM unnest($1::date[], $2::text[], $3::text[], $4::int[]) AS c(day, market, product, through)
),
wanted AS (
    SELECT c.day, c.market, c.product, c.through, b.back, c.day - b.back AS d
    FROM cells c CROSS JOIN unnest($5::int[]) AS b(back)
),
daily AS (
    SELECT w.day, w.market, w.product, w.back, sum(r.kg_received) AS kg_received, sum(r.kg_sold) AS kg_sold,
           sum(r.sales_amount) AS sales_amount, sum(r.sale_count) AS sale_count, sum(r.head) AS head
    FROM wanted w
    JOIN market_rollup_daily r ON r.market = w.market AND r.product_code = w.product AND r.day = w.d
    GROUP BY 1, 2, 3, 4
),
hourly AS (
    SELECT w.day, w.market, w.product, w.back, sum(h.kg_received) AS kg_received, sum(h.head) AS head
    FROM wanted w
    JOIN market_rollup_hourly h
      ON h.market = w.market AND h.product_code = w.product AND h.day = w.d AND h.hour < w.through
    WHERE w.through < 24
    GROUP BY 1, 2, 3, 4
)
SELECT d.day, d.market, d.product, d.back, d.kg_received, d.kg_sold, d.sales_amount, d.sale_count, d.head,
       h.kg_received AS settled_kg, h.head AS settled_head
FROM daily d LEFT JOIN hourly h USING (day, market, product, back)
"""


@dataclass(frozen=True)
class CellRow:
    day: date
    market: str
    product: str
    back: int
    kg_received: Any
    kg_sold: Any
    sales_amount: Any
    sale_count: int
    head: int
    settled_kg: Any
    settled_head: int | None


async def figures(
    conn: AsyncConnection,
    cells: Sequence[tuple[date, str, str, int]],
    backs: Sequence[int],
) -> list[CellRow]:
    """Figures of (day, market, product, through-hour) cells, ``back`` days before each day (a market's, or
    the city's for the market ``city``), from the rolled-up rows."""
    if not cells:
        return []
    result = await conn.exec_driver_sql(
        _FIGURES,
        ([c[0] for c in cells], [c[1] for c in cells], [c[2] for c in cells], [c[3] for c in cells], list(backs)),
    )
    return [CellRow(*r) for r in _rows(result)]


async def market_names(conn: AsyncConnection, codes: Sequence[str]) -> dict[str, str]:
    if not codes:
        return {}
    result = await conn.exec_driver_sql("SELECT code, name FROM operators WHERE code = ANY($1::text[])", (list(codes),))
    return {r[0]: r[1] for r in _rows(result)}


_CELLS_ON = """
SELECT DISTINCT COALESCE(o.parent, r.operator) AS market, r.product_code
FROM market_daily r LEFT JOIN operators o ON o.code = r.operator
WHERE r.day = ANY($1::date[])
ORDER BY 1, 2
"""


async def cells_on(conn: AsyncConnection, days: Sequence[date]) -> list[tuple[str, str]]:
    """Every (market, product) with figures on one of these days."""
    return [(r[0], r[1]) for r in _rows(await conn.exec_driver_sql(_CELLS_ON, (list(days),)))]


_SITE_SALES = """
SELECT r.product_code, COALESCE(o.parent, r.operator) AS site, $1::date - r.day AS back, sum(r.sale_count)
FROM market_daily r LEFT JOIN operators o ON o.code = r.operator
WHERE r.day = ANY($2::date[]) AND (cardinality($3::text[]) = 0 OR r.product_code = ANY($3::text[]))
GROUP BY 1, 2, 3
"""


async def site_sales(
    conn: AsyncConnection, day: date, days: Sequence[date], products: Sequence[str]
) -> list[tuple[str, str, int, int]]:
    """Sale counts per product, site (market) and days back from ``day``; no products: every product."""
    result = await conn.exec_driver_sql(_SITE_SALES, (day, list(days), list(products)))
    return [(r[0], r[1], int(r[2]), int(r[3])) for r in _rows(result)]


async def claim_sweep(conn: AsyncConnection, day: date, through_hour: int) -> bool:
    """Mark a clock-driven judgement as made; False if it had been (by this or another worker)."""
    row = (
        await conn.exec_driver_sql(
            "INSERT INTO market_sweeps (day, through_hour) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING day",
            (day, through_hour),
        )
    ).first()
    if row is not None:
        await conn.exec_driver_sql("DELETE FROM market_sweeps WHERE day < $1::date - 7", (day,))
    return row is not None


# The series of the supply API: figures per market (or the whole city) and product and day.
_SERIES = """
WITH members AS (
    SELECT o.code AS operator FROM operators o WHERE o.parent = $4::text
    UNION
    SELECT $4::text WHERE NOT EXISTS (SELECT 1 FROM operators p WHERE p.code = $4::text AND p.parent IS NOT NULL)
),
r AS (
    SELECT COALESCE(o.parent, d.operator) AS market, d.product_code, d.day, d.kg_received, d.kg_sold,
           d.sales_amount, d.sale_count, d.head
    FROM market_daily d LEFT JOIN operators o ON o.code = d.operator
    WHERE d.day BETWEEN $1::date AND $2::date
      AND ($3::text IS NULL OR d.product_code = $3::text)
      AND ($4::text IS NULL OR $4::text = $5::text OR d.operator IN (SELECT operator FROM members))
)
SELECT market, product_code, day, sum(kg_received), sum(kg_sold), sum(sales_amount), sum(sale_count), sum(head)
FROM r WHERE $4::text IS NULL OR $4::text <> $5::text GROUP BY 1, 2, 3
UNION ALL
SELECT $5::text, product_code, day, sum(kg_received), sum(kg_sold), sum(sales_amount), sum(sale_count), sum(head)
FROM r WHERE $4::text IS NULL OR $4::text = $5::text GROUP BY 2, 3
"""


async def series(
    conn: AsyncConnection, first: date, last: date, product: str | None, market: str | None, city: str
) -> list[tuple[Any, ...]]:
    """(market, product, day, kg_received, kg_sold, sales_amount, sale_count, head) rows."""
    result = await conn.exec_driver_sql(_SERIES, (first, last, product, market, city))
    return [tuple(r) for r in _rows(result)]


_ALERTS = """
SELECT a.subject_code, a.id, a.rule, a.level, a.severity, a.status
FROM alerts a
WHERE a.subject_type = 'market' AND a.rule = ANY($1::text[])
  AND split_part(a.subject_code, '/', 3) BETWEEN $2::text AND $3::text
  AND ($4::text IS NULL OR split_part(a.subject_code, '/', 2) = $4::text)
  AND ($5::text IS NULL OR split_part(a.subject_code, '/', 1) = $5::text)
ORDER BY a.subject_code, a.rule
"""


async def market_alerts(
    conn: AsyncConnection, rules: Sequence[str], first: date, last: date, product: str | None, market: str | None
) -> dict[str, list[dict[str, Any]]]:
    """The market alerts of a period by subject code (``market/product/day``)."""
    result = await conn.exec_driver_sql(_ALERTS, (list(rules), first.isoformat(), last.isoformat(), product, market))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in _rows(result):
        out.setdefault(r[0], []).append({"id": r[1], "rule": r[2], "level": r[3], "severity": r[4], "status": r[5]})
    return out
