"""Webhook subscriptions, their deliveries, and the runs of the upward report (contract section 9).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the sharing work


def downgrade() -> None:
    op.execute("SELECT 1")
