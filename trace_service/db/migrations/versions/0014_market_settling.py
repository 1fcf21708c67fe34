"""Market judging on settled data: what the market rules need to know when a day's data stopped arriving.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the market work


def downgrade() -> None:
    op.execute("SELECT 1")
