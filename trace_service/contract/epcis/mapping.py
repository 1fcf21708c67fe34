"""Between EPCIS events and the city's trace graph (docs/epcis.md, "Mapping"). Pure: no I/O.

* :func:`effects`: what a captured EPCIS event does to the graph (lots created, transformation edges, facts,
  custody, temperatures, import data), as neutral dataclasses the chain code turns into rows.
* :func:`render`: a domestic envelope (its JSON) as an EPCIS 2.0 event, for ``GET /epcis/events``.
* :func:`epcs`, :func:`reporting_operator`: what the query index and capture need to know of an event.
* :func:`index`: the query index of a typed domestic event, straight from its fields (what :func:`render` and
  :func:`epcs` would give, without rendering it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from trace_service.contract.epcis.schema import STANDARD_CONTEXT_URL, Problem
from trace_service.contract.epcis.uris import (
    LotError,
    UnnamedLot,
    URIs,
    lot_code,
    lot_uri,
    operator_code,
    operator_uri,
)

if TYPE_CHECKING:  # contract.events imports this module: its models are only named here
    from trace_service.contract import events as ev

NAMESPACE = "https://trace.zs.example/epcis/"
PREFIX = "zs-trace"
CONTEXT: list[Any] = [STANDARD_CONTEXT_URL, {PREFIX: NAMESPACE}]

# Business transaction types of our own (docs/epcis.md, "Extensions").
BTT_CUSTOMS = "urn:zs-trace:btt:customs_declaration"
BTT_INSPECTION = "urn:zs-trace:btt:inspection_certificate"
BTT_DISINFECTION = "urn:zs-trace:btt:disinfection_certificate"
BTT_QUARANTINE = "urn:zs-trace:btt:quarantine_certificate"
BTT_QUALITY = "urn:zs-trace:btt:quality_certificate"
BTT_COMPLIANCE = "urn:zs-trace:btt:compliance_certificate"
BIZSTEP_RELEASING = NAMESPACE + "BizStep-releasing"
_IMPORT_DOCUMENTS = {
    BTT_CUSTOMS: "customs_declaration_number",
    PREFIX + ":customsDeclaration": "customs_declaration_number",
    NAMESPACE + "customsDeclaration": "customs_declaration_number",
    BTT_INSPECTION: "inspection_cert_number",
    PREFIX + ":inspectionCertificate": "inspection_cert_number",
    NAMESPACE + "inspectionCertificate": "inspection_cert_number",
    BTT_DISINFECTION: "disinfection_cert_number",
    PREFIX + ":disinfectionCertificate": "disinfection_cert_number",
    NAMESPACE + "disinfectionCertificate": "disinfection_cert_number",
}
_KG_PER = {"KGM": 1.0, "GRM": 0.001, "LBR": 0.45359237}
_TEMPERATURE_TYPES = frozenset({"Temperature", "gs1:Temperature", "https://gs1.org/voc/Temperature"})


# -- effects ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LotCreated:
    code: str
    kind: str  # imported | carcass | epcis
    kg: float | None
    head: int | None
    identifier: str  # the EPC or class as the event named it


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    kg: float | None
    kind: str = "transform"


@dataclass(frozen=True)
class Fact:
    lot: str
    fact: str  # shipped | received | cold_in | cold_out | test | disposed | sold
    result: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Custody:
    lot: str
    holder: str  # the operator code the lot passes to


@dataclass(frozen=True)
class Temperature:
    lot: str
    at: datetime
    celsius: float
    sensor: str | None


@dataclass(frozen=True)
class ImportData:
    lot: str
    origin_country: str | None
    entry_port: str | None
    storage: str | None
    documents: dict[str, str]


@dataclass
class Effects:
    creates: list[LotCreated] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    custody: list[Custody] = field(default_factory=list)
    temperatures: list[Temperature] = field(default_factory=list)
    imports: list[ImportData] = field(default_factory=list)
    lots_named: list[str] = field(default_factory=list)
    # GS1 lots (LGTIN, Digital Link) with no city lot code, as the event names them: stored and queryable, not
    # lots of the graph, and no problem (docs/epcis.md, "Identifiers")
    unnamed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def _short(value: Any, vocabulary: str) -> str | None:
    """A CBV value as its bare name, whichever of the three spellings the event used."""
    if not isinstance(value, str):
        return None
    for prefix in (
        f"https://ref.gs1.org/cbv/{vocabulary}-",
        f"urn:epcglobal:cbv:{vocabulary.lower()}:",
        "cbv:" + vocabulary + "-",
    ):
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _ext(obj: dict[str, Any], name: str) -> Any:
    return obj.get(f"{PREFIX}:{name}", obj.get(NAMESPACE + name))


def _kg(quantity: Any, uom: Any) -> float | None:
    if not isinstance(quantity, int | float) or isinstance(quantity, bool):
        return None
    factor = _KG_PER.get(uom) if isinstance(uom, str) else None
    return round(float(quantity) * factor, 3) if factor is not None else None


class _Lots:
    def __init__(self, uris: URIs, lot_pattern: str, out: Effects) -> None:
        self.uris, self.pattern, self.out = uris, lot_pattern, out

    def name(self, identifier: Any, where: str) -> str | None:
        if not isinstance(identifier, str):
            return None
        code = lot_code(identifier, self.uris, self.pattern)
        if isinstance(code, LotError):
            self.out.problems.append(Problem(where, code.message))
            return None
        if isinstance(code, UnnamedLot):
            if identifier not in self.out.unnamed:
                self.out.unnamed.append(identifier)
            return None
        if code is not None and code not in self.out.lots_named:
            self.out.lots_named.append(code)
        return code

    def of(self, event: dict[str, Any], epc_key: str, qty_key: str) -> list[tuple[str, str, float | None, int | None]]:
        """(code, identifier, kg, head) of every lot in an EPC list and a quantity list."""
        found: list[tuple[str, str, float | None, int | None]] = []
        heads: dict[str, int] = {}
        for i, epc in enumerate(event.get(epc_key) or []):
            code = self.name(epc, f"/{epc_key}/{i}")
            if code is not None:
                heads[code] = heads.get(code, 0) + 1
                if heads[code] == 1:
                    found.append((code, epc, None, None))
        found = [(c, e, None, heads[c]) for c, e, _, _ in found]
        for i, item in enumerate(event.get(qty_key) or []):
            if not isinstance(item, dict):
                continue
            code = self.name(item.get("epcClass"), f"/{qty_key}/{i}/epcClass")
            if code is None:
                continue
            quantity, uom = item.get("quantity"), item.get("uom")
            head = (
                int(quantity)
                if uom is None and isinstance(quantity, int | float) and float(quantity).is_integer()
                else None
            )
            found.append((code, item["epcClass"], _kg(quantity, uom), head))
        return found


def effects(event: dict[str, Any], uris: URIs, lot_pattern: str) -> Effects:
    """What a captured EPCIS event does to the trace graph (docs/epcis.md, "EPCIS to the graph")."""
    out = Effects()
    lots = _Lots(uris, lot_pattern, out)
    kind = event.get("type")
    if kind == "TransformationEvent":
        inputs = lots.of(event, "inputEPCList", "inputQuantityList")
        outputs = lots.of(event, "outputEPCList", "outputQuantityList")
    elif kind == "ObjectEvent":
        inputs = outputs = lots.of(event, "epcList", "quantityList")
    else:
        # Aggregation, association and transaction events are stored and queryable; the graph has no place
        # for them. Their lots are still named (and checked), so that a bad lot is refused the same way.
        for key, qkey in (("epcList", "quantityList"), ("childEPCs", "childQuantityList")):
            lots.of(event, key, qkey)
        if isinstance(event.get("parentID"), str):
            lots.name(event["parentID"], "/parentID")
        return out
    if "errorDeclaration" in event:
        return out  # stored, shown on the original's eventID; what the original did stays done

    biz_step = _short(event.get("bizStep"), "BizStep")
    disposition = _short(event.get("disposition"), "Disp")
    action = event.get("action")
    ilmd: dict[str, Any] = event["ilmd"] if isinstance(event.get("ilmd"), dict) else {}
    transactions = [t for t in event.get("bizTransactionList") or [] if isinstance(t, dict)]
    documents: dict[str, str] = {}
    for t in transactions:
        name = _IMPORT_DOCUMENTS.get(t.get("type", ""))
        if name and isinstance(t.get("bizTransaction"), str):
            documents[name] = t["bizTransaction"].rsplit(":", 1)[-1]
    origin = ilmd.get("cbvmda:countryOfOrigin", ilmd.get("cbvmda:countryOfExport"))
    customs = "customs_declaration_number" in documents

    created: list[tuple[str, str, float | None, int | None]] = []
    if kind == "TransformationEvent" or action == "ADD":
        created = outputs
    for code, identifier, kg, head in created:
        if biz_step == "killing":
            lot_kind = "carcass"
        elif (isinstance(origin, str) and origin.upper() != "CN") or (
            biz_step in ("accepting", "receiving") and customs
        ):
            lot_kind = "imported"
        else:
            lot_kind = "epcis"
        out.creates.append(LotCreated(code, lot_kind, kg, head, identifier))
        if lot_kind == "imported" or documents:
            out.imports.append(
                ImportData(
                    code,
                    origin.upper() if isinstance(origin, str) else None,
                    _text(_ext(ilmd, "entryPort")) or _text(_ext(event, "entryPort")),
                    _text(_ext(ilmd, "storage")),
                    documents,
                )
            )
    if kind == "TransformationEvent" and inputs:
        for child, _, kg, _ in outputs:
            share = round(kg / len(inputs), 3) if kg is not None else None
            out.edges.extend(Edge(parent, child, share) for parent, _, _, _ in inputs)
    if action != "ADD" and documents and kind == "ObjectEvent":
        for code, *_ in outputs:
            out.imports.append(ImportData(code, None, None, None, documents))

    named = outputs if kind == "ObjectEvent" else outputs + inputs
    destination = _city_party(event.get("destinationList"), "destination", uris)
    for code, _, kg, _head in named:
        data: dict[str, Any] = {"kg": kg}
        if biz_step in ("shipping", "departing") and destination is not None:
            out.facts.append(Fact(code, "shipped", None, {**data, "destination": destination}))
            out.custody.append(Custody(code, destination))
        elif biz_step in ("receiving", "arriving") and action != "ADD":
            out.facts.append(Fact(code, "received", None, data))
        store = _cold_store(event, uris)
        if biz_step == "storing" and store is not None:
            out.facts.append(Fact(code, "cold_in", None, {**data, "store": store}))
        elif biz_step == "departing" and store is not None:
            out.facts.append(Fact(code, "cold_out", None, {**data, "store": store}))
        if biz_step == "inspecting":
            result = _test_result(event, disposition)
            if result is not None:
                out.facts.append(Fact(code, "test", result, _test_data(event)))
        if action == "DELETE" and biz_step in ("destroying", "decommissioning"):
            out.facts.append(Fact(code, "disposed", None, data))
        if biz_step == "retail_selling":
            out.facts.append(Fact(code, "sold", None, data))
    out.temperatures.extend(_temperatures(event, [code for code, *_ in named]))
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _city_party(parties: Any, key: str, uris: URIs) -> str | None:
    """The city operator a source or destination list names: its owning party, else its location."""
    by_type: dict[str, str] = {}
    for party in parties or []:
        if isinstance(party, dict) and isinstance(party.get(key), str):
            code = operator_code(party[key], uris)
            kind = _short(party.get("type"), "SDT")
            if code is not None and kind is not None:
                by_type.setdefault(kind, code)
    return by_type.get("owning_party") or by_type.get("location")


def _cold_store(event: dict[str, Any], uris: URIs) -> str | None:
    store = _ext(event, "coldStore")
    if isinstance(store, str):
        return operator_code(store, uris) or store
    location = event.get("bizLocation")
    if isinstance(location, dict) and isinstance(location.get("id"), str):
        return operator_code(location["id"], uris)
    return None


def _test_result(event: dict[str, Any], disposition: str | None) -> str | None:
    test = _ext(event, "test")
    if isinstance(test, dict):
        result = _ext(test, "result")
        if result in ("pass", "fail"):
            return str(result)
    result = _ext(event, "result")
    if result in ("pass", "fail"):
        return str(result)
    return {"conformant": "pass", "non_conformant": "fail"}.get(disposition or "")


def _test_data(event: dict[str, Any]) -> dict[str, Any]:
    test = _ext(event, "test")
    if not isinstance(test, dict):
        return {}
    return {k: _ext(test, k) for k in ("kind", "method", "value") if _ext(test, k) is not None}


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _temperatures(event: dict[str, Any], lots: list[str]) -> list[Temperature]:
    found: list[Temperature] = []
    event_time = _time(event.get("eventTime"))
    for element in event.get("sensorElementList") or []:
        if not isinstance(element, dict):
            continue
        metadata: dict[str, Any] = element["sensorMetadata"] if isinstance(element.get("sensorMetadata"), dict) else {}
        for report in element.get("sensorReport") or []:
            if not isinstance(report, dict) or report.get("type") not in _TEMPERATURE_TYPES:
                continue
            value = report.get("value", report.get("maxValue"))
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            uom = report.get("uom", "CEL")
            if uom == "FAR":
                celsius = (float(value) - 32) * 5 / 9
            elif uom == "CEL":
                celsius = float(value)
            else:
                continue
            at = _time(report.get("time")) or _time(metadata.get("time")) or event_time
            if at is None:
                continue
            sensor = report.get("deviceID") or metadata.get("deviceID") or _ext(metadata, "sensor")
            found.extend(
                Temperature(lot, at, round(celsius, 2), sensor if isinstance(sensor, str) else None) for lot in lots
            )
    return found


def reporting_operator(event: dict[str, Any], uris: URIs) -> str | None:
    """The city operator an event says it was reported at: ``bizLocation``, else ``readPoint`` (None when neither
    names one; capture then takes the key's operator)."""
    for key in ("bizLocation", "readPoint"):
        place = event.get(key)
        if isinstance(place, dict) and isinstance(place.get("id"), str):
            code = operator_code(place["id"], uris)
            if code is not None:
                return code
    return None


def epcs(event: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """(every EPC and EPC class the event names, the inputs, the outputs), for the query index."""

    def ids(key: str) -> list[str]:
        return [v for v in event.get(key) or [] if isinstance(v, str)]

    def classes(key: str) -> list[str]:
        return [
            q["epcClass"] for q in event.get(key) or [] if isinstance(q, dict) and isinstance(q.get("epcClass"), str)
        ]

    inputs = ids("inputEPCList") + classes("inputQuantityList")
    outputs = ids("outputEPCList") + classes("outputQuantityList")
    every = ids("epcList") + ids("childEPCs") + classes("quantityList") + classes("childQuantityList")
    if isinstance(event.get("parentID"), str):
        every.append(event["parentID"])
    every += inputs + outputs
    return list(dict.fromkeys(every)), list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))


