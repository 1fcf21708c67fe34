"""Integrators (contract section 8): direct Kafka producers registered with the operators they report for.

No secret is stored: an integrator's secret is HMAC(signing master, key_id + salt), recomputed by the worker
to check each message's signature, so this table alone never yields one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE integrators (
            key_id     text PRIMARY KEY,
            name       text NOT NULL,
            salt       bytea NOT NULL,
            operators  text[] NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE integrators")
