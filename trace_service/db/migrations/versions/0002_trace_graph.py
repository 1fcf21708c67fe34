"""The trace graph: quantities on lots, edge kinds, shipments, sales, facts and pig certificates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
ALTER TABLE lots
    ADD COLUMN creator_type text,
    ADD COLUMN origin_region text,
    ADD COLUMN kg_created numeric(14, 3) NOT NULL DEFAULT 0,
    ADD COLUMN head_created integer NOT NULL DEFAULT 0,
    ADD COLUMN kg_sold numeric(14, 3) NOT NULL DEFAULT 0;

ALTER TABLE edges
    ADD COLUMN kind text NOT NULL DEFAULT 'trade',
    ADD COLUMN voucher_key text;

CREATE TABLE shipments (
    event_id       uuid PRIMARY KEY,
    seller         text NOT NULL,
    voucher_number text NOT NULL,
    buyer          text NOT NULL,
    destination    text,
    occurred_at    timestamptz NOT NULL
);
CREATE INDEX ix_shipments_voucher ON shipments (seller, voucher_number);

CREATE TABLE shipment_lines (
    event_id    uuid NOT NULL REFERENCES shipments (event_id),
    lot_id      bigint NOT NULL REFERENCES lots (id),
    voucher_key text NOT NULL,
    kg          numeric(14, 3) NOT NULL,
    unit_price  numeric(12, 3),
    PRIMARY KEY (event_id, lot_id)
);
CREATE INDEX ix_shipment_lines_lot ON shipment_lines (lot_id, voucher_key);

CREATE TABLE sales (
    sale_lot_id bigint PRIMARY KEY REFERENCES lots (id),
    lot_id      bigint NOT NULL REFERENCES lots (id),
    seller      text NOT NULL,
    stall       text,
    kg          numeric(14, 3) NOT NULL,
    unit_price  numeric(12, 3) NOT NULL,
    sold_at     timestamptz NOT NULL,
    event_id    uuid NOT NULL
);
CREATE INDEX ix_sales_lot_id ON sales (lot_id);

CREATE TABLE lot_facts (
    lot_id      bigint NOT NULL REFERENCES lots (id),
    event_id    uuid NOT NULL,
    fact        text NOT NULL,
    result      text,
    occurred_at timestamptz NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (lot_id, event_id, fact)
);

CREATE TABLE pig_certificates (
    number     text NOT NULL,
    event_id   uuid NOT NULL,
    lot_id     bigint NOT NULL REFERENCES lots (id),
    kind       text NOT NULL,
    head_count integer NOT NULL,
    issued_at  timestamptz NOT NULL,
    PRIMARY KEY (number, event_id)
);
CREATE INDEX ix_pig_certificates_lot ON pig_certificates (lot_id);

CREATE TABLE certificate_claims (
    event_id     uuid PRIMARY KEY,
    number       text NOT NULL,
    batch_lot_id bigint NOT NULL REFERENCES lots (id),
    head         integer NOT NULL
);
CREATE INDEX ix_certificate_claims_number ON certificate_claims (number)
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE certificate_claims, pig_certificates, lot_facts, sales, shipment_lines, shipments")
    op.execute("ALTER TABLE edges DROP COLUMN kind, DROP COLUMN voucher_key")
    op.execute(
        "ALTER TABLE lots DROP COLUMN creator_type, DROP COLUMN origin_region, DROP COLUMN kg_created, "
        "DROP COLUMN head_created, DROP COLUMN kg_sold"
    )
