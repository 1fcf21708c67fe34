"""The shared stream (contract section 9): department scopes on keys, the ordered items of the feed, the audit of who read what.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SELECT 1")  # placeholder: filled in by the sharing work


def downgrade() -> None:
    op.execute("SELECT 1")
