"""Market judging on settled data: when each local day's market figures last changed, so that a day is
judged on its totals only once its data has stopped arriving, and judged again when late data changes it.

One row per day and writing worker's shard (the same shards as the rolled-up figures), so that two workers
never wait on each other's row. ``version`` counts the batches that changed the day, ``judged`` is the
version the last judgement saw: a day is due when a version is unjudged and nothing arrived for it for the
quiet period. The days already in the figures are taken as judged.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE market_arrivals (
    day        date NOT NULL,
    shard      smallint NOT NULL,
    arrived_at timestamptz NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    judged     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, shard)
);

INSERT INTO market_arrivals (day, shard, arrived_at, version, judged)
SELECT day, 0, now(), 1, 1 FROM market_rollup_daily WHERE market = 'city' GROUP BY day
"""


def upgrade() -> None:
    # asyncpg prepares each statement, so they go one at a time.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE market_arrivals")
