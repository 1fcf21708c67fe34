"""The EPCIS index keeps no rendered document of a domestic event (issue 11): ``epcis_events.doc`` is null for
every event type but ``epcis.event``, and ``GET /epcis/events`` renders a domestic event from its envelope in
``events`` when it reads it. Rows written before keep their document (read as before).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-13
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE epcis_events ALTER COLUMN doc DROP NOT NULL")


def downgrade() -> None:
    # The rendering of the domestic rows is the query's (Python); going back drops them from the index rather
    # than leave rows the old code cannot serve. Replaying the events would index them again.
    op.execute("DELETE FROM epcis_events WHERE doc IS NULL")
    op.execute("ALTER TABLE epcis_events ALTER COLUMN doc SET NOT NULL")
