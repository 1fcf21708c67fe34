"""Every table of the service, in one module.

API and event bodies live in :mod:`trace_service.contract`; a column rename here never changes the
public contract. The migrations in ``db/migrations`` create exactly these tables (a test compares).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA, JSONB, UUID
from sqlmodel import Field, SQLModel

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")
KG = sa.Numeric(14, 3)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=sa.Column(TZ, nullable=False, server_default=NOW, **kw))


class Operator(SQLModel, table=True):
    """A node of the chain (经营者/节点): farm, slaughterhouse, market, stall, ..."""

    __tablename__ = "operators"

    code: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    region: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    parent: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text, sa.ForeignKey("operators.code"), nullable=True, index=True)
    )
    credit_code: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # A designated emergency outlet (应急投放网点), marked by a regulator (migration 0013).
    emergency_outlet: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false())
    )
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="active"))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key. Only a keyed hash of the secret is kept; the secret is shown once."""

    __tablename__ = "api_keys"

    key_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    secret_hash: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    role: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    operator_code: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text, sa.ForeignKey("operators.code"), nullable=True, index=True)
    )
    name: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_by: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = _ts()
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    # A department key's scopes (contract section 9): event-type patterns, alerts, market, personal.
    scopes: list[str] | None = Field(default=None, sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=True))


class StoredEvent(SQLModel, table=True):
    """An applied event: the envelope as received, and what the service recorded about it."""

    __tablename__ = "events"

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    event_type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    occurred_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False))
    operator: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    envelope: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    sha256: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    source: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kafka_partition: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    kafka_offset: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    recorded_at: datetime = _ts()

    # By time of occurrence: the keyset pages of the exports (migration 0011).
    __table_args__ = (
        sa.Index("ix_events_operator_recorded", "operator", "recorded_at"),
        sa.Index("ix_events_occurred", "occurred_at", "event_id"),
    )


class Intake(SQLModel, table=True):
    """The intake ledger: events the API accepted that the worker has not applied yet, with their message.

    The API writes a row, with the message exactly as it produces it (topic, key, value, headers), in
    one transaction before producing, so a 202 means the event is here even if the broker then forgets
    it. The worker deletes the row in the transaction that applies its event and re-produces rows that
    wait too long (``worker/redeliver.py``). It also serves ``status: accepted`` and the API's conflict
    check for events in flight. Rows from before migration 0009 carry no message (hence the nullable
    columns), nor do rows whose message became a dead letter: the redeliverer skips both.
    """

    __tablename__ = "intake"

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    operator: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    sha256: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    accepted_at: datetime = _ts()
    topic: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    kafka_key: bytes | None = Field(default=None, sa_column=sa.Column(BYTEA, nullable=True))
    value: bytes | None = Field(default=None, sa_column=sa.Column(BYTEA, nullable=True))
    # The headers as produced, in order: [[name, base64 of the value], ...]; they carry the API's signature.
    headers: list[Any] | None = Field(default=None, sa_column=sa.Column(JSONB, nullable=True))
    produced_at: datetime = _ts()
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))

    # The redeliverer's scan: only rows that still hold a message (rejected rows drop theirs).
    __table_args__ = (sa.Index("ix_intake_due", "produced_at", postgresql_where=sa.text("value IS NOT NULL")),)


class ParkedEvent(SQLModel, table=True):
    """An event about a lot whose holder is not known yet, kept byte for byte until the lot is created."""

    __tablename__ = "parked_events"
    __table_args__ = (
        sa.Index("ix_parked_events_event", "event_id"),
        sa.Index("ix_parked_events_waits", "waits_for", postgresql_using="gin"),
        sa.Index("ix_parked_events_parked_at", "parked_at"),
    )

    topic: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    kafka_partition: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    kafka_offset: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), nullable=False))
    operator: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kafka_key: bytes | None = Field(default=None, sa_column=sa.Column(BYTEA, nullable=True))
    raw: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    headers: list[Any] = Field(sa_column=sa.Column(JSONB, nullable=False, server_default="[]"))
    waits_for: list[str] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    parked_at: datetime = _ts()