# -- render: domestic envelopes as EPCIS ------------------------------------------------------------------


def _offset(occurred_at: str) -> str:
    moment = datetime.fromisoformat(occurred_at)
    delta = moment.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _quantity(code: str, uris: URIs, kg: Any = None, head: Any = None) -> dict[str, Any]:
    item: dict[str, Any] = {"epcClass": lot_uri(code, uris)}
    if kg is not None:
        item |= {"quantity": kg, "uom": "KGM"}
    elif head is not None:
        item["quantity"] = head
    return item


def _z(name: str) -> str:
    return f"{PREFIX}:{name}"


def _doc(kind: str, number: Any) -> dict[str, str]:
    return {"type": kind, "bizTransaction": f"urn:zs-trace:document:{number}"}


def render(envelope: dict[str, Any], uris: URIs) -> dict[str, Any]:
    """A domestic envelope (as JSON) as an EPCIS 2.0 event (docs/epcis.md, "Mapping"). Personal data (owner
    names, vehicle plates, free-text destinations) and prices are not rendered."""
    et: str = envelope["event_type"]
    d: dict[str, Any] = envelope["data"]
    op: str = envelope["operator"]
    here = {"id": operator_uri(op, uris)}
    ev: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": envelope["occurred_at"],
        "eventTimeZoneOffset": _offset(envelope["occurred_at"]),
        "eventID": f"urn:uuid:{envelope['event_id']}",
    }
    body: dict[str, Any]
    if et == "farm.pigs_dispatched":
        body = {
            "quantityList": [_quantity(d["lot"], uris, head=d["head_count"])],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "bizTransactionList": [_doc(BTT_QUARANTINE, d["quarantine_cert"]["number"])],
            "destinationList": [{"type": "owning_party", "destination": operator_uri(d["destination"], uris)}],
            "ilmd": {
                "cbvmda:countryOfOrigin": "CN",
                _z("originRegion"): d["origin_region"],
                _z("farmCode"): d["farm_code"],
                _z("product"): "PIG-LIVE",
                _z("headCount"): d["head_count"],
            },
        }
    elif et == "slaughter.pigs_received":
        body = {
            "quantityList": [_quantity(d["lot"], uris, kg=d["live_weight_kg"])],
            "action": "ADD",
            "bizStep": "receiving",
            "disposition": "in_progress",
            "bizTransactionList": [_doc(BTT_QUARANTINE, d["quarantine_cert_number"])],
            "ilmd": {
                "cbvmda:countryOfOrigin": "CN",
                _z("originRegion"): d["origin_region"],
                _z("headCount"): d["head_count"],
                _z("deadOnArrival"): d["dead_on_arrival"],
                **({_z("fromLot"): lot_uri(d["from_lot"], uris)} if d.get("from_lot") else {}),
            },
        }
    elif et == "slaughter.asf_tested":
        body = {
            "quantityList": [_quantity(d["lot"], uris)],
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "disposition": "conformant" if d["result"] == "negative" else "non_conformant",
            _z("test"): {
                _z("kind"): "asf",
                _z("method"): d["method"],
                _z("result"): d["result"],
                _z("sampledAt"): d["sampled_at"],
            },
        }
    elif et == "slaughter.batch_slaughtered":
        docs = [_doc(BTT_QUARANTINE, d["product_quarantine_cert_number"])]
        if d.get("quality_cert_number"):
            docs.append(_doc(BTT_QUALITY, d["quality_cert_number"]))
        ev["type"] = "TransformationEvent"
        body = {
            "inputQuantityList": [_quantity(d["lot"], uris, head=d["head_count"])],
            "outputQuantityList": [_quantity(o["lot"], uris, kg=o["weight_kg"]) for o in d["outputs"]],
            "bizStep": "killing",
            "disposition": "active",
            "bizTransactionList": docs,
            _z("condemnedHead"): d["condemned_head"],
            _z("products"): [
                {
                    _z("lot"): lot_uri(o["lot"], uris),
                    _z("productCode"): o["product_code"],
                    _z("productName"): o["product_name"],
                }
                for o in d["outputs"]
            ],
        }
    elif et == "produce.harvested":
        body = {
            "quantityList": [_quantity(d["lot"], uris, kg=d["weight_kg"])],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "bizTransactionList": [_doc(BTT_COMPLIANCE, d["compliance_cert_number"])],
            "ilmd": {
                "cbvmda:countryOfOrigin": "CN",
                "cbvmda:harvestStartDate": d["harvested_at"],
                _z("originRegion"): d["origin_region"],
                _z("baseCode"): d["base_code"],
                _z("product"): d["product_code"],
                _z("productName"): d["product_name"],
            },
        }
    elif et == "trade.shipped":
        body = {
            "quantityList": [_quantity(line["lot"], uris, kg=line["weight_kg"]) for line in d["lines"]],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "bizTransactionList": [
                {"type": "desadv", "bizTransaction": f"urn:zs-trace:voucher:{op}:{d['voucher_number']}"}
            ],
            "sourceList": [{"type": "owning_party", "source": operator_uri(op, uris)}],
            "destinationList": [{"type": "owning_party", "destination": operator_uri(d["buyer"], uris)}],
        }
    elif et == "trade.received":
        body = {
            "quantityList": [_quantity(line["lot"], uris, kg=line["weight_kg"]) for line in d["lines"]],
            "action": "OBSERVE",
            "bizStep": "receiving",
            "disposition": "in_progress",
            "bizTransactionList": [
                {"type": "desadv", "bizTransaction": f"urn:zs-trace:voucher:{d['seller']}:{d['voucher_number']}"}
            ],
            "sourceList": [{"type": "owning_party", "source": operator_uri(d["seller"], uris)}],
            "destinationList": [{"type": "owning_party", "destination": operator_uri(op, uris)}],
            _z("lines"): [
                {
                    _z("lot"): lot_uri(line["lot"], uris),
                    _z("fromLot"): lot_uri(line["from_lot"], uris),
                    _z("kg"): line["weight_kg"],
                }
                for line in d["lines"]
            ],
        }
    elif et == "lot.tested":
        test = {_z("kind"): d["test"], _z("method"): d["method"], _z("result"): d["result"]}
        if d.get("value") is not None:
            test[_z("value")] = d["value"]
        body = {
            "quantityList": [_quantity(d["lot"], uris)],
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "disposition": "conformant" if d["result"] == "pass" else "non_conformant",
            _z("test"): test,
        }
    elif et == "retail.sold":
        body = {
            "quantityList": [_quantity(d["lot"], uris, kg=d["weight_kg"])],
            "action": "OBSERVE",
            "bizStep": "retail_selling",
            "disposition": "retail_sold",
            _z("saleCode"): lot_uri(d["sale_code"], uris),
            **({_z("stall"): d["stall"]} if d.get("stall") else {}),
        }
    elif et == "lot.disposed":
        body = {
            "quantityList": [_quantity(d["lot"], uris, kg=d.get("weight_kg"), head=d.get("head"))],
            "action": "DELETE",
            "bizStep": "destroying",
            "disposition": "destroyed",
            _z("reason"): d["reason"],
            **({_z("noticeNumber"): d["notice_number"]} if d.get("notice_number") else {}),
        }
    elif et in ("regulator.lot_held", "regulator.lot_released"):
        held = et == "regulator.lot_held"
        body = {
            "quantityList": [_quantity(d["lot"], uris)],
            "action": "OBSERVE",
            "bizStep": "holding" if held else BIZSTEP_RELEASING,
            "disposition": "non_sellable_other" if held else "sellable_accessible",
            _z("reason"): d["reason"],
            _z("scope"): d["scope"],
        }
    elif et == "import.customs_cleared":
        docs = [_doc(BTT_CUSTOMS, d["customs_declaration_number"])]
        if d.get("inspection_cert_number"):
            docs.append(_doc(BTT_INSPECTION, d["inspection_cert_number"]))
        if d.get("disinfection_cert_number"):
            docs.append(_doc(BTT_DISINFECTION, d["disinfection_cert_number"]))
        body = {
            "quantityList": [_quantity(d["lot"], uris, kg=d["weight_kg"])],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "bizTransactionList": docs,
            "ilmd": {
                "cbvmda:countryOfOrigin": d["origin_country"],
                "cbvmda:lotNumber": d["lot"],
                _z("entryPort"): d["entry_port"],
                _z("storage"): d["storage"],
                _z("product"): d["product_code"],
                _z("productName"): d["product_name"],
            },
        }
    elif et == "import.documents_supplied":
        docs = []
        if d.get("inspection_cert_number"):
            docs.append(_doc(BTT_INSPECTION, d["inspection_cert_number"]))
        if d.get("disinfection_cert_number"):
            docs.append(_doc(BTT_DISINFECTION, d["disinfection_cert_number"]))
        body = {
            "quantityList": [_quantity(d["lot"], uris)],
            "action": "OBSERVE",
            "bizStep": "accepting",
            "bizTransactionList": docs,
        }
    elif et in ("coldstore.stored_in", "coldstore.released"):
        body = {
            "quantityList": [_quantity(d["lot"], uris, kg=d.get("weight_kg"))],
            "action": "OBSERVE",
            "bizStep": "storing" if et == "coldstore.stored_in" else "departing",
            "disposition": "sellable_not_accessible" if et == "coldstore.stored_in" else "in_transit",
            _z("coldStore"): operator_uri(d["store"], uris),
        }
    elif et == "lot.temperature_recorded":
        metadata: dict[str, Any] = {"time": envelope["occurred_at"]}
        if d.get("sensor"):
            metadata[_z("sensor")] = d["sensor"]
        body = {
            "quantityList": [_quantity(d["lot"], uris)],
            "action": "OBSERVE",
            "bizStep": "sensor_reporting",
            "sensorElementList": [
                {
                    "sensorMetadata": metadata,
                    "sensorReport": [
                        {"type": "Temperature", "value": r["celsius"], "uom": "CEL", "time": r["at"]}
                        for r in d["readings"]
                    ],
                }
            ],
        }
    else:
        raise ValueError(f"no EPCIS rendering for event type {et!r}")
    ev |= body
    ev["readPoint"] = here
    ev["bizLocation"] = here
    return ev


