"""What each event does to the trace graph, as rows to write. Pure: no I/O.

The projection is a function of the *set* of applied events, never of their order:

* a lot is created by exactly one creating event; a reference to a lot not seen yet creates it
  ``unresolved`` and the creating event fills it in whenever it arrives (if two events claim to
  create the same code, the earliest ``(occurred_at, event_id)`` wins, whatever the arrival order);
* quantities and status are recomputed from the stored edges and facts of the lots a batch touched,
  so they are sums and maxima over sets, not running totals;
* a slaughter intake that names its pigs by certificate number is linked to the farm lot by a join
  that runs whenever either side arrives.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from trace_service.contract.epcis.mapping import Effects
from trace_service.contract.events import (
    ColdstoreReleasedEvent,
    ColdstoreStoredInEvent,
    Envelope,
    EpcisEventEvent,
    Event,
    FarmPigsDispatchedEvent,
    ImportCustomsCleared,
    ImportCustomsClearedEvent,
    ImportDocumentsSuppliedEvent,
    LotDisposedEvent,
    LotTemperatureRecordedEvent,
    LotTestedEvent,
    ProduceHarvestedEvent,
    RegulatorLotHeldEvent,
    RegulatorLotReleasedEvent,
    RetailSoldEvent,
    SlaughterAsfTestedEvent,
    SlaughterBatchSlaughteredEvent,
    SlaughterPigsReceivedEvent,
    TradeReceivedEvent,
    TradeShippedEvent,
    epcis_effects,
)
from trace_service.contract.events import EventType as T

LIVE_PIG_PRODUCT = ("PIG-LIVE", "生猪")


@dataclass(frozen=True)
class Creation:
    code: str
    kind: str
    product_code: str | None
    product_name: str | None
    holder: str
    created_at: datetime
    event_id: uuid.UUID
    event_type: str
    kg: Decimal
    head: int
    origin_region: str | None
    documents: dict[str, Any]
    category: str | None = None  # pork | produce; received lots and sales inherit it
    slaughtered_at: datetime | None = None

    @classmethod
    def of(
        cls,
        ev: Envelope,
        code: str,
        kind: str,
        *,
        product: tuple[str | None, str | None] = (None, None),
        kg: Decimal = Decimal(0),
        head: int = 0,
        origin_region: str | None = None,
        documents: dict[str, Any],
        category: str | None = None,
        slaughtered_at: datetime | None = None,
    ) -> Creation:
        """The lot ``code`` that event ``ev`` creates: held by its operator, created when it happened."""
        return cls(
            code, kind, *product, ev.operator, ev.occurred_at, ev.event_id, ev.event_type, kg, head, origin_region,
            documents, category, slaughtered_at,
        )  # fmt: skip


@dataclass(frozen=True)
class EdgeRow:
    parent: str
    child: str
    event_id: uuid.UUID
    kg: Decimal | None
    head: int | None
    kind: str  # intake | transform | trade | sale
    voucher_key: str | None = None


@dataclass(frozen=True)
class FactRow:
    lot: str
    event_id: uuid.UUID
    # test | asf | hold | release | disposed | slaughtered | import_docs | cold_in | cold_out | custody
    # (custody: data {"holder": code} makes that operator the lot's holder; see repository.apply_plan)
    fact: str
    result: str | None
    occurred_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class ShipmentRow:
    event_id: uuid.UUID
    seller: str
    voucher_number: str
    buyer: str
    destination: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class ShipmentLineRow:
    event_id: uuid.UUID
    lot: str
    voucher_key: str
    kg: Decimal
    unit_price: Decimal | None


@dataclass(frozen=True)
class SaleRow:
    sale_code: str
    lot: str
    seller: str
    stall: str | None
    kg: Decimal
    unit_price: Decimal
    sold_at: datetime
    event_id: uuid.UUID


@dataclass(frozen=True)
class CertificateRow:
    number: str
    event_id: uuid.UUID
    lot: str
    kind: str
    head_count: int
    issued_at: datetime


@dataclass(frozen=True)
class ClaimRow:
    event_id: uuid.UUID
    number: str
    batch_lot: str
    head: int
    from_lot_given: bool
    operator: str
    occurred_at: datetime


@dataclass(frozen=True)
class EarTagRow:
    tag: str
    event_id: uuid.UUID
    lot: str
    role: str  # dispatched | received


@dataclass(frozen=True)
class TemperatureRow:
    """One temperature reading of a lot (``lot_temperatures``)."""

    lot: str
    event_id: uuid.UUID
    at: datetime
    celsius: Decimal


@dataclass
class Plan:
    codes: set[str] = field(default_factory=set)
    creations: list[Creation] = field(default_factory=list)
    edges: list[EdgeRow] = field(default_factory=list)
    facts: list[FactRow] = field(default_factory=list)
    shipments: list[ShipmentRow] = field(default_factory=list)
    shipment_lines: list[ShipmentLineRow] = field(default_factory=list)
    sales: list[SaleRow] = field(default_factory=list)
    certificates: list[CertificateRow] = field(default_factory=list)
    claims: list[ClaimRow] = field(default_factory=list)
    ear_tags: list[EarTagRow] = field(default_factory=list)
    temperatures: list[TemperatureRow] = field(default_factory=list)

    def create(self, c: Creation) -> None:
        self.codes.add(c.code)
        self.creations.append(c)

    def edge(self, e: EdgeRow) -> None:
        self.codes.update((e.parent, e.child))
        self.edges.append(e)

    def fact(self, f: FactRow) -> None:
        self.codes.add(f.lot)
        self.facts.append(f)

    def temperature(self, t: TemperatureRow) -> None:
        self.codes.add(t.lot)
        self.temperatures.append(t)


def _kg(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def voucher_key(seller: str, voucher_number: str) -> str:
    """Voucher numbers are unique per seller, so the pair names one shipment."""
    return f"{seller}/{voucher_number}"


# -- the graph effect of each event type (the table: trace_service/effects.py) ------------------------------


def farm_pigs_dispatched(p: Plan, ev: FarmPigsDispatchedEvent) -> None:
    d, eid = ev.data, ev.event_id
    cert = d.quarantine_cert
    p.create(
        Creation.of(
            ev,
            d.lot,
            "live_pigs",
            product=LIVE_PIG_PRODUCT,
            head=d.head_count,
            origin_region=d.origin_region,
            documents={
                "farm_code": d.farm_code,
                "quarantine_cert": cert.model_dump(mode="json"),
                "destination": d.destination,
                "ear_tag_count": len(d.ear_tags),
            },
            category="pork",
        )
    )
    p.ear_tags.extend(EarTagRow(tag, eid, d.lot, "dispatched") for tag in dict.fromkeys(d.ear_tags))
    p.certificates.append(CertificateRow(cert.number, eid, d.lot, cert.kind, cert.head_count, cert.issued_at))


def slaughter_pigs_received(p: Plan, ev: SlaughterPigsReceivedEvent) -> None:
    d, eid, at = ev.data, ev.event_id, ev.occurred_at
    p.create(
        Creation.of(
            ev,
            d.lot,
            "slaughter_batch",
            product=LIVE_PIG_PRODUCT,
            kg=_kg(d.live_weight_kg) or Decimal(0),
            head=d.head_count,
            origin_region=d.origin_region,
            documents={
                "quarantine_cert_number": d.quarantine_cert_number,
                "farm_code": d.farm_code,
                "dead_on_arrival": d.dead_on_arrival,
                "ear_tag_count": len(d.ear_tags),
            },
            category="pork",
        )
    )
    p.ear_tags.extend(EarTagRow(tag, eid, d.lot, "received") for tag in dict.fromkeys(d.ear_tags))
    head = d.head_count + d.dead_on_arrival
    if d.from_lot:
        p.edge(EdgeRow(d.from_lot, d.lot, eid, None, head, "intake"))
    # Every intake is a claim on its certificate (the certificate rules count them); only one
    # without a from_lot is linked to the farm lot through it.
    p.claims.append(ClaimRow(eid, d.quarantine_cert_number, d.lot, head, bool(d.from_lot), ev.operator, at))


def slaughter_asf_tested(p: Plan, ev: SlaughterAsfTestedEvent) -> None:
    d = ev.data
    data = {"method": d.method, "sampled_at": d.sampled_at.isoformat()}
    p.fact(FactRow(d.lot, ev.event_id, "asf", d.result, ev.occurred_at, data))


def slaughter_batch_slaughtered(p: Plan, ev: SlaughterBatchSlaughteredEvent) -> None:
    d, eid, at = ev.data, ev.event_id, ev.occurred_at
    docs = {
        "quality_cert_number": d.quality_cert_number,
        "product_quarantine_cert_number": d.product_quarantine_cert_number,
        "slaughter_batch": d.lot,
        "slaughtered_at": at.isoformat(),
    }
    for out in d.outputs:
        p.create(
            Creation.of(
                ev,
                out.lot,
                "carcass",
                product=(out.product_code, out.product_name),
                kg=_kg(out.weight_kg) or Decimal(0),
                documents=docs,
                category="pork",
                slaughtered_at=at,
            )
        )
        p.edge(EdgeRow(d.lot, out.lot, eid, _kg(out.weight_kg), None, "transform"))
    p.fact(
        FactRow(
            d.lot,
            eid,
            "slaughtered",
            None,
            at,
            {
                "head": d.head_count + d.condemned_head,
                "slaughtered": d.head_count,
                "condemned": d.condemned_head,
                "quality_cert_number": d.quality_cert_number,
                "product_quarantine_cert_number": d.product_quarantine_cert_number,
                "carcass_kg": float(sum(o.weight_kg for o in d.outputs)),
            },
        )
    )


def produce_harvested(p: Plan, ev: ProduceHarvestedEvent) -> None:
    d = ev.data
    p.create(
        Creation.of(
            ev,
            d.lot,
            "produce",
            product=(d.product_code, d.product_name),
            kg=_kg(d.weight_kg) or Decimal(0),
            origin_region=d.origin_region,
            documents={
                "compliance_cert_number": d.compliance_cert_number,
                "base_code": d.base_code,
                "harvested_at": d.harvested_at.isoformat(),
            },
            category="produce",
        )
    )


def trade_shipped(p: Plan, ev: TradeShippedEvent) -> None:
    d, eid, op = ev.data, ev.event_id, ev.operator
    key = voucher_key(op, d.voucher_number)
    p.shipments.append(ShipmentRow(eid, op, d.voucher_number, d.buyer, d.destination, ev.occurred_at))
    merged: dict[str, tuple[Decimal, Decimal | None]] = {}
    for line in d.lines:  # a lot twice on one voucher is one line of the summed weight
        kg, price = merged.get(line.lot, (Decimal(0), None))
        merged[line.lot] = (kg + (_kg(line.weight_kg) or Decimal(0)), price or _kg(line.unit_price))
    for lot, (kg, price) in merged.items():
        p.codes.add(lot)
        p.shipment_lines.append(ShipmentLineRow(eid, lot, key, kg, price))


def trade_received(p: Plan, ev: TradeReceivedEvent) -> None:
    d, eid = ev.data, ev.event_id
    key = voucher_key(d.seller, d.voucher_number)
    docs = {k: v for k, v in d.documents.model_dump().items() if v is not None}
    docs |= {"voucher_number": d.voucher_number, "seller": d.seller}
    pairs: dict[tuple[str, str], Decimal] = {}
    products: dict[str, str | None] = {}
    for line in d.lines:
        pair = (line.from_lot, line.lot)
        pairs[pair] = pairs.get(pair, Decimal(0)) + (_kg(line.weight_kg) or Decimal(0))
        products[line.lot] = products.get(line.lot) or line.product_code
    for lot, product_code in products.items():
        # kg_in of a received lot is the sum of what its receipts brought in (see recompute).
        p.create(Creation.of(ev, lot, "received", product=(product_code, None), documents=docs))
    for (parent, child), kg in pairs.items():
        p.edge(EdgeRow(parent, child, eid, kg, None, "trade", key))


def lot_tested(p: Plan, ev: LotTestedEvent) -> None:
    d = ev.data
    data = {"test": d.test, "method": d.method, "value": d.value}
    p.fact(FactRow(d.lot, ev.event_id, "test", d.result, ev.occurred_at, data))


def retail_sold(p: Plan, ev: RetailSoldEvent) -> None:
    d, eid, at = ev.data, ev.event_id, ev.occurred_at
    kg = _kg(d.weight_kg) or Decimal(0)
    price = _kg(d.unit_price) or Decimal(0)
    p.create(
        Creation.of(
            ev,
            d.sale_code,
            "sale",
            kg=kg,
            documents={"stall": d.stall, "unit_price": float(price), "sold_at": at.isoformat()},
        )
    )
    p.edge(EdgeRow(d.lot, d.sale_code, eid, kg, None, "sale"))
    p.sales.append(SaleRow(d.sale_code, d.lot, ev.operator, d.stall, kg, price, at, eid))


def lot_disposed(p: Plan, ev: LotDisposedEvent) -> None:
    d = ev.data
    data = {"weight_kg": d.weight_kg, "head": d.head, "reason": d.reason, "notice_number": d.notice_number}
    p.fact(FactRow(d.lot, ev.event_id, "disposed", None, ev.occurred_at, data))


def regulator_lot_held(p: Plan, ev: RegulatorLotHeldEvent) -> None:
    _regulator_action(p, ev, "hold")


def regulator_lot_released(p: Plan, ev: RegulatorLotReleasedEvent) -> None:
    _regulator_action(p, ev, "release")


def _regulator_action(p: Plan, ev: RegulatorLotHeldEvent | RegulatorLotReleasedEvent, fact: str) -> None:
    d = ev.data
    p.fact(
        FactRow(
            d.lot, ev.event_id, fact, None, ev.occurred_at, {"reason": d.reason, "scope": d.scope, "by": ev.operator}
        )
    )


# -- cold chain (issue 14) --


def import_customs_cleared(p: Plan, ev: ImportCustomsClearedEvent) -> None:
    d = ev.data
    p.create(
        Creation.of(  # no origin_region (a GB/T 2260 region): an import's origin is origin_country
            ev,
            d.lot,
            "imported",
            product=(d.product_code, d.product_name),
            kg=_kg(d.weight_kg) or Decimal(0),
            documents=import_documents(d),
        )
    )


def import_documents_supplied(p: Plan, ev: ImportDocumentsSuppliedEvent) -> None:
    d = ev.data
    docs = {k: v for k in IMPORT_CERTIFICATES if (v := getattr(d, k)) is not None}
    p.fact(FactRow(d.lot, ev.event_id, "import_docs", None, ev.occurred_at, docs))


def coldstore_stored_in(p: Plan, ev: ColdstoreStoredInEvent) -> None:
    _cold_move(p, ev, "cold_in")


def coldstore_released(p: Plan, ev: ColdstoreReleasedEvent) -> None:
    _cold_move(p, ev, "cold_out")


def _cold_move(p: Plan, ev: ColdstoreStoredInEvent | ColdstoreReleasedEvent, fact: str) -> None:
    d = ev.data
    p.fact(FactRow(d.lot, ev.event_id, fact, None, ev.occurred_at, {"store": d.store, "weight_kg": d.weight_kg}))


def lot_temperature_recorded(p: Plan, ev: LotTemperatureRecordedEvent) -> None:
    d = ev.data
    # One reading per instant of an event: a time given twice keeps its first value.
    seen: set[datetime] = set()
    for reading in d.readings:
        if reading.at not in seen:
            seen.add(reading.at)
            p.temperature(TemperatureRow(d.lot, ev.event_id, reading.at, Decimal(str(reading.celsius))))


def epcis_event(p: Plan, ev: EpcisEventEvent) -> None:
    _plan_epcis(p, epcis_effects(ev.data), ev)


# The graph effect of each event type: the graph column of trace_service/effects.HOMES (which checks that the
# two agree). Each function takes its own event class; the table is keyed by the event's event_type.
GRAPH: dict[str, Callable[[Plan, Any], None]] = {
    T.FARM_PIGS_DISPATCHED: farm_pigs_dispatched,
    T.SLAUGHTER_PIGS_RECEIVED: slaughter_pigs_received,
    T.SLAUGHTER_ASF_TESTED: slaughter_asf_tested,
    T.SLAUGHTER_BATCH_SLAUGHTERED: slaughter_batch_slaughtered,
    T.PRODUCE_HARVESTED: produce_harvested,
    T.TRADE_SHIPPED: trade_shipped,
    T.TRADE_RECEIVED: trade_received,
    T.LOT_TESTED: lot_tested,
    T.RETAIL_SOLD: retail_sold,
    T.LOT_DISPOSED: lot_disposed,
    T.REGULATOR_LOT_HELD: regulator_lot_held,
    T.REGULATOR_LOT_RELEASED: regulator_lot_released,
    T.IMPORT_CUSTOMS_CLEARED: import_customs_cleared,
    T.IMPORT_DOCUMENTS_SUPPLIED: import_documents_supplied,
    T.COLDSTORE_STORED_IN: coldstore_stored_in,
    T.COLDSTORE_RELEASED: coldstore_released,
    T.LOT_TEMPERATURE_RECORDED: lot_temperature_recorded,
    T.EPCIS_EVENT: epcis_event,
}


def plan(events: Sequence[Event]) -> Plan:
    """The rows the graph gains from these events: each event's graph effect, in batch order."""
    p = Plan()
    for ev in events:
        GRAPH[ev.event_type](p, ev)
    return p


