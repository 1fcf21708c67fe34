"""Imported cold-chain meat (issue 14): the temperature readings of lots.

The operator kinds ``importer`` and ``cold_store`` need nothing here: ``operators.kind`` is free text checked
by the API (``access.models.OperatorKind``), not by a database constraint. Imported lots, their documents and
the facts of cold stores, import documents and custody live in the existing ``lots`` and ``lot_facts``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE lot_temperatures (
    lot_id   bigint NOT NULL REFERENCES lots (id),
    at       timestamptz NOT NULL,
    event_id uuid NOT NULL,
    celsius  numeric(5, 2) NOT NULL,
    PRIMARY KEY (lot_id, at, event_id)
)
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS lot_temperatures")
