"""The intake ledger keeps each accepted event's bytes so that events a broker forgot are produced again.

The API writes the row, with the message exactly as it will produce it, before producing; a 202 means
the event is in this table. The worker deletes the row in the transaction that applies the event, and
re-produces rows that wait too long (``worker/redeliver.py``).

Rows accepted before this revision have no bytes (their events were already in Kafka when the row was
written): the new columns are nullable and the redeliverer skips rows without a message, as it does rows
whose message was rejected (a dead letter), whose bytes it drops.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # asyncpg prepares each statement, so they go one at a time.
    op.execute(
        """
        ALTER TABLE intake
            ADD COLUMN topic       text,
            ADD COLUMN kafka_key   bytea,
            ADD COLUMN value       bytea,
            ADD COLUMN headers     jsonb,
            ADD COLUMN produced_at timestamptz NOT NULL DEFAULT now(),
            ADD COLUMN attempts    integer NOT NULL DEFAULT 1
        """
    )
    # The redeliverer's scan, oldest first, over the rows it may produce again: applied rows are deleted and
    # rejected ones lose their message, so the index holds only what is in flight.
    op.execute("CREATE INDEX ix_intake_due ON intake (produced_at) WHERE value IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX ix_intake_due")
    op.execute(
        """
        ALTER TABLE intake
            DROP COLUMN topic,
            DROP COLUMN kafka_key,
            DROP COLUMN value,
            DROP COLUMN headers,
            DROP COLUMN produced_at,
            DROP COLUMN attempts
        """
    )
