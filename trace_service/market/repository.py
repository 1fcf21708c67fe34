"""SQL of the market figures: adding a batch's deltas (set-based), reading cells and series for the rules
and the supply API, the markers of the clock-driven judgements, when each day's data last arrived (and
which days settled since they were last judged), and the state of the market alerts being re-judged."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from trace_service.market.projection import Contribution
from trace_service.market.rules import CITY, AlertState


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
),
-- Each day whose figures changed: when, and one more version for the sweep to judge (this worker's shard).
arrivals AS (
    INSERT INTO market_arrivals AS a (day, shard, arrived_at)
    SELECT DISTINCT day, $14::smallint, $16::timestamptz FROM counted ORDER BY 1
    ON CONFLICT (day, shard) DO UPDATE SET
        arrived_at = greatest(a.arrived_at, excluded.arrived_at), version = a.version + 1
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


async def add(conn: AsyncConnection, rows: Sequence[Contribution], *, now: datetime, shard: int = 0) -> list[Touched]:
    """Add a batch's deltas (and settle the deltas that were waiting for their product), and note ``now`` as
    the latest arrival for each day they count for. ``shard`` names the rolled-up rows this writer adds to: a
    Kafka partition the calling worker owns, so that two workers never update the same rolled-up row."""
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
            now,
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


# Days whose data has settled since they were last judged: over (not after ``last_day``), with a version no
# judgement has seen, and nothing for them arrived after ``quiet_before``. Claimed by marking the versions
# judged; a row a batch is writing right now is skipped (that batch makes the day due again).
_CLAIM_SETTLED = """
WITH due AS (
    SELECT day FROM market_arrivals
    WHERE day <= $1::date
    GROUP BY day
    HAVING bool_or(version > judged) AND max(arrived_at) <= $2::timestamptz
    ORDER BY day
    LIMIT $3
),
locked AS (
    SELECT a.day, a.shard FROM market_arrivals a JOIN due USING (day)
    WHERE a.version > a.judged
    ORDER BY 1, 2
    FOR UPDATE OF a SKIP LOCKED
)
UPDATE market_arrivals a SET judged = a.version
FROM locked l WHERE a.day = l.day AND a.shard = l.shard
RETURNING a.day
"""


async def claim_settled(conn: AsyncConnection, last_day: date, quiet_before: datetime, limit: int) -> list[date]:
    """Claim (at most ``limit``) days whose data settled since their last judgement, oldest first."""
    result = await conn.exec_driver_sql(_CLAIM_SETTLED, (last_day, quiet_before, limit))
    return sorted({r[0] for r in _rows(result)})


@dataclass(frozen=True)
class DayState:
    """What the market monitor knows about the arrival of a day's data."""

    pending: bool  # changed since its last judgement
    quiet: bool  # nothing arrived for it after the quiet mark


async def day_states(conn: AsyncConnection, days: Sequence[date], quiet_before: datetime) -> dict[date, DayState]:
    """The days (of these) for which any figure ever arrived; a day not in the answer has no data."""
    if not days:
        return {}
    result = await conn.exec_driver_sql(
        """SELECT day, bool_or(version > judged), max(arrived_at) <= $2::timestamptz
           FROM market_arrivals WHERE day = ANY($1::date[]) GROUP BY day""",
        (sorted(set(days)), quiet_before),
    )
    return {r[0]: DayState(bool(r[1]), bool(r[2])) for r in _rows(result)}


# Every (market, product) of a day that a judgement of the day looks at: those with figures on the day or
# on one of the days it is compared with (``back`` days before), so that a market gone silent is judged too.
_CELLS_FOR = """
SELECT DISTINCT d.day, r.market, r.product_code
FROM unnest($1::date[]) AS d(day)
CROSS JOIN unnest($2::int[]) AS b(back)
JOIN market_rollup_daily r ON r.day = d.day - b.back
WHERE r.market <> $3::text
ORDER BY 1, 2, 3
"""


async def cells_for(conn: AsyncConnection, days: Sequence[date], backs: Sequence[int]) -> list[tuple[date, str, str]]:
    """(day, market, product) of every market (not the city) with figures on the day or ``back`` days before."""
    if not days:
        return []
    result = await conn.exec_driver_sql(_CELLS_FOR, (sorted(set(days)), list(backs), CITY))
    return [(r[0], r[1], r[2]) for r in _rows(result)]


async def open_alerts(conn: AsyncConnection, alert_ids: Sequence[str]) -> set[str]:
    """Which of these alerts exist and are not resolved."""
    if not alert_ids:
        return set()
    result = await conn.exec_driver_sql(
        "SELECT id FROM alerts WHERE id = ANY($1::text[]) AND status <> 'resolved'", (sorted(set(alert_ids)),)
    )
    return {r[0] for r in _rows(result)}


async def alert_states(conn: AsyncConnection, alert_ids: Sequence[str]) -> dict[str, AlertState]:
    """The stored level, status and evidence of these alerts (those that exist)."""
    if not alert_ids:
        return {}
    result = await conn.exec_driver_sql(
        "SELECT id, level, status, resolved_by, evidence::text FROM alerts WHERE id = ANY($1::text[])",
        (sorted(set(alert_ids)),),
    )
    return {r[0]: AlertState(r[1], r[2], r[3], orjson.loads(r[4])) for r in _rows(result)}


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