# -- index: the query columns of a domestic event, without rendering it ---------------------------------------


@dataclass(frozen=True)
class Index:
    """What ``GET /epcis/events`` filters on of a rendered domestic event: its type, bizStep, disposition and
    action as :func:`render` writes them, and :func:`epcs` of the rendering (every domestic lot is an EPC class
    of a quantity list). readPoint and bizLocation are the operator, eventID ``urn:uuid:`` and the event id."""

    type: str
    biz_step: str
    disposition: str | None
    action: str | None
    epcs: list[str]
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def _observed(
    lots: list[str], uris: URIs, biz_step: str, disposition: str | None, action: str | None = "OBSERVE"
) -> Index:
    return Index("ObjectEvent", biz_step, disposition, action, list(dict.fromkeys(lot_uri(c, uris) for c in lots)))


def _index_dispatched(d: ev.FarmPigsDispatched, uris: URIs) -> Index:
    return _observed([d.lot], uris, "commissioning", "active", "ADD")


def _index_received(d: ev.SlaughterPigsReceived, uris: URIs) -> Index:
    return _observed([d.lot], uris, "receiving", "in_progress", "ADD")


def _index_asf(d: ev.SlaughterAsfTested, uris: URIs) -> Index:
    return _observed([d.lot], uris, "inspecting", "conformant" if d.result == "negative" else "non_conformant")