class DeadLetter(SQLModel, table=True):
    """A message the worker could not apply, kept byte for byte with the reason."""

    __tablename__ = "dead_letters"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    topic: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kafka_partition: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    kafka_offset: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    kafka_key: bytes | None = Field(default=None, sa_column=sa.Column(BYTEA, nullable=True))
    raw: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    error_code: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    error_message: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    details: list[Any] | None = Field(default=None, sa_column=sa.Column(JSONB, nullable=True))
    event_id: uuid.UUID | None = Field(default=None, sa_column=sa.Column(UUID(as_uuid=True), nullable=True, index=True))
    operator: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    recorded_at: datetime = _ts()

    __table_args__ = (sa.UniqueConstraint("topic", "kafka_partition", "kafka_offset", name="uq_dead_letters_position"),)


class Lot(SQLModel, table=True):
    """A node of the trace graph: a lot of pigs, meat or produce, or a retail sale (a leaf)."""

    __tablename__ = "lots"
    __table_args__ = (
        sa.Index("ix_lots_unresolved", "first_seen_at", postgresql_where=sa.text("status = 'unresolved'")),
        # Stock on hand (market/stock.py): the active lots by creation time (migration 0013).
        sa.Index("ix_lots_stock", "created_at", postgresql_where=sa.text("status = 'active' AND kind <> 'sale'")),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    code: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    kind: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    product_code: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    product_name: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    holder: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True, index=True))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="unresolved"))
    kg_in: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    kg_out: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    head_in: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    head_out: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    documents: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False, server_default="{}"))
    created_by_event: uuid.UUID | None = Field(default=None, sa_column=sa.Column(UUID(as_uuid=True), nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    updated_at: datetime = _ts()
    creator_type: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    origin_region: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # Quantity stated by the creating event; kg_in adds what trade receipts brought in.
    kg_created: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    head_created: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    kg_sold: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    # Running sums kept by the deltas of each batch's new rows (migration 0017): trade edges in, shipment lines,
    # confirmed intake edges out (head). kg_sold above is the sum of the sale edges out, kept the same way.
    kg_traded_in: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    kg_shipped: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    head_intake_out: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    # pork | produce, inherited down the graph like the product; and the slaughter time of pork.
    category: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    slaughtered_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    # Stopping: the lot's own stop, whether it reaches its descendants, and a stop inherited from above.
    stop_own: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    stop_down: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    stop_inherited: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    stopped_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    first_seen_at: datetime = _ts()


class Edge(SQLModel, table=True):
    """Quantity moved from a parent lot to a child lot by one event."""

    __tablename__ = "edges"

    parent_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), primary_key=True))
    child_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), primary_key=True))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    kg: Decimal | None = Field(default=None, sa_column=sa.Column(KG, nullable=True))
    head: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    # intake (pigs into a slaughter batch), transform (batch into carcasses), trade, sale
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="trade"))
    voucher_key: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # A buyer's link to the seller's lot, until the seller's shipment on that voucher lists the lot for this
    # buyer (contract section 7): it counts for the buyer's lot only and grants no right to read upstream.
    pending: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))

    # The primary key serves the forward walk; this one serves the backward walk without a heap visit.
    # Trade edges by voucher serve the voucher checks.
    __table_args__ = (
        sa.Index("ix_edges_child_parent", "child_id", "parent_id"),
        sa.Index("ix_edges_voucher", "voucher_key", postgresql_where=sa.text("voucher_key IS NOT NULL")),
        sa.Index("ix_edges_pending", "voucher_key", postgresql_where=sa.text("pending")),
    )


class Shipment(SQLModel, table=True):
    """A seller's trade.shipped: one voucher (交易凭证) to one buyer."""

    __tablename__ = "shipments"

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    seller: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    voucher_number: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    buyer: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    destination: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    occurred_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False))

    __table_args__ = (sa.Index("ix_shipments_voucher", "seller", "voucher_number"),)


