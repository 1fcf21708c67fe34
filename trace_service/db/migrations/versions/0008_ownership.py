"""Ownership (contract section 7): pending trade links, and events parked until the lot they name has a holder.

* ``edges.pending``: a buyer's link to the seller's lot (``trade.received`` ``from_lot``) counts for the
  buyer's own lot only, until the seller's ``trade.shipped`` with the same voucher lists that lot for this
  buyer. A pending link gives the buyer no right to read the seller's lot or anything upstream of it. A
  slaughterhouse's link to a farm's lot waits in the same way for the farm's dispatch naming it.
* ``parked_events``: an event that speaks about a lot whose holder is not known yet (the lot is unknown or
  unresolved) waits here, byte for byte, until the lot's creating event says who holds it; it is then
  applied or refused (``not_holder``) like any other.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = """
ALTER TABLE edges ADD COLUMN pending boolean NOT NULL DEFAULT false;
-- Links that existed before this revision were made when the seller's shipment was not required.
UPDATE edges e SET pending = true
WHERE e.kind = 'trade' AND NOT EXISTS (
    SELECT 1 FROM shipment_lines s JOIN shipments sh ON sh.event_id = s.event_id JOIN lots c ON c.id = e.child_id
    WHERE s.voucher_key = e.voucher_key AND s.lot_id = e.parent_id AND sh.buyer = c.holder
);
UPDATE edges e SET pending = true
FROM lots p, lots c
WHERE e.kind = 'intake' AND p.id = e.parent_id AND c.id = e.child_id
  AND p.documents->>'destination' IS DISTINCT FROM c.holder;
CREATE INDEX ix_edges_pending ON edges (voucher_key) WHERE pending;

CREATE TABLE parked_events (
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    event_id        uuid NOT NULL,
    operator        text NOT NULL,
    kafka_key       bytea,
    raw             bytea NOT NULL,
    headers         jsonb NOT NULL DEFAULT '[]',
    waits_for       text[] NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX ix_parked_events_event ON parked_events (event_id);
CREATE INDEX ix_parked_events_waits ON parked_events USING gin (waits_for);
CREATE INDEX ix_parked_events_parked_at ON parked_events (parked_at);
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE parked_events")
    op.execute("DROP INDEX ix_edges_pending")
    op.execute("ALTER TABLE edges DROP COLUMN pending")
