"""Market figures rolled up when they are written: per market (a tenant counts for its parent) and for the
whole city, by day and by hour. Judging a batch's cells then reads a few rows per cell instead of summing
every tenant's figures. Each row is one worker's share (``shard``: a Kafka partition the writing worker
owned), so that workers never wait on each other's row locks; readers sum the shards.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE market_rollup_daily (
    market       text NOT NULL,
    product_code text NOT NULL,
    day          date NOT NULL,
    shard        smallint NOT NULL,
    kg_received  numeric(16, 3) NOT NULL DEFAULT 0,
    kg_sold      numeric(16, 3) NOT NULL DEFAULT 0,
    sales_amount numeric(22, 6) NOT NULL DEFAULT 0,
    sale_count   integer NOT NULL DEFAULT 0,
    head         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (market, product_code, day, shard)
);

CREATE TABLE market_rollup_hourly (
    market       text NOT NULL,
    product_code text NOT NULL,
    day          date NOT NULL,
    hour         smallint NOT NULL,
    shard        smallint NOT NULL,
    kg_received  numeric(16, 3) NOT NULL DEFAULT 0,
    head         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (market, product_code, day, hour, shard)
);

INSERT INTO market_rollup_daily (market, product_code, day, shard, kg_received, kg_sold, sales_amount, sale_count,
                                 head)
SELECT COALESCE(o.parent, r.operator), r.product_code, r.day, 0, sum(r.kg_received), sum(r.kg_sold),
       sum(r.sales_amount), sum(r.sale_count), sum(r.head)
FROM market_daily r LEFT JOIN operators o ON o.code = r.operator
GROUP BY 1, 2, 3
UNION ALL
SELECT 'city', r.product_code, r.day, 0, sum(r.kg_received), sum(r.kg_sold), sum(r.sales_amount), sum(r.sale_count),
       sum(r.head)
FROM market_daily r
GROUP BY 2, 3;

INSERT INTO market_rollup_hourly (market, product_code, day, hour, shard, kg_received, head)
SELECT COALESCE(o.parent, h.operator), h.product_code, h.day, h.hour, 0, sum(h.kg_received), sum(h.head)
FROM market_hourly h LEFT JOIN operators o ON o.code = h.operator
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT 'city', h.product_code, h.day, h.hour, 0, sum(h.kg_received), sum(h.head)
FROM market_hourly h
GROUP BY 2, 3, 4
"""


def upgrade() -> None:
    # asyncpg prepares each statement, so they go one at a time.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE market_rollup_hourly, market_rollup_daily")