class ShipmentLine(SQLModel, table=True):
    __tablename__ = "shipment_lines"

    event_id: uuid.UUID = Field(
        sa_column=sa.Column(UUID(as_uuid=True), sa.ForeignKey("shipments.event_id"), primary_key=True)
    )
    lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), primary_key=True))
    voucher_key: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kg: Decimal = Field(sa_column=sa.Column(KG, nullable=False))
    unit_price: Decimal | None = Field(default=None, sa_column=sa.Column(sa.Numeric(12, 3), nullable=True))

    __table_args__ = (
        sa.Index("ix_shipment_lines_lot", "lot_id", "voucher_key"),
        sa.Index("ix_shipment_lines_voucher", "voucher_key"),
    )


class Sale(SQLModel, table=True):
    """A retail sale: the sale code is itself a (leaf) lot so that lineage treats both alike."""

    __tablename__ = "sales"

    sale_lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), primary_key=True))
    lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), nullable=False, index=True))
    seller: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    stall: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    kg: Decimal = Field(sa_column=sa.Column(KG, nullable=False))
    unit_price: Decimal = Field(sa_column=sa.Column(sa.Numeric(12, 3), nullable=False))
    sold_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), nullable=False))


class LotFact(SQLModel, table=True):
    """Something recorded about a lot: a test, an ASF result, a hold or release, a disposal, a slaughter."""

    __tablename__ = "lot_facts"

    lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), primary_key=True))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    fact: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    result: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    occurred_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False))
    data: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False, server_default="{}"))


class PigCertificate(SQLModel, table=True):
    """An origin quarantine certificate (动物检疫合格证明) as dispatched with a live-pig lot."""

    __tablename__ = "pig_certificates"

    number: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    head_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    issued_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False))

    __table_args__ = (sa.Index("ix_pig_certificates_lot", "lot_id"),)


class CertificateClaim(SQLModel, table=True):
    """A slaughter intake that names its pigs by certificate number only (no from_lot)."""

    __tablename__ = "certificate_claims"

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    number: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    batch_lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), nullable=False))
    head: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))

    # Every intake names its certificate (for the certificate rules); only those without a from_lot
    # are linked to the farm lot through it.
    from_lot_given: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    operator: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    occurred_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))

    __table_args__ = (sa.Index("ix_certificate_claims_number", "number"),)


class CodeIssuer(SQLModel, table=True):
    """An operator that asked for lot codes: its 6-digit issuer sequence and its counter of the day.

    ``seq`` comes from the sequence ``code_issuer_seq`` the first time the operator asks and never
    changes. ``day`` (Asia/Shanghai) and ``next_serial`` are the per-(operator, day) serial counter; the
    day only moves forward, so a serial is never handed out twice.
    """

    __tablename__ = "code_issuers"

    operator: str = Field(sa_column=sa.Column(sa.Text, sa.ForeignKey("operators.code"), primary_key=True))
    seq: int = Field(sa_column=sa.Column(sa.Integer, sa.Sequence("code_issuer_seq"), nullable=False, unique=True))
    day: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    next_serial: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    created_at: datetime = _ts()


class CodeBlock(SQLModel, table=True):
    """A block of lot codes issued to an operator: serials ``first_serial .. first_serial + count - 1`` of a day."""

    __tablename__ = "code_blocks"

    seq: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    first_serial: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    operator: str = Field(sa_column=sa.Column(sa.Text, sa.ForeignKey("operators.code"), nullable=False))
    key_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    issued_at: datetime = _ts()

    __table_args__ = (sa.Index("ix_code_blocks_operator_day", "operator", "day"),)


class Alert(SQLModel, table=True):
    """A finding of a rule about a subject; its id is derived from the two, so it is found once."""

    __tablename__ = "alerts"

    id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    rule: str = Field(sa_column=sa.Column(sa.Text, nullable=False, index=True))
    severity: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    level: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    subject_type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject_code: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    operator: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True, index=True))
    message_zh: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    message_en: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    evidence: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False, server_default="{}"))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="open"))
    version: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    acknowledged_by: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    acknowledged_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    acknowledged_note: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    resolved_by: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    resolved_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    resolved_note: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))

    __table_args__ = (sa.Index("ix_alerts_created", "created_at", "id"),)


class AlertEvent(SQLModel, table=True):
    """Which events raised (or added evidence to) which alerts."""

    __tablename__ = "alert_events"

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    alert_id: str = Field(sa_column=sa.Column(sa.Text, sa.ForeignKey("alerts.id"), primary_key=True))