def _index_slaughtered(d: ev.SlaughterBatchSlaughtered, uris: URIs) -> Index:
    inputs = [lot_uri(d.lot, uris)]
    outputs = list(dict.fromkeys(lot_uri(o.lot, uris) for o in d.outputs))
    every = list(dict.fromkeys(inputs + outputs))
    return Index("TransformationEvent", "killing", "active", None, every, inputs, outputs)


def _index_harvested(d: ev.ProduceHarvested, uris: URIs) -> Index:
    return _observed([d.lot], uris, "commissioning", "active", "ADD")


def _index_shipped(d: ev.TradeShipped, uris: URIs) -> Index:
    return _observed([line.lot for line in d.lines], uris, "shipping", "in_transit")


def _index_trade_received(d: ev.TradeReceived, uris: URIs) -> Index:
    return _observed([line.lot for line in d.lines], uris, "receiving", "in_progress")


def _index_tested(d: ev.LotTested, uris: URIs) -> Index:
    return _observed([d.lot], uris, "inspecting", "conformant" if d.result == "pass" else "non_conformant")


def _index_sold(d: ev.RetailSold, uris: URIs) -> Index:
    return _observed([d.lot], uris, "retail_selling", "retail_sold")


def _index_disposed(d: ev.LotDisposed, uris: URIs) -> Index:
    return _observed([d.lot], uris, "destroying", "destroyed", "DELETE")