# The import certificates a customs entry may carry and import.documents_supplied may add (import_docs_missing).
IMPORT_CERTIFICATES = ("inspection_cert_number", "disinfection_cert_number")


def import_documents(d: ImportCustomsCleared) -> dict[str, Any]:
    """The documents of an imported lot, as its customs entry states them (absent certificates left out)."""
    docs = {
        "origin_country": d.origin_country,
        "entry_port": d.entry_port,
        "storage": d.storage,
        "customs_declaration_number": d.customs_declaration_number,
    }
    docs |= {k: v for k in IMPORT_CERTIFICATES if (v := getattr(d, k)) is not None}
    return docs


# -- GS1 EPCIS 2.0: a captured event's graph effects (docs/epcis.md, "EPCIS to the graph") --------------------


def _plan_epcis(p: Plan, fx: Effects, ev: EpcisEventEvent) -> None:
    eid, at = ev.event_id, ev.occurred_at
    imports = {i.lot: i for i in fx.imports}
    for c in fx.creates:
        found = imports.get(c.code)
        docs: dict[str, Any] = {"epc": c.identifier}
        if found is not None:
            docs |= {
                k: v
                for k, v in (
                    ("origin_country", found.origin_country),
                    ("entry_port", found.entry_port),
                    ("storage", found.storage),
                )
                if v is not None
            }
            docs |= found.documents
        p.create(
            Creation.of(
                ev,
                c.code,
                c.kind,
                kg=_kg(c.kg) or Decimal(0),
                head=c.head or 0,
                documents=docs,
                category="pork" if c.kind == "carcass" else None,
                slaughtered_at=at if c.kind == "carcass" else None,
            )
        )
    created = {c.code for c in fx.creates}
    for i in fx.imports:  # documents supplied for a lot created elsewhere
        certificates = {k: v for k, v in i.documents.items() if k in IMPORT_CERTIFICATES}
        if i.lot not in created and certificates:
            p.fact(FactRow(i.lot, eid, "import_docs", None, at, certificates))
    for e in fx.edges:
        p.edge(EdgeRow(e.parent, e.child, eid, _kg(e.kg), None, e.kind))
    for f in fx.facts:
        p.fact(FactRow(f.lot, eid, f.fact, f.result, at, dict(f.data)))
    for handed in fx.custody:
        p.fact(FactRow(handed.lot, eid, "custody", None, at, {"holder": handed.holder}))
    for t in fx.temperatures:
        p.temperature(TemperatureRow(t.lot, eid, t.at, Decimal(str(round(t.celsius, 2)))))