class AlertOutbox(SQLModel, table=True):
    """Alert versions to publish on trace.alerts.v1, written in the transaction that changed the alert."""

    __tablename__ = "alert_outbox"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    alert_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    version: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    created_at: datetime = _ts()
    published_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))

    __table_args__ = (sa.Index("ix_alert_outbox_pending", "id", postgresql_where=sa.text("published_at IS NULL")),)


class EarTag(SQLModel, table=True):
    """Ear tags as dispatched by farms and received by slaughterhouses."""

    __tablename__ = "ear_tags"

    tag: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), nullable=False))
    role: str = Field(sa_column=sa.Column(sa.Text, nullable=False))


class PendingCheck(SQLModel, table=True):
    """A rule that judges the absence of something (an ASF result, a certificate), due once late
    reports have had time to arrive."""

    __tablename__ = "pending_checks"

    rule: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    subject_code: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    due_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False, index=True))
    data: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False, server_default="{}"))


class MarketDaily(SQLModel, table=True):
    """Market supply figures of one reporting operator, product and local day (Asia/Shanghai): sums of the
    events, so they do not depend on the order the events arrive in. Markets are rolled up at query time
    (a tenant's figures count for its parent)."""

    __tablename__ = "market_daily"

    operator: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    product_code: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    kg_received: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    kg_sold: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    # Sum of kg x unit price of the retail sales: the day's average price is sales_amount / kg_sold.
    sales_amount: Decimal = Field(sa_column=sa.Column(sa.Numeric(20, 6), nullable=False, server_default="0"))
    sale_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    head: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))

    __table_args__ = (sa.Index("ix_market_daily_day_product", "day", "product_code"),)


class MarketHourly(SQLModel, table=True):
    """Receipts and slaughtered heads by local hour, so that a day in progress can be compared with the
    same hours of the baseline days."""

    __tablename__ = "market_hourly"

    operator: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    product_code: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    hour: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    kg_received: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    head: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))

    __table_args__ = (sa.Index("ix_market_hourly_day_product", "day", "product_code"),)


class MarketRollupDaily(SQLModel, table=True):
    """A market's daily figures (its tenants' and, unless it has a parent itself, its own), and the city's
    (market ``city``), summed when written. One row per writing worker's shard; readers sum the shards."""

    __tablename__ = "market_rollup_daily"
    # The last days of every market (average sales, the bulletin): by day (migration 0013).
    __table_args__ = (sa.Index("ix_market_rollup_daily_day", "day", "product_code"),)

    market: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    product_code: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    shard: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    kg_received: Decimal = Field(sa_column=sa.Column(sa.Numeric(16, 3), nullable=False, server_default="0"))
    kg_sold: Decimal = Field(sa_column=sa.Column(sa.Numeric(16, 3), nullable=False, server_default="0"))
    sales_amount: Decimal = Field(sa_column=sa.Column(sa.Numeric(22, 6), nullable=False, server_default="0"))
    sale_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    head: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))


class MarketRollupHourly(SQLModel, table=True):
    """The hourly receipts and heads of a market and of the city, summed when written, per shard."""

    __tablename__ = "market_rollup_hourly"

    market: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    product_code: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    hour: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    shard: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    kg_received: Decimal = Field(sa_column=sa.Column(sa.Numeric(16, 3), nullable=False, server_default="0"))
    head: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))


class MarketPending(SQLModel, table=True):
    """Market figures of events whose product is not known yet (a sale of a lot whose receipt has not
    arrived): counted the moment the product is known."""

    __tablename__ = "market_pending"

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    seq: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True))
    operator: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    day: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    hour: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))
    lot: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    alt_lot: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    kg_received: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    kg_sold: Decimal = Field(sa_column=sa.Column(KG, nullable=False, server_default="0"))
    sales_amount: Decimal = Field(sa_column=sa.Column(sa.Numeric(20, 6), nullable=False, server_default="0"))
    sale_count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    head: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    created_at: datetime = _ts()