def _index_held(d: ev.RegulatorLotAction, uris: URIs) -> Index:
    return _observed([d.lot], uris, "holding", "non_sellable_other")


def _index_released(d: ev.RegulatorLotAction, uris: URIs) -> Index:
    return _observed([d.lot], uris, BIZSTEP_RELEASING, "sellable_accessible")


def _index_cleared(d: ev.ImportCustomsCleared, uris: URIs) -> Index:
    return _observed([d.lot], uris, "commissioning", "active", "ADD")


def _index_documents(d: ev.ImportDocumentsSupplied, uris: URIs) -> Index:
    return _observed([d.lot], uris, "accepting", None)


def _index_stored_in(d: ev.ColdStoreMove, uris: URIs) -> Index:
    return _observed([d.lot], uris, "storing", "sellable_not_accessible")


def _index_released_cold(d: ev.ColdStoreMove, uris: URIs) -> Index:
    return _observed([d.lot], uris, "departing", "in_transit")


def _index_temperature(d: ev.LotTemperatureRecorded, uris: URIs) -> Index:
    return _observed([d.lot], uris, "sensor_reporting", None)


# One function per domestic event type, next to its rendering above (tests/test_epcis_index.py holds them to
# agree with render + epcs).
_INDEX: dict[str, Callable[[Any, URIs], Index]] = {
    "farm.pigs_dispatched": _index_dispatched,
    "slaughter.pigs_received": _index_received,
    "slaughter.asf_tested": _index_asf,
    "slaughter.batch_slaughtered": _index_slaughtered,
    "produce.harvested": _index_harvested,
    "trade.shipped": _index_shipped,
    "trade.received": _index_trade_received,
    "lot.tested": _index_tested,
    "retail.sold": _index_sold,
    "lot.disposed": _index_disposed,
    "regulator.lot_held": _index_held,
    "regulator.lot_released": _index_released,
    "import.customs_cleared": _index_cleared,
    "import.documents_supplied": _index_documents,
    "coldstore.stored_in": _index_stored_in,
    "coldstore.released": _index_released_cold,
    "lot.temperature_recorded": _index_temperature,
}


def index(event: ev.Envelope, uris: URIs) -> Index:
    """The query index of a validated domestic event (what :func:`render` then :func:`epcs` would give)."""
    found = _INDEX.get(event.event_type)
    if found is None:
        raise ValueError(f"no EPCIS rendering for event type {event.event_type!r}")
    return found(event.data, uris)
