"""Issued lot codes: each operator's issuer sequence and daily counter, and the blocks issued.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE SEQUENCE code_issuer_seq AS integer START WITH 1;

CREATE TABLE code_issuers (
    operator    text PRIMARY KEY REFERENCES operators (code),
    seq         integer NOT NULL UNIQUE,
    day         date NOT NULL,
    next_serial integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE code_blocks (
    seq          integer NOT NULL,
    day          date NOT NULL,
    first_serial integer NOT NULL,
    count        integer NOT NULL,
    operator     text NOT NULL REFERENCES operators (code),
    key_id       text NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seq, day, first_serial)
);
CREATE INDEX ix_code_blocks_operator_day ON code_blocks (operator, day)
"""


def upgrade() -> None:
    # asyncpg prepares each statement, so they go one at a time.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE code_blocks, code_issuers")
    op.execute("DROP SEQUENCE code_issuer_seq")