class MarketSweep(SQLModel, table=True):
    """Clock-driven judgements of the market rules already made: a day through an hour (24: the whole day)."""

    __tablename__ = "market_sweeps"

    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    through_hour: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    swept_at: datetime = _ts()


class MarketArrival(SQLModel, table=True):
    """When a local day's market figures last changed, per writing worker's shard (migration 0014): the day
    is judged on its totals once nothing for it has arrived for the quiet period. ``version`` counts the
    batches that changed it, ``judged`` is the version its last judgement saw."""

    __tablename__ = "market_arrivals"

    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    shard: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    arrived_at: datetime = Field(sa_column=sa.Column(TZ, nullable=False))
    version: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="1"))
    judged: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))


class Integrator(SQLModel, table=True):
    """A direct producer to the events topic (contract section 8) and the operators it may report for.

    Its secret is not stored: it is HMAC(signing master, key_id + salt), recomputed by the worker to check
    signatures (access/keys.py explains why). ``operators`` are codes of registered operators.
    """

    __tablename__ = "integrators"

    key_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    salt: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    operators: list[str] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    created_by: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))


# -- sharing: the stream, department scopes, the audit (migration 0011) --


class SharedItem(SQLModel, table=True):
    """One item of the shared stream (contract section 9): an applied event, an alert version or a market
    figure, written in the transaction that made it. ``seq`` is drawn under a transaction-scoped advisory
    lock right before the commit, so the order of ``seq`` is the order in which items become visible
    (docs/adr/0006-shared-stream-order.md). ``item`` is the full, unredacted item; readers redact."""

    __tablename__ = "shared_items"

    seq: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=False))
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    event_type: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    rule: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # The reporting operator's region (events, alerts about an operator) or the market's (market figures).
    region: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    operator: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    item: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    created_at: datetime = _ts()


class AuditEntry(SQLModel, table=True):
    """Who read or received what: a feed page, an export, a department's read, a delivery."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    actor: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    role: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    action: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    count: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    first_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    last_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    detail: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False, server_default="{}"))
    at: datetime = _ts()

    # Newest first is a backward scan of the primary key; per actor, of this one.
    __table_args__ = (sa.Index("ix_audit_log_actor", "actor", "id"),)


# -- sharing: subscriptions, deliveries, reports (migration 0012) --


class Subscription(SQLModel, table=True):
    """A webhook subscription (contract section 9): where to POST the stream, which part of it, how far it got.

    ``cursor_seq`` is the last ``seq`` the receiver acknowledged (2xx). The batch in flight is pinned by
    ``pending_id`` (its ``webhook-id``) and ``pending_until`` (the cursor it moves to), so that a retry, even by
    another deliverer, sends the same batch under the same id. The secret is not stored: it is derived from the
    signing master and ``secret_salt`` (delivery/signing.py). ``lease_owner`` / ``lease_expires_at`` say which
    ``deliver`` process works on it; another takes it over once the lease has expired.
    """

    __tablename__ = "subscriptions"
    # No index on the lease: renewing it must stay a HOT update, and the claim reads a small table.
    __table_args__ = (sa.Index("ix_subscriptions_owner", "owner_key_id", "created_at"),)

    id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    owner_key_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    owner_role: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    kinds: list[str] | None = Field(default=None, sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=True))
    event_types: list[str] | None = Field(default=None, sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=True))
    rules: list[str] | None = Field(default=None, sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=True))
    regions: list[str] | None = Field(default=None, sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=True))
    allow_private: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))
    secret_salt: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False, server_default="active"))
    cursor_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0"))
    pending_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    pending_until: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    next_attempt_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    failing_since: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    last_error_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    last_success_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    paused_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    lease_owner: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    lease_expires_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    ended_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))


class SubscriptionDelivery(SQLModel, table=True):
    """One attempt to deliver a batch: its ``webhook-id``, the seqs it carried, and what the receiver answered."""

    __tablename__ = "subscription_deliveries"
    __table_args__ = (sa.Index("ix_subscription_deliveries_sub", "subscription_id", "id"),)

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    subscription_id: str = Field(sa_column=sa.Column(sa.Text, sa.ForeignKey("subscriptions.id"), nullable=False))
    delivery_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    first_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    last_seq: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    until_seq: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    items: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    status_code: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    duration_ms: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    deliverer: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    at: datetime = _ts()


class ReportFile(SQLModel, table=True):
    """A file of the upward report of a day (one per node, and the manifest): what was written and what was
    pushed, so that a rerun pushes only what the receiver has not acknowledged with these exact bytes."""

    __tablename__ = "report_files"

    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    name: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    operator: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    records: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    size_bytes: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    sha256: bytes = Field(sa_column=sa.Column(BYTEA, nullable=False))
    written_at: datetime = _ts()
    pushed_sha256: bytes | None = Field(default=None, sa_column=sa.Column(BYTEA, nullable=True))
    pushed_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    push_attempts: int = Field(sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


# -- cold chain: temperatures, imports (migration 0015) --


class LotTemperature(SQLModel, table=True):
    """A temperature reading of a lot (lot.temperature_recorded, or an EPCIS sensor report), for the
    cold_chain_break rule. The key serves each lot's readings in time order."""

    __tablename__ = "lot_temperatures"

    lot_id: int = Field(sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("lots.id"), primary_key=True))
    at: datetime = Field(sa_column=sa.Column(TZ, primary_key=True))
    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    celsius: Decimal = Field(sa_column=sa.Column(sa.Numeric(5, 2), nullable=False))


