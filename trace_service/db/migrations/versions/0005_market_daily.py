"""Market supply monitoring: daily figures per reporting operator and product, receipts and heads by
hour, figures waiting for their product, and the clock-driven judgements already made.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE market_daily (
    operator     text NOT NULL,
    product_code text NOT NULL,
    day          date NOT NULL,
    kg_received  numeric(14, 3) NOT NULL DEFAULT 0,
    kg_sold      numeric(14, 3) NOT NULL DEFAULT 0,
    sales_amount numeric(20, 6) NOT NULL DEFAULT 0,
    sale_count   integer NOT NULL DEFAULT 0,
    head         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (operator, product_code, day)
);
CREATE INDEX ix_market_daily_day_product ON market_daily (day, product_code);

CREATE TABLE market_hourly (
    operator     text NOT NULL,
    product_code text NOT NULL,
    day          date NOT NULL,
    hour         smallint NOT NULL,
    kg_received  numeric(14, 3) NOT NULL DEFAULT 0,
    head         integer NOT NULL DEFAULT 0,
    PRIMARY KEY (operator, product_code, day, hour)
);
CREATE INDEX ix_market_hourly_day_product ON market_hourly (day, product_code);

CREATE TABLE market_pending (
    event_id     uuid NOT NULL,
    seq          integer NOT NULL,
    operator     text NOT NULL,
    day          date NOT NULL,
    hour         smallint NOT NULL,
    lot          text NOT NULL,
    alt_lot      text,
    kg_received  numeric(14, 3) NOT NULL DEFAULT 0,
    kg_sold      numeric(14, 3) NOT NULL DEFAULT 0,
    sales_amount numeric(20, 6) NOT NULL DEFAULT 0,
    sale_count   integer NOT NULL DEFAULT 0,
    head         integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, seq)
);

CREATE TABLE market_sweeps (
    day          date NOT NULL,
    through_hour smallint NOT NULL,
    swept_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, through_hour)
)
"""


def upgrade() -> None:
    # asyncpg prepares each statement, so they go one at a time.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE market_sweeps, market_pending, market_hourly, market_daily")
