"""GS1 EPCIS 2.0 (contract section 10): the capture jobs of ``POST /epcis/capture`` and the event index that
``GET /epcis/events`` reads, one row per applied event (captured events as sent, domestic events rendered).

The EPC lists are text arrays with GIN indexes, so that ``MATCH_anyEPC`` on one lot is an index lookup
whatever the table's size; paging is a keyset over (record_time, event_id).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

SCHEMA = """
CREATE TABLE epcis_captures (
    id           uuid PRIMARY KEY,
    key_id       text NOT NULL,
    operator     text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    event_ids    uuid[] NOT NULL,
    event_hashes text[] NOT NULL,
    epcis_ids    text[] NOT NULL,
    errors       jsonb
);
CREATE INDEX ix_epcis_captures_key ON epcis_captures (key_id, created_at, id);

CREATE TABLE epcis_events (
    event_id          uuid PRIMARY KEY,
    epcis_id          text NOT NULL UNIQUE,
    type              text NOT NULL,
    event_time        timestamptz NOT NULL,
    record_time       timestamptz NOT NULL DEFAULT now(),
    biz_step          text,
    disposition       text,
    action            text,
    read_point        text,
    biz_location      text,
    operator          text NOT NULL,
    epcs              text[] NOT NULL,
    input_epcs        text[] NOT NULL,
    output_epcs       text[] NOT NULL,
    parent_id         text,
    doc               jsonb NOT NULL,
    context           jsonb,
    error_declaration jsonb
);
CREATE INDEX ix_epcis_events_record ON epcis_events (record_time, event_id);
CREATE INDEX ix_epcis_events_operator_record ON epcis_events (operator, record_time, event_id);
CREATE INDEX ix_epcis_events_event_time ON epcis_events (event_time);
CREATE INDEX ix_epcis_events_epcs ON epcis_events USING gin (epcs);
CREATE INDEX ix_epcis_events_input_epcs ON epcis_events USING gin (input_epcs);
CREATE INDEX ix_epcis_events_output_epcs ON epcis_events USING gin (output_epcs)
"""


def upgrade() -> None:
    # asyncpg prepares each statement, so they go one at a time.
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE epcis_events")
    op.execute("DROP TABLE epcis_captures")
