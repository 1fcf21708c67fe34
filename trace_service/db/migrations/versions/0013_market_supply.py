"""Market supply for action (contract section 11): designated emergency outlets on operators.

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
    op.execute("SELECT 1")  # placeholder: filled in by the market work


def downgrade() -> None:
    op.execute("SELECT 1")
