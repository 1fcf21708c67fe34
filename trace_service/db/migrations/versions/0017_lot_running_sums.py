"""Running sums of a lot's edges and shipment lines (issue 11): kept up to date by the deltas of each batch's
new rows instead of being summed again from every edge whenever a lot is touched.

``kg_sold`` (sale edges out) is already such a sum; this adds the kg traded in (trade edges in), the kg shipped
(shipment lines) and the head taken by confirmed intakes (intake edges out), filled from the stored rows.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

COLUMNS = ("kg_traded_in", "kg_shipped", "head_intake_out")

FILL = """
UPDATE lots l SET
    kg_traded_in = COALESCE((SELECT sum(e.kg) FROM edges e WHERE e.child_id = l.id AND e.kind = 'trade'), 0),
    kg_shipped = COALESCE((SELECT sum(s.kg) FROM shipment_lines s WHERE s.lot_id = l.id), 0),
    head_intake_out = COALESCE(
        (SELECT sum(e.head) FROM edges e WHERE e.parent_id = l.id AND e.kind = 'intake' AND NOT e.pending), 0)
WHERE EXISTS (SELECT 1 FROM edges e WHERE e.child_id = l.id OR e.parent_id = l.id)
   OR EXISTS (SELECT 1 FROM shipment_lines s WHERE s.lot_id = l.id)
"""


def upgrade() -> None:
    op.execute(
        "ALTER TABLE lots ADD COLUMN kg_traded_in numeric(14, 3) NOT NULL DEFAULT 0, "
        "ADD COLUMN kg_shipped numeric(14, 3) NOT NULL DEFAULT 0, "
        "ADD COLUMN head_intake_out integer NOT NULL DEFAULT 0"
    )
    op.execute(FILL)


def downgrade() -> None:
    op.execute("ALTER TABLE lots " + ", ".join(f"DROP COLUMN IF EXISTS {c}" for c in COLUMNS))
