"""Indexes for the voucher checks: shipment lines and trade edges by voucher, so that judging a batch's
vouchers probes its own rows instead of scanning every shipment line and edge.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_shipment_lines_voucher ON shipment_lines (voucher_key)")
    op.execute("CREATE INDEX ix_edges_voucher ON edges (voucher_key) WHERE voucher_key IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_edges_voucher")
    op.execute("DROP INDEX ix_shipment_lines_voucher")