# -- EPCIS: captures and the event index (migrations 0016, 0018) --


class EpcisCapture(SQLModel, table=True):
    """A capture job of ``POST /epcis/capture``: the events of one document, in document order. Its state is
    read from the events' own statuses (applied, dead letter); ``finished_at`` and ``errors`` are kept once it
    is done."""

    __tablename__ = "epcis_captures"
    __table_args__ = (sa.Index("ix_epcis_captures_key", "key_id", "created_at", "id"),)

    id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    key_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    operator: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = _ts()
    finished_at: datetime | None = Field(default=None, sa_column=sa.Column(TZ, nullable=True))
    # Three lists of the same length: the envelope id, the CBV event hash and the eventID sent (or null).
    event_ids: list[uuid.UUID] = Field(sa_column=sa.Column(sa.ARRAY(UUID(as_uuid=True)), nullable=False))
    event_hashes: list[str] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    epcis_ids: list[str | None] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    errors: list[Any] | None = Field(default=None, sa_column=sa.Column(JSONB, nullable=True))


class EpcisEvent(SQLModel, table=True):
    """Every applied event as EPCIS 2.0 (written by the worker with the event): captured events as sent plus
    ``eventID`` in ``doc``; domestic events by their index columns only, ``doc`` null (migration 0018): the query
    renders them from their envelope in ``events``. The columns are the query index of ``GET /epcis/events``."""

    __tablename__ = "epcis_events"
    __table_args__ = (
        sa.Index("ix_epcis_events_record", "record_time", "event_id"),
        sa.Index("ix_epcis_events_operator_record", "operator", "record_time", "event_id"),
        sa.Index("ix_epcis_events_event_time", "event_time"),
        sa.Index("ix_epcis_events_epcs", "epcs", postgresql_using="gin"),
        sa.Index("ix_epcis_events_input_epcs", "input_epcs", postgresql_using="gin"),
        sa.Index("ix_epcis_events_output_epcs", "output_epcs", postgresql_using="gin"),
    )

    event_id: uuid.UUID = Field(sa_column=sa.Column(UUID(as_uuid=True), primary_key=True))
    epcis_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    event_time: datetime = Field(sa_column=sa.Column(TZ, nullable=False))
    record_time: datetime = _ts()
    # bizStep and disposition as CBV short names (``shipping``), whatever form was sent.
    biz_step: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    disposition: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    action: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    read_point: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    biz_location: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    operator: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    epcs: list[str] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    input_epcs: list[str] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    output_epcs: list[str] = Field(sa_column=sa.Column(sa.ARRAY(sa.Text), nullable=False))
    parent_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    doc: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB, nullable=True))
    # The capture document's @context; null for a domestic event (the service's own context).
    context: Any = Field(default=None, sa_column=sa.Column(JSONB, nullable=True))
    error_declaration: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB, nullable=True))


metadata = SQLModel.metadata
