"""Market supply for action (contract section 11): designated emergency outlets on operators, and the
indexes that keep the stock, levels and bulletin reads set-based.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 应急投放网点: the markets and shops the commerce bureau releases reserves through.
    op.execute("ALTER TABLE operators ADD COLUMN emergency_outlet boolean NOT NULL DEFAULT false")
    # Stock on hand: the lots still active, by creation time (stock older than its shelf life is not
    # counted). Only the predicate's columns and created_at are indexed, so the frequent updates of a
    # lot's kg_out stay heap-only.
    op.execute("CREATE INDEX ix_lots_stock ON lots (created_at) WHERE status = 'active' AND kind <> 'sale'")
    # The last days' figures of every market (average sales, the bulletin's sellers): by day, not by market.
    op.execute("CREATE INDEX ix_market_rollup_daily_day ON market_rollup_daily (day, product_code)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_market_rollup_daily_day")
    op.execute("DROP INDEX IF EXISTS ix_lots_stock")
    op.execute("ALTER TABLE operators DROP COLUMN IF EXISTS emergency_outlet")
