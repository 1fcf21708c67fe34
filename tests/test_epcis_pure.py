"""The EPCIS 2.0 pure package: the standard's schema, the CBV event hash against the reference implementation,
the identifiers, and the mapping between EPCIS and the city's events (docs/epcis.md).

The documents below were written for this project from the EPCIS 2.0 and CBV 2.0 standards: every event type,
ILMD, sensor data, an error declaration, business transactions, sources and destinations, URN and Digital Link
identifiers, and JSON-LD with a context of its own and extension fields.
"""

from __future__ import annotations

import copy
import json
import uuid
import warnings
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from epcis_event_hash_generator import hash_generator, json_to_py
from pydantic import ValidationError
from pyld.jsonld import JsonLdError  # type: ignore[import-untyped]

from trace_service.chain import projection
from trace_service.contract.epcis import hashing, mapping, schema, uris
from trace_service.contract.events import build_catalogue

STD = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
EX = {"ex": "https://ns.example.com/epcis/"}
ZS = {"zs-trace": "https://trace.zs.example/epcis/"}
OP_IMPORTER = "urn:zs-trace:operator:IMP0001"
OP_STORE = "urn:zs-trace:operator:COLD0001"
OP_MARKET = "urn:zs-trace:operator:MKT0001"


def document(events, context=None):
    return {
        "@context": context if context is not None else [STD],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T08:00:00+08:00",
        "epcisBody": {"eventList": events},
    }


OBJECT_EVENTS = [
    {  # an importer commissions a frozen lot of beef: LGTIN with kg, ILMD with origin
        "type": "ObjectEvent",
        "eventTime": "2026-11-24T22:10:00.250+08:00",
        "eventTimeZoneOffset": "+08:00",
        "eventID": "urn:uuid:6a1d9a7e-7b44-4d6e-8c1f-2f6d3c0b9a01",
        "epcList": [],
        "quantityList": [{"epcClass": "urn:epc:class:lgtin:9520123.045678.AU2611", "quantity": 1250.50, "uom": "KGM"}],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:9520123.00001.0"},
        "bizLocation": {"id": OP_IMPORTER},
        "ilmd": {
            "cbvmda:countryOfOrigin": "AU",
            "cbvmda:lotNumber": "AU2611",
            "zs-trace:storage": "frozen",
            "zs-trace:entryPort": "CNNSA",
        },
        "zs-trace:product": "BEEF-FROZEN",
    },
    {  # shipped to the cold store, with the voucher and the parties
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T01:00:00Z",
        "eventTimeZoneOffset": "+08:00",
        "recordTime": "2026-11-25T01:00:05Z",
        "epcList": ["https://id.gs1.org/01/09520123456788/21/SER001", "urn:epc:id:sgtin:9520123.045678.7001"],
        "quantityList": [
            {"epcClass": "https://example.com/01/09520123456788/10/AU2611?linkType=all", "quantity": 600, "uom": "KGM"}
        ],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": OP_IMPORTER},
        "bizLocation": {"id": OP_IMPORTER},
        "bizTransactionList": [
            {"type": "desadv", "bizTransaction": "urn:zs-trace:voucher:IMP0001:V-2026-0001"},
            {"type": "po", "bizTransaction": "http://trace.zs.example/po/77"},
        ],
        "sourceList": [
            {"type": "owning_party", "source": OP_IMPORTER},
            {"type": "location", "source": "urn:epc:id:sgln:9520123.00001.0"},
        ],
        "destinationList": [
            {"type": "owning_party", "destination": OP_STORE},
            {"destination": "urn:epc:id:sgln:9520123.00002.7", "type": "location"},
        ],
    },
    {  # temperatures while in the cold store
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T09:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "quantityList": [{"epcClass": "urn:epc:class:lgtin:9520123.045678.AU2611"}],
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "readPoint": {"id": OP_STORE},
        "sensorElementList": [
            {
                "sensorMetadata": {
                    "time": "2026-11-25T09:00:00+08:00",
                    "deviceID": "urn:epc:id:giai:9520123.LOGGER7",
                    "startTime": "2026-11-25T08:00:00+08:00",
                    "endTime": "2026-11-25T09:00:00+08:00",
                },
                "sensorReport": [
                    {"type": "Temperature", "value": -18.0, "uom": "CEL", "time": "2026-11-25T08:00:00+08:00"},
                    {"type": "Temperature", "value": -12.4, "uom": "CEL", "time": "2026-11-25T08:30:00+08:00"},
                    {"type": "Temperature", "minValue": -19, "maxValue": -11.75, "meanValue": -15.2, "uom": "CEL"},
                ],
            },
            {
                "sensorReport": [
                    {"type": "RelativeHumidity", "value": 61, "uom": "A93"},
                    {"type": "Temperature", "value": 5, "uom": "FAR"},
                ]
            },
        ],
    },
    {  # destroyed
        "type": "ObjectEvent",
        "eventTime": "2026-11-26T10:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:zs-trace:lot:9520123456788AU2611"],
        "action": "DELETE",
        "bizStep": "destroying",
        "disposition": "destroyed",
        "bizLocation": {"id": OP_STORE},
    },
    {  # an error declaration on an earlier event
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T01:00:00Z",
        "eventTimeZoneOffset": "+08:00",
        "eventID": "urn:uuid:6a1d9a7e-7b44-4d6e-8c1f-2f6d3c0b9a02",
        "epcList": ["urn:epc:id:sgtin:9520123.045678.7002"],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "in_progress",
        "readPoint": {"id": OP_STORE},
        "errorDeclaration": {
            "declarationTime": "2026-11-25T12:00:00+08:00",
            "reason": "incorrect_data",
            "correctiveEventIDs": ["urn:uuid:6a1d9a7e-7b44-4d6e-8c1f-2f6d3c0b9a03"],
        },
    },
    {  # CBV values as URNs and web URIs, persistent disposition, SSCC and SGLN with extension
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T03:04:05.6789+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": ["urn:epc:id:sscc:9520123.0000000042"],
        "action": "OBSERVE",
        "bizStep": "https://ref.gs1.org/cbv/BizStep-storing",
        "disposition": "https://ref.gs1.org/cbv/Disp-sellable_not_accessible",
        "persistentDisposition": {"set": ["completeness_verified"], "unset": ["needs_replacement"]},
        "readPoint": {"id": "urn:epc:id:sgln:9520123.00002.7"},
        "bizLocation": {"id": "https://id.gs1.org/414/9520123000027"},
    },
]

AGGREGATION_EVENTS = [
    {
        "type": "AggregationEvent",
        "eventTime": "2026-11-25T02:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "parentID": "urn:epc:id:sscc:9520123.1000000017",
        "childEPCs": ["urn:epc:id:sgtin:9520123.045678.7001", "urn:epc:id:sgtin:9520123.045678.7002"],
        "childQuantityList": [{"epcClass": "urn:epc:idpat:sgtin:9520123.045678.*", "quantity": 10}],
        "action": "ADD",
        "bizStep": "packing",
        "disposition": "in_progress",
        "readPoint": {"id": OP_IMPORTER},
    },
]

TRANSACTION_EVENTS = [
    {
        "type": "TransactionEvent",
        "eventTime": "2026-11-25T02:30:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "bizTransactionList": [{"type": "inv", "bizTransaction": "urn:zs-trace:invoice:IMP0001:2026-0042"}],
        "parentID": "urn:epc:id:sscc:9520123.1000000017",
        "quantityList": [{"epcClass": "urn:epc:class:lgtin:9520123.045678.AU2611", "quantity": 600, "uom": "KGM"}],
        "action": "ADD",
        "bizStep": "shipping",
        "sourceList": [{"type": "owning_party", "source": OP_IMPORTER}],
        "destinationList": [{"type": "owning_party", "destination": OP_MARKET}],
    },
]

TRANSFORMATION_EVENTS = [
    {  # the market cuts the imported lot into retail lots
        "type": "TransformationEvent",
        "eventTime": "2026-11-26T05:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "inputQuantityList": [{"epcClass": "urn:epc:class:lgtin:9520123.045678.AU2611", "quantity": 100, "uom": "KGM"}],
        "outputQuantityList": [
            {"epcClass": "urn:zs-trace:lot:MKT0001CUT0001", "quantity": 48.5, "uom": "KGM"},
            {"epcClass": "urn:zs-trace:lot:MKT0001CUT0002", "quantity": 49500, "uom": "GRM"},
        ],
        "bizStep": "repackaging",
        "disposition": "active",
        "bizLocation": {"id": OP_MARKET},
        "ilmd": {"cbvmda:lotNumber": "CUT0001", "zs-trace:storage": "chilled"},
    },
    {
        "type": "TransformationEvent",
        "eventTime": "2026-11-26T05:30:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "transformationID": "urn:zs-trace:transformation:MKT0001:T1",
        "inputEPCList": ["urn:epc:id:sgtin:9520123.045678.7001"],
        "outputEPCList": ["urn:epc:id:sgtin:9520123.045679.8001", "urn:epc:id:sgtin:9520123.045679.8002"],
        "bizStep": "killing",
    },
]

ASSOCIATION_EVENTS = [
    {
        "type": "AssociationEvent",
        "eventTime": "2026-11-25T02:10:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "parentID": "urn:epc:id:grai:9520123.00042.LOGGER7",
        "childEPCs": ["urn:epc:id:sscc:9520123.1000000017"],
        "action": "ADD",
        "bizStep": "assembling",
        "readPoint": {"id": OP_IMPORTER},
    },
]

# JSON-LD with a context of its own and extension fields at every extension point.
EXTENDED_EVENTS = [
    {
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T06:00:00-05:00",
        "eventTimeZoneOffset": "-05:00",
        "epcList": ["urn:epc:id:sgtin:9520123.045678.7003"],
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "disposition": "conformant",
        "readPoint": {"id": OP_MARKET, "ex:gate": "north"},
        "bizLocation": {"id": OP_MARKET, "ex:zone": {"ex:hall": "B", "ex:row": 4}},
        "ex:inspector": "lab-7",
        "ex:scores": [3, 1.50, "2"],
        "ex:sample": {"ex:taken": "2026-11-25T05:00:00-05:00", "ex:kg": 0.250},
        "zs-trace:test": {"zs-trace:kind": "ractopamine", "zs-trace:result": "pass", "zs-trace:method": "ELISA"},
        "sensorElementList": [
            {
                "sensorMetadata": {"time": "2026-11-25T06:00:00-05:00", "ex:firmware": "1.2"},
                "sensorReport": [{"type": "Temperature", "value": 2.5, "uom": "CEL", "ex:probe": "core"}],
                "ex:calibrated": True,
            }
        ],
    },
    {
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T07:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "quantityList": [{"epcClass": "urn:zs-trace:lot:MKT0001CUT0001", "quantity": 1.5, "uom": "KGM"}],
        "action": "OBSERVE",
        "bizStep": "retail_selling",
        "disposition": "retail_sold",
        "bizLocation": {"id": OP_MARKET},
        "ex:receipt": "ex:R-0001",
        "ex:note": "  spaced  ",
    },
]


# Valid for the hash, not for the schema (which wants CBV web URIs or bare names, not the old URNs).
URN_VOCABULARY_EVENT = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-25T03:04:05+08:00",
    "eventTimeZoneOffset": "+08:00",
    "epcList": ["urn:epc:id:sgtin:9520123.045678.7009"],
    "action": "OBSERVE",
    "bizStep": "urn:epcglobal:cbv:bizstep:receiving",
    "disposition": "urn:epcglobal:cbv:disp:in_progress",
}

DOCUMENTS: dict[str, dict[str, Any]] = {
    "object": document(OBJECT_EVENTS, [STD, ZS]),
    "aggregation": document(AGGREGATION_EVENTS),
    "transaction": document(TRANSACTION_EVENTS),
    "transformation": document(TRANSFORMATION_EVENTS, [STD, ZS]),
    "association": document(ASSOCIATION_EVENTS),
    "extended": document(EXTENDED_EVENTS, [STD, EX, ZS]),
}
URI = uris.URIs()
LOT_PATTERN = r"^[0-9A-Z]{8,32}$"


def reference_document_hashes(doc: dict[str, Any]) -> list[str]:
    """The reference implementation on a whole document, as its README shows it used."""
    json_to_py._namespaces.clear()  # the reference keeps every document's prefixes in a module global
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its importlib.resources.open_text
        events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(doc))
        hashes: list[str] = hash_generator.epcis_hashes_from_events(events)
    return hashes


def all_events() -> list[tuple[str, int, dict[str, Any], Any]]:
    return [
        (name, i, event, doc["@context"])
        for name, doc in DOCUMENTS.items()
        for i, event in enumerate(doc["epcisBody"]["eventList"])
    ]


# -- schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_test_document_is_valid_against_the_standards_schema(name: str) -> None:
    assert schema.validate_document(DOCUMENTS[name]) == []


def test_the_five_event_types_are_covered() -> None:
    assert {e["type"] for _, _, e, _ in all_events()} == schema.EVENT_TYPES


def test_problems_carry_a_pointer_and_a_message_and_stop_at_fifty() -> None:
    doc = copy.deepcopy(DOCUMENTS["object"])
    doc["epcisBody"]["eventList"][1]["action"] = "MOVE"
    doc["epcisBody"]["eventList"][3]["eventTime"] = "yesterday"
    problems = schema.validate_document(doc)
    pointers = {p.pointer for p in problems}
    assert "/epcisBody/eventList/1/action" in pointers
    assert "/epcisBody/eventList/3/eventTime" in pointers
    assert all(p.message and len(p.message) <= schema.MAX_MESSAGE for p in problems)

    many = document([{**OBJECT_EVENTS[3], "action": "MOVE"}] * 200)
    assert len(schema.validate_document(many)) == schema.MAX_PROBLEMS


def test_a_cbv_urn_is_refused_by_the_schema_and_an_unknown_event_type_too() -> None:
    assert schema.validate_event(URN_VOCABULARY_EVENT, [STD])
    assert [p.pointer for p in schema.validate_event({**OBJECT_EVENTS[3], "type": "ThingEvent"}, [STD])] == ["/type"]
    assert schema.validate_document({"type": "EPCISQueryDocument"})[0].pointer == "/type"


def test_one_event_validates_as_a_standalone_document_with_the_documents_context() -> None:
    for _, _, event, context in all_events():
        assert schema.validate_event(event, context) == []
    bad = {**OBJECT_EVENTS[0], "eventTimeZoneOffset": "+8"}
    assert [p.pointer for p in schema.validate_event(bad, [STD])] == ["/eventTimeZoneOffset"]


def test_a_query_document_validates() -> None:
    query = {
        "@context": [STD],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T08:00:00Z",
        "epcisBody": {
            "queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": OBJECT_EVENTS[:2]}}
        },
    }
    assert schema.validate_query_document(query) == []
    assert schema.validate_query_document({**query, "epcisBody": {"queryResults": 3}})


def test_the_vendored_schema_is_the_standards() -> None:
    assert schema.schema()["$id"] == schema.SCHEMA_ID


# -- the event hash ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "index"), [(n, i) for n, i, _, _ in all_events()])
def test_the_event_hash_equals_the_reference_implementations(name: str, index: int) -> None:
    doc = DOCUMENTS[name]
    event = doc["epcisBody"]["eventList"][index]
    # The reference hashes the keys of a business transaction, source or destination entry in the order the JSON
    # gives them; the service puts each entry's type first (hashing.pairs_in_order), as writers do.
    ordered = {**doc, "epcisBody": {"eventList": [hashing.pairs_in_order(e) for e in doc["epcisBody"]["eventList"]]}}
    expected = reference_document_hashes(ordered)[index]
    assert hashing.event_hash(event, doc["@context"]) == expected
    assert hashing.reference_event_hash(hashing.pairs_in_order(event), doc["@context"]) == expected


def test_the_order_of_keys_does_not_change_the_hash() -> None:
    for _, _, event, context in all_events():
        backwards = orjson.loads(orjson.dumps(_reversed_keys(event)))
        assert hashing.event_hash(backwards, context) == hashing.event_hash(event, context)


def _reversed_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _reversed_keys(node[k]) for k in reversed(list(node))}
    if isinstance(node, list):
        return [_reversed_keys(v) for v in node]
    return node


def test_most_events_take_the_fast_path() -> None:
    fast = slow = 0
    for _, _, event, context in all_events():
        try:
            hashing.fast_event_hash(event, context)
            fast += 1
        except hashing.Unsupported:
            slow += 1
    assert fast >= 12
    assert slow >= 0


def test_the_hash_of_cbv_urns_equals_the_reference() -> None:
    expected = reference_document_hashes(document([URN_VOCABULARY_EVENT]))[0]
    assert hashing.fast_event_hash(URN_VOCABULARY_EVENT, [STD]) == expected


def test_unsupported_constructs_fall_back_to_the_reference() -> None:
    # a sensor report's bizRules: the reference hashes it where its order of fields has no place for it
    rules = {
        **OBJECT_EVENTS[3],
        "sensorElementList": [
            {"sensorReport": [{"type": "Temperature", "value": -18, "uom": "CEL", "bizRules": "https://ex.com/r/1"}]}
        ],
    }
    with pytest.raises(hashing.Unsupported):
        hashing.fast_event_hash(rules, [STD])
    assert hashing.event_hash(rules, [STD]) == reference_document_hashes(document([rules]))[0]
    odd = {**OBJECT_EVENTS[3], "epcList": ["urn:epc:id:cpi:9520123.1A2B.77"]}
    with pytest.raises(hashing.Unsupported):
        hashing.fast_event_hash(odd, [STD])
    assert hashing.event_hash(odd, [STD]) == reference_document_hashes(document([odd]))[0]


def test_the_hash_ignores_event_id_record_time_error_declaration_and_key_order() -> None:
    event = OBJECT_EVENTS[1]
    base = hashing.event_hash(event, [STD, ZS])
    changed = {
        **event,
        "eventID": "urn:uuid:00000000-0000-4000-8000-000000000000",
        "recordTime": "2030-01-01T00:00:00Z",
    }
    changed["errorDeclaration"] = {"declarationTime": "2026-11-26T00:00:00Z", "reason": "did_not_occur"}
    assert hashing.event_hash(changed, [STD, ZS]) == base
    reordered = dict(reversed(list(event.items())))
    assert hashing.event_hash(reordered, [STD, ZS]) == base
    same_time = {**event, "eventTime": "2026-11-25T09:00:00.000+08:00"}  # 01:00Z written another way
    assert hashing.event_hash(same_time, [STD, ZS]) == base
    assert hashing.event_hash({**event, "disposition": "in_progress"}, [STD, ZS]) != base


def test_envelope_ids_are_fixed_uuid5s_and_an_error_declaration_gets_its_own() -> None:
    h = hashing.event_hash(OBJECT_EVENTS[0], [STD, ZS])
    assert h.startswith("ni:///sha-256;")
    assert h.endswith("?ver=CBV2.0")
    first = hashing.envelope_id(h, error_declaration=False)
    assert first == uuid.uuid5(hashing.EPCIS_NAMESPACE, h) == hashing.envelope_id(h, error_declaration=False)
    assert hashing.envelope_id(h, error_declaration=True) == uuid.uuid5(
        hashing.EPCIS_NAMESPACE, h + "#errorDeclaration"
    )


def test_rendered_domestic_events_hash_like_the_reference_on_the_fast_path() -> None:
    for envelope in domestic_envelopes():
        event = mapping.render(envelope, URI)
        expected = reference_document_hashes(document([event], mapping.CONTEXT))[0]
        assert hashing.fast_event_hash(event, mapping.CONTEXT) == expected, envelope["event_type"]


# -- identifiers ----------------------------------------------------------------------------------------------


def test_lot_identifiers_name_city_lots() -> None:
    assert uris.lot_code("urn:zs-trace:lot:SA0100000001", URI, LOT_PATTERN) == "SA0100000001"
    assert uris.lot_code("urn:epc:class:lgtin:9520123.045678.au2611", URI, LOT_PATTERN) == "09520123456788AU2611"
    assert uris.lot_code("https://id.gs1.org/01/09520123456788/10/AU2611", URI, LOT_PATTERN) == "09520123456788AU2611"
    assert uris.lot_code(
        "https://resolver.example.com/x/01/09520123456788/10/AU2611?linkType=all", URI, LOT_PATTERN
    ) == ("09520123456788AU2611")
    assert uris.lot_code("urn:epc:id:sgtin:9520123.045678.7001", URI, LOT_PATTERN) is None
    assert uris.lot_code("urn:epc:id:sscc:9520123.1000000017", URI, LOT_PATTERN) is None
    unnamed = uris.lot_code("urn:epc:class:lgtin:9520123.045678.AU-26", URI, LOT_PATTERN)
    assert isinstance(unnamed, uris.UnnamedLot)
    assert unnamed.identifier == "urn:epc:class:lgtin:9520123.045678.AU-26"
    assert "lot cannot be named in the city's codes" in unnamed.reason
    dated = uris.lot_code("https://id.gs1.org/01/09520123456788/10/2019-10-07", URI, LOT_PATTERN)
    assert isinstance(dated, uris.UnnamedLot)
    # what is really invalid stays an error: a city lot URI without a lot code, an LGTIN without 13 digits
    assert isinstance(uris.lot_code("urn:zs-trace:lot:sa-01", URI, LOT_PATTERN), uris.LotError)
    assert isinstance(uris.lot_code("urn:epc:class:lgtin:9520123.0456.AU2611", URI, LOT_PATTERN), uris.LotError)


def test_gtin14_uses_the_gs1_check_digit() -> None:
    assert uris.gtin14("9520123", "045678") == "09520123456788"
    assert uris.gtin14("0614141", "107346") == "10614141073464"
    assert uris.gtin14("95201", "0456") is None


def test_operator_uris() -> None:
    assert uris.operator_code(OP_STORE, URI) == "COLD0001"
    assert uris.operator_code("urn:epc:id:sgln:9520123.00001.0", URI) is None
    assert uris.operator_uri("COLD0001", URI) == OP_STORE
    assert uris.lot_uri("SA01", uris.URIs(lot_prefix="urn:x:lot:")) == "urn:x:lot:SA01"


# -- effects ------------------------------------------------------------------------------------------------


def fx(event: dict[str, Any]) -> mapping.Effects:
    return mapping.effects(event, URI, LOT_PATTERN)


def test_commissioning_an_imported_lot_creates_it_with_its_kg_and_import_data() -> None:
    e = fx(OBJECT_EVENTS[0])
    assert e.creates == [
        mapping.LotCreated(
            "09520123456788AU2611", "imported", 1250.5, None, OBJECT_EVENTS[0]["quantityList"][0]["epcClass"]
        )
    ]
    assert e.imports[0].origin_country == "AU"
    assert e.imports[0].entry_port == "CNNSA"
    assert e.imports[0].storage == "frozen"
    assert e.problems == []


def test_shipping_passes_custody_to_the_destination_operator() -> None:
    e = fx(OBJECT_EVENTS[1])
    assert e.custody == [mapping.Custody("09520123456788AU2611", "COLD0001")]
    assert [f.fact for f in e.facts] == ["shipped"]
    assert e.facts[0].data == {"kg": 600.0, "destination": "COLD0001"}
    assert e.creates == []


def test_temperatures_from_sensor_reports() -> None:
    e = fx(OBJECT_EVENTS[2])
    readings = [(t.at.astimezone(UTC).isoformat(), t.celsius) for t in e.temperatures]
    assert readings == [
        ("2026-11-25T00:00:00+00:00", -18.0),
        ("2026-11-25T00:30:00+00:00", -12.4),
        ("2026-11-25T01:00:00+00:00", -11.75),  # no value: its maxValue, at the metadata's time
        ("2026-11-25T01:00:00+00:00", -15.0),  # 5 °F, at the event time
    ]
    assert {t.sensor for t in e.temperatures[:3]} == {"urn:epc:id:giai:9520123.LOGGER7"}


def test_destroying_disposes_and_an_error_declaration_does_nothing() -> None:
    assert [(f.lot, f.fact) for f in fx(OBJECT_EVENTS[3]).facts] == [("9520123456788AU2611", "disposed")]
    declared = fx({**OBJECT_EVENTS[3], "errorDeclaration": {"declarationTime": "2026-11-27T00:00:00Z"}})
    assert declared.facts == []
    assert declared.creates == []


def test_a_transformation_makes_edges_with_the_outputs_kg_split_over_the_inputs() -> None:
    e = fx(TRANSFORMATION_EVENTS[0])
    assert [(c.code, c.kind, c.kg) for c in e.creates] == [
        ("MKT0001CUT0001", "epcis", 48.5),
        ("MKT0001CUT0002", "epcis", 49.5),
    ]
    assert e.edges == [
        mapping.Edge("09520123456788AU2611", "MKT0001CUT0001", 48.5),
        mapping.Edge("09520123456788AU2611", "MKT0001CUT0002", 49.5),
    ]
    two_inputs = {
        **TRANSFORMATION_EVENTS[0],
        "inputQuantityList": [
            {"epcClass": "urn:zs-trace:lot:AAAA00000001"},
            {"epcClass": "urn:zs-trace:lot:AAAA00000002"},
        ],
    }
    assert {edge.kg for edge in fx(two_inputs).edges} == {24.25, 24.75}


def test_inspecting_retail_selling_and_the_other_types() -> None:
    test = fx(EXTENDED_EVENTS[0])
    assert test.facts == []  # an SGTIN is not a lot of the graph
    lot_test = {**EXTENDED_EVENTS[0], "epcList": ["urn:zs-trace:lot:MKT0001CUT0001"]}
    assert [(f.fact, f.result) for f in fx(lot_test).facts] == [("test", "pass")]
    failed = {**lot_test, "disposition": "non_conformant", "zs-trace:test": {}}
    assert [(f.fact, f.result) for f in fx(failed).facts] == [("test", "fail")]
    assert [f.fact for f in fx(EXTENDED_EVENTS[1]).facts] == ["sold"]
    for event in AGGREGATION_EVENTS + TRANSACTION_EVENTS + ASSOCIATION_EVENTS:
        e = fx(event)
        assert (e.creates, e.edges, e.facts, e.custody) == ([], [], [], [])


def test_a_gs1_lot_that_cannot_be_a_city_code_is_unnamed_not_a_problem() -> None:
    dated = "urn:epc:class:lgtin:9520123.045678.2019-10-07"  # a date lot, as GS1's own examples write it
    event = {**OBJECT_EVENTS[0], "quantityList": [{"epcClass": dated, "quantity": 1, "uom": "KGM"}]}
    e = fx(event)
    assert (e.creates, e.imports, e.lots_named, e.problems) == ([], [], [], [])
    assert e.unnamed == [dated]
    shipped = {**OBJECT_EVENTS[1], "quantityList": [{"epcClass": dated}, {"epcClass": dated, "quantity": 2}]}
    e = fx(shipped)
    assert (e.facts, e.custody, e.unnamed) == ([], [], [dated])
    assert dated in mapping.epcs(shipped)[0]  # still queryable
    for event in (AGGREGATION_EVENTS[0] | {"childQuantityList": [{"epcClass": dated}]},):
        assert fx(event).unnamed == [dated]
        assert fx(event).problems == []


def test_a_lot_identifier_that_is_really_invalid_is_a_problem() -> None:
    for bad in ("urn:zs-trace:lot:sa-01", "urn:epc:class:lgtin:9520123.0456.AU2611"):
        event = {**OBJECT_EVENTS[0], "quantityList": [{"epcClass": bad, "quantity": 1, "uom": "KGM"}]}
        e = fx(event)
        assert e.creates == []
        assert e.unnamed == []
        assert [p.pointer for p in e.problems] == ["/quantityList/0/epcClass"]


def test_an_epcis_envelope_with_an_unnamed_lot_is_valid_and_names_no_lot() -> None:
    from trace_service.contract.events import lot_codes

    event = {
        **OBJECT_EVENTS[0],
        "quantityList": [{"epcClass": "urn:epc:class:lgtin:9520123.045678.2019-10-07", "quantity": 3, "uom": "KGM"}],
    }
    context = [STD, ZS]
    digest = hashing.event_hash(event, context)
    env = {
        "event_id": str(hashing.envelope_id(digest, error_declaration=False)),
        "event_type": "epcis.event",
        "occurred_at": event["eventTime"],
        "operator": "442000700001",
        "data": {"event": event, "context": context},
    }
    model = build_catalogue().event.validate_json(orjson.dumps(env))
    assert lot_codes(model) == []
    broken = copy.deepcopy(env)
    broken["data"]["event"]["quantityList"][0]["epcClass"] = "urn:zs-trace:lot:sa-01"
    broken["event_id"] = str(
        hashing.envelope_id(hashing.event_hash(broken["data"]["event"], context), error_declaration=False)
    )
    with pytest.raises(ValueError, match="lot cannot be named"):
        build_catalogue().event.validate_json(orjson.dumps(broken))


def test_reporting_operator_and_epcs() -> None:
    assert mapping.reporting_operator(OBJECT_EVENTS[0], URI) == "IMP0001"
    assert mapping.reporting_operator(OBJECT_EVENTS[4], URI) == "COLD0001"  # readPoint only
    assert mapping.reporting_operator(AGGREGATION_EVENTS[0] | {"readPoint": {"id": "urn:x"}}, URI) is None
    every, inputs, outputs = mapping.epcs(TRANSFORMATION_EVENTS[1])
    assert inputs == ["urn:epc:id:sgtin:9520123.045678.7001"]
    assert len(outputs) == 2
    assert set(inputs + outputs) == set(every)
    every, _, _ = mapping.epcs(AGGREGATION_EVENTS[0])
    assert every[-1] == "urn:epc:id:sscc:9520123.1000000017"
    assert "urn:epc:idpat:sgtin:9520123.045678.*" in every


# -- render -----------------------------------------------------------------------------------------------


def envelope(
    event_type: str, data: dict[str, Any], operator: str = "SH0000000001", at: str = "2026-11-25T03:40:00+08:00"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": at,
        "operator": operator,
        "data": data,
    }


def domestic_envelopes() -> list[dict[str, Any]]:
    return [
        envelope(
            "farm.pigs_dispatched",
            {
                "lot": "FARMLOT00001",
                "farm_code": "4420000001",
                "quarantine_cert": {
                    "number": "QC-0001",
                    "kind": "B",
                    "issued_at": "2026-11-25T01:00:00+08:00",
                    "head_count": 30,
                },
                "head_count": 30,
                "ear_tags": [],
                "destination": "SH0000000001",
                "vehicle_plate": "粤T12345",
                "origin_region": "442000",
            },
            operator="FARM000001",
        ),
        envelope(
            "slaughter.pigs_received",
            {
                "lot": "BATCH0000001",
                "quarantine_cert_number": "QC-0001",
                "owner": {"name": "张三"},
                "origin_region": "442000",
                "head_count": 30,
                "dead_on_arrival": 0,
                "ear_tags": [],
                "live_weight_kg": 3450.5,
                "vehicle_plate": "粤T12345",
                "from_lot": "FARMLOT00001",
            },
        ),
        envelope(
            "slaughter.asf_tested",
            {"lot": "BATCH0000001", "method": "pcr", "result": "negative", "sampled_at": "2026-11-25T03:00:00+08:00"},
        ),
        envelope(
            "slaughter.batch_slaughtered",
            {
                "lot": "BATCH0000001",
                "head_count": 30,
                "condemned_head": 0,
                "quality_cert_number": "QQ-0001",
                "product_quarantine_cert_number": "PQ-0001",
                "outputs": [
                    {
                        "lot": "CARCASS00001",
                        "product_code": "PORK-CARCASS",
                        "product_name": "白条猪",
                        "weight_kg": 1300.25,
                    },
                    {
                        "lot": "CARCASS00002",
                        "product_code": "PORK-CARCASS",
                        "product_name": "白条猪",
                        "weight_kg": 1290,
                    },
                ],
            },
        ),
        envelope(
            "produce.harvested",
            {
                "lot": "VEG000000001",
                "base_code": "BASE000001",
                "product_code": "VEG-CHOY",
                "product_name": "菜心",
                "weight_kg": 500,
                "compliance_cert_number": "CC-0001",
                "origin_region": "442000",
                "harvested_at": "2026-11-25T01:00:00+08:00",
            },
            operator="BASE000001",
        ),
        envelope(
            "trade.shipped",
            {
                "voucher_number": "V-0001",
                "buyer": "MKT0001",
                "destination": "某某路12号",
                "lines": [{"lot": "CARCASS00001", "weight_kg": 650.5, "unit_price": 21.5}],
            },
        ),
        envelope(
            "trade.received",
            {
                "voucher_number": "V-0001",
                "seller": "SH0000000001",
                "documents": {"quality_cert_number": "QQ-0001"},
                "lines": [{"lot": "MKTLOT000001", "from_lot": "CARCASS00001", "weight_kg": 650.5}],
            },
            operator="MKT0001",
        ),
        envelope(
            "lot.tested",
            {"lot": "MKTLOT000001", "test": "ractopamine", "method": "strip", "value": 0.5, "result": "fail"},
            operator="MKT0001",
        ),
        envelope(
            "retail.sold",
            {
                "sale_code": "SALE00000001",
                "lot": "MKTLOT000001",
                "stall": "A区12号",
                "weight_kg": 1.25,
                "unit_price": 30,
            },
            operator="MKT0001",
        ),
        envelope(
            "lot.disposed",
            {"lot": "MKTLOT000001", "weight_kg": 10, "reason": "failed test", "notice_number": "N-0001"},
            operator="MKT0001",
        ),
        envelope(
            "regulator.lot_held",
            {"lot": "MKTLOT000001", "reason": "ractopamine", "scope": "downstream"},
            operator="REG0001",
        ),
        envelope(
            "regulator.lot_released",
            {"lot": "MKTLOT000001", "reason": "retest passed", "scope": "lot"},
            operator="REG0001",
        ),
        envelope(
            "import.customs_cleared",
            {
                "lot": "IMPLOT000001",
                "product_code": "BEEF-FROZEN",
                "product_name": "冷冻牛肉",
                "weight_kg": 1250.5,
                "storage": "frozen",
                "customs_declaration_number": "CD-2026-1",
                "inspection_cert_number": "IQ-0001",
                "origin_country": "AU",
                "entry_port": "南沙港",
            },
            operator="IMP0001",
            at="2026-11-25T02:00:00+08:00",
        ),
        envelope(
            "import.documents_supplied",
            {"lot": "IMPLOT000001", "disinfection_cert_number": "DS-0001"},
            operator="IMP0001",
        ),
        envelope(
            "coldstore.stored_in", {"lot": "IMPLOT000001", "store": "COLD0001", "weight_kg": 1250.5}, operator="IMP0001"
        ),
        envelope("coldstore.released", {"lot": "IMPLOT000001", "store": "COLD0001"}, operator="IMP0001"),
        envelope(
            "lot.temperature_recorded",
            {
                "lot": "IMPLOT000001",
                "sensor": "冷库3号探头",
                "readings": [
                    {"at": "2026-11-25T04:00:00+08:00", "celsius": -18.5},
                    {"at": "2026-11-25T04:30:00+08:00", "celsius": -14.25},
                ],
            },
            operator="IMP0001",
        ),
    ]


def test_every_domestic_type_renders_to_a_valid_epcis_event() -> None:
    rendered = {e["event_type"]: mapping.render(e, URI) for e in domestic_envelopes()}
    assert len(rendered) == 17
    for event_type, event in rendered.items():
        assert schema.validate_event(event, mapping.CONTEXT) == [], event_type
    assert schema.validate_document(document(list(rendered.values()), mapping.CONTEXT)) == []
    slaughter = rendered["slaughter.batch_slaughtered"]
    assert slaughter["type"] == "TransformationEvent"
    assert slaughter["bizStep"] == "killing"
    assert rendered["retail.sold"]["bizStep"] == "retail_selling"
    assert rendered["trade.shipped"]["destinationList"] == [
        {"type": "owning_party", "destination": "urn:zs-trace:operator:MKT0001"}
    ]


def test_render_keeps_the_event_id_time_and_operator_and_no_personal_data() -> None:
    for env in domestic_envelopes():
        event = mapping.render(env, URI)
        assert event["eventID"] == f"urn:uuid:{env['event_id']}"
        assert event["eventTime"] == env["occurred_at"]
        assert event["eventTimeZoneOffset"] == "+08:00"
        assert event["bizLocation"] == event["readPoint"] == {"id": f"urn:zs-trace:operator:{env['operator']}"}
        text = json.dumps(event, ensure_ascii=False)
        for personal in ("张三", "粤T12345", "某某路12号", "21.5"):
            assert personal not in text
    west = mapping.render(
        envelope(
            "lot.tested",
            {"lot": "L0000001", "test": "other", "method": "m", "result": "pass"},
            at="2026-11-25T03:40:00-05:30",
        ),
        URI,
    )
    assert west["eventTimeZoneOffset"] == "-05:30"


def test_round_trip_agrees_with_the_domestic_projection() -> None:
    """Rendered domestic events, read back by effects(), name the lots and edges the projection makes, for the
    types whose graph effect EPCIS carries (creations, transformations, facts, custody, temperatures)."""
    catalogue = build_catalogue()
    carried = {
        "farm.pigs_dispatched",
        "produce.harvested",
        "slaughter.batch_slaughtered",
        "lot.tested",
        "lot.disposed",
    }
    for env in domestic_envelopes():
        e = fx(mapping.render(env, URI))
        if env["event_type"] == "import.customs_cleared":
            assert [(c.code, c.kind, c.kg) for c in e.creates] == [("IMPLOT000001", "imported", 1250.5)]
            assert e.imports[0].origin_country == "AU"
            assert e.imports[0].entry_port == "南沙港"
            assert set(e.imports[0].documents) == {"customs_declaration_number", "inspection_cert_number"}
        if env["event_type"] == "trade.shipped":
            assert e.custody == [mapping.Custody("CARCASS00001", "MKT0001")]
        if env["event_type"] == "lot.temperature_recorded":
            assert [t.celsius for t in e.temperatures] == [-18.5, -14.25]
        if env["event_type"].startswith("coldstore."):
            assert [(f.fact, f.data["store"]) for f in e.facts] in (
                [("cold_in", "COLD0001")],
                [("cold_out", "COLD0001")],
            )
        if env["event_type"] not in carried:
            continue
        plan = projection.plan([catalogue.event.validate_json(json.dumps(env))])
        assert {(c.code, c.kg or None) for c in e.creates} == {
            (c.code, float(c.kg) if c.kg else None) for c in plan.creations
        }, env["event_type"]
        assert {(x.parent, x.child, x.kg) for x in e.edges} == {
            (x.parent, x.child, float(x.kg) if isinstance(x.kg, Decimal) else None) for x in plan.edges
        }, env["event_type"]
        assert {f.lot for f in e.facts} == {f.lot for f in plan.facts if f.fact in ("test", "disposed")}, env[
            "event_type"
        ]
        assert set(e.lots_named) == plan.codes, env["event_type"]


def test_context_names_the_standard_and_our_namespace() -> None:
    assert mapping.CONTEXT[0] == "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    assert mapping.CONTEXT[1] == {"zs-trace": "https://trace.zs.example/epcis/"}
    assert datetime.now(UTC)  # (keeps the datetime import honest for future tests)


# -- conformance with the standard's published examples (docs/epcis.md, "Conformance") -----------------------
# Every document below was written here; the published examples were only read to learn what they use.

SENSOR_EVENT: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-25T10:00:00.000+08:00",
    "eventTimeZoneOffset": "+08:00",
    "quantityList": [{"epcClass": "urn:epc:class:lgtin:9520123.045678.AU2611"}],
    "action": "OBSERVE",
    "bizStep": "sensor_reporting",
    "readPoint": {"id": OP_STORE},
    "sensorElementList": [
        {
            "sensorMetadata": {"time": "2026-11-25T10:00:00+08:00", "bizRules": "https://trace.zs.example/rules/7"},
            "sensorReport": [{"type": "Temperature", "value": -19.5, "uom": "CEL"}],
        }
    ],
}


def test_the_schema_amendments_accept_what_the_standards_examples_use() -> None:
    doc = document([SENSOR_EVENT])
    doc["id"] = "_:document1"
    doc["implements"] = ["https://trace.zs.example/profiles/cold-chain"]
    event = doc["epcisBody"]["eventList"][0] = copy.deepcopy(SENSOR_EVENT)
    event["sensorElementList"][0]["type"] = "epcis:SensorElement"
    event["sensorElementList"][0]["sensorReport"][0]["bizRules"] = "https://trace.zs.example/rules/8"
    assert schema.validate_document(doc) == []
    assert schema.validate_document({**doc, "implements": "https://trace.zs.example/profiles/cold-chain"}) == []
    assert schema.validate_document({**doc, "id": "https://trace.zs.example/documents/1"}) == []
    for spelling in schema.SENSOR_ELEMENT_TYPES:
        event["sensorElementList"][0]["type"] = spelling
        assert schema.validate_document(doc) == []
    query = {**doc, "type": "EPCISQueryDocument", "epcisBody": {"queryResults": {"resultsBody": {"eventList": []}}}}
    query["epcisBody"]["queryResults"]["queryName"] = "SimpleEventQuery"
    assert schema.validate_query_document(query) == []


def test_the_schema_amendments_keep_everything_else_strict() -> None:
    def problems(change: Any) -> list[str]:
        doc = document([copy.deepcopy(SENSOR_EVENT)])
        change(doc)
        return [p.pointer for p in schema.validate_document(doc)]

    assert problems(lambda d: d.update(id="document 1"))  # neither a URI nor a blank node
    assert problems(lambda d: d.update(id="_:"))
    assert problems(lambda d: d.update(implements="not a uri"))
    assert problems(lambda d: d.update(implements=[]))
    element = ["epcisBody", "eventList", 0, "sensorElementList", 0]

    def at(doc: dict[str, Any]) -> dict[str, Any]:
        node: Any = doc
        for key in element:
            node = node[key]
        return node  # type: ignore[no-any-return]

    assert problems(lambda d: at(d).update(type="SensorReport"))
    assert problems(lambda d: at(d)["sensorReport"][0].update(bizRules="no uri"))
    assert problems(lambda d: at(d)["sensorReport"][0].update(colour="blue"))  # still no other field
    # where the standard's examples do not use them, the amended fields stay refused
    assert problems(lambda d: d["epcisBody"]["eventList"][0].update(implements=["https://x.example/p"]))
    assert problems(lambda d: d["epcisBody"]["eventList"][0].update(id="_:event1"))
    assert problems(lambda d: d["epcisBody"]["eventList"][0].update(epcList=["_:epc1"]))
    assert problems(lambda d: at(d)["sensorMetadata"].update(type="epcis:SensorElement"))


def test_the_vendored_file_is_unchanged_and_the_amendments_apply_to_a_copy() -> None:
    import hashlib
    from importlib import resources

    vendor = resources.files("trace_service.contract.epcis").joinpath("vendor")
    text = vendor.joinpath(schema.SCHEMA_FILE).read_bytes()
    readme = vendor.joinpath("README.md").read_text("utf-8")
    assert hashlib.sha256(text).hexdigest() in readme
    vendored, amended = schema.schema(), schema.amended_schema()
    assert "implements" not in vendored["definitions"]["epcisDocument"]["properties"]
    assert "implements" in amended["definitions"]["epcisDocument"]["properties"]
    assert "type" not in schema.schema()["definitions"]["sensorElement"]["properties"]
    assert len(schema.AMENDMENTS) == 4


TERM_DEFINITION_EVENT: dict[str, Any] = {
    "type": "TransactionEvent",
    "eventTime": "2026-11-25T06:00:00Z",
    "eventTimeZoneOffset": "+08:00",
    "epcList": ["urn:epc:id:sgtin:9520123.045678.7001"],
    "action": "ADD",
    "bizTransactionList": [{"type": "po", "bizTransaction": "http://trace.zs.example/po/78"}],
    "bizStep": "shipping",
    "readPoint": {"id": OP_IMPORTER},
    "ex:container": "urn:epc:id:sscc:9520123.1000000017",
    "ex:axles": 6,
}


def test_a_context_of_term_definition_objects_hashes_on_the_fast_path() -> None:
    # The reference cannot read such a context (it fails on the objects), so there is no oracle for these
    # hashes; each is checked against the reference's hash of the same event under the equivalent plain context.
    plain = [STD, {"ex": "https://ns.example.com/epcis/"}]
    expected = reference_document_hashes(document([TERM_DEFINITION_EVENT], plain))[0]
    with_id = [STD, {"ex": {"@id": "https://ns.example.com/epcis/"}}]
    coerced = [
        STD,
        {"ex": "https://ns.example.com/epcis/", "ex:container": {"@type": "@id"}},
        {"ex:axles": {"@type": "xsd:integer"}},
    ]
    for context in (with_id, coerced):
        with pytest.raises(TypeError):  # it joins the definition object to a string
            hashing.reference_event_hash(TERM_DEFINITION_EVENT, context)
        assert hashing.fast_event_hash(TERM_DEFINITION_EVENT, context) == expected
        assert hashing.event_hash(TERM_DEFINITION_EVENT, context) == expected
    # a term definition that is more than a prefix or a coercion is left to the reference (which fails too)
    for odd in ({"ex": {"@id": "https://ns.example.com/epcis/", "@container": "@set"}}, {"@vocab": "https://x/"}):
        with pytest.raises(hashing.Unsupported):
            hashing.fast_event_hash(TERM_DEFINITION_EVENT, [STD, odd])


def test_a_context_that_redefines_a_standard_prefix_takes_the_documents_iri() -> None:
    event = {**TERM_DEFINITION_EVENT, "cbvmda:netWeight": 24.5, "ilmd": {"cbvmda:lotNumber": "AU2611"}}
    redefined = [STD, {"ex": "https://ns.example.com/epcis/"}, {"cbvmda": "https://ns.example.com/mda/"}]
    with pytest.raises(JsonLdError, match="protected term"):  # the reference's JSON-LD processor refuses it
        hashing.reference_event_hash(event, redefined)
    # No oracle: the same event with the prefix under another name (the name is not in the pre-hash string,
    # the IRI is) is one the reference hashes.
    renamed_event = orjson.loads(orjson.dumps(event).replace(b'"cbvmda:', b'"mda:'))
    renamed = [STD, {"ex": "https://ns.example.com/epcis/"}, {"mda": "https://ns.example.com/mda/"}]
    expected = reference_document_hashes(document([renamed_event], renamed))[0]
    assert hashing.event_hash(event, redefined) == expected
    assert hashing.event_hash(event, [STD, EX]) != expected  # without it, cbvmda: stays as written


IDENTIFIER_EVENT: dict[str, Any] = {
    "type": "ObjectEvent",
    "eventTime": "2026-11-25T07:00:00Z",
    "eventTimeZoneOffset": "+08:00",
    "epcList": [
        "urn:epc:id:grai:9520123.00042.CRATE-7",
        "urn:epc:id:grai:95201234567.8.9",
        "urn:epc:id:giai:9520123.LOGGER.7_B",
        "urn:epc:id:giai:952012345678.1",
        "urn:epc:id:gdti:9520123.00001.1618034",
        "urn:epc:id:gsrn:9520123.0000000042",
        "https://resolver.example.com/8003/09520123000429SPARE",
        "https://id.gs1.org/8004/9520123LOGGER8",
        "https://example.org/253/9520123000012X9",
        "https://example.org/8018/952012300000000421",
    ],
    "action": "OBSERVE",
    "bizStep": "inspecting",
    "readPoint": {"id": OP_STORE},
}


def test_grai_giai_gdti_and_gsrn_hash_on_the_fast_path_like_the_reference() -> None:
    expected = reference_document_hashes(document([IDENTIFIER_EVENT]))[0]
    assert hashing.fast_event_hash(IDENTIFIER_EVENT, [STD]) == expected
    for epc in IDENTIFIER_EVENT["epcList"]:
        one = {**IDENTIFIER_EVENT, "epcList": [epc]}
        assert hashing.fast_event_hash(one, [STD]) == reference_document_hashes(document([one]))[0], epc
    assert (
        hashing._digital_link("urn:epc:id:grai:9520123.00042.CRATE-7")
        == "https://id.gs1.org/8003/09520123000424CRATE-7"
    )
    assert hashing._digital_link("urn:epc:id:giai:9520123.LOGGER.7_B") == "https://id.gs1.org/8004/9520123LOGGER.7_B"
    # forms not covered (escapes, too long) are left to the reference
    for odd in (
        "urn:epc:id:grai:9520123.00042.A%2FB",
        "urn:epc:id:grai:952012345678..9",
        "urn:epc:id:giai:9520123." + "7" * 24,
    ):
        with pytest.raises(hashing.Unsupported):
            hashing._digital_link(odd)
        one = {**IDENTIFIER_EVENT, "epcList": [odd]}
        assert hashing.event_hash(one, [STD]) == reference_document_hashes(document([one]))[0]


def test_a_sensor_report_component_hashes_on_the_fast_path_like_the_reference() -> None:
    event = copy.deepcopy(SENSOR_EVENT)
    event["sensorElementList"][0]["sensorReport"] = [
        {"type": "Length", "component": "x", "value": 1.25, "uom": "MTR"},
        {"type": "Length", "component": "latitude", "value": 22.52, "uom": "DD"},
        {"type": "Speed", "component": "https://ref.gs1.org/cbv/Comp-z", "value": 0, "uom": "MTS"},
    ]
    expected = reference_document_hashes(document([event]))[0]
    assert hashing.fast_event_hash(event, [STD]) == expected
    with pytest.raises(hashing.Unsupported):  # not a component of the CBV
        hashing.fast_event_hash(
            {**event, "sensorElementList": [{"sensorReport": [{"type": "Length", "component": "w"}]}]}, [STD]
        )


@pytest.mark.parametrize(
    "change",
    [
        {"bizStep": "cbv:BizStep-shipping"},
        {"disposition": "cbv:Disp-in_transit"},
        {"bizStep": "cbv:BizStep-shipping", "disposition": "cbv:Disp-in_transit", "x": "in_transit"},
        {"sourceList": [{"type": "cbv:SDT-owning_party", "source": OP_IMPORTER}]},
        {"bizTransactionList": [{"type": "cbv:BTT-desadv", "bizTransaction": "urn:zs-trace:voucher:IMP0001:V-9"}]},
        {"persistentDisposition": {"set": ["cbv:Disp-completeness_verified"], "unset": ["cbv:Disp-active"]}},
        {"sensor": "gs1:Temperature"},
        {"sensor": "gs1:Temperature", "exception": "gs1:ALARM_CONDITION"},
        {"bizStep": "ex:BizStep-shipping", "context": [STD, EX]},
        {"bizStep": "cbv:BizStep-shipping", "context": [STD, {"cbv": "https://ref.gs1.org/cbv/"}]},
    ],
)
def test_compact_uris_in_vocabulary_fields_hash_on_the_fast_path_like_the_reference(change: dict[str, Any]) -> None:
    change = dict(change)
    context = change.pop("context", [STD])
    event = copy.deepcopy(SENSOR_EVENT)
    if "x" in change:  # a bare value elsewhere that the CURIE's expansion replaces
        event["bizTransactionList"] = [{"type": "desadv", "bizTransaction": change.pop("x")}]
    sensor = change.pop("sensor", None)
    exception = change.pop("exception", None)
    report = event["sensorElementList"][0]["sensorReport"][0]
    if sensor:
        report["type"] = sensor
    if exception:
        report["exception"] = exception
    event |= change
    expected = reference_document_hashes(document([event], context))[0]
    assert hashing.fast_event_hash(event, context) == expected


EXAMPLE_ENVELOPE = Path(__file__).resolve().parent.parent / "events" / "examples" / "epcis.event.json"


def test_an_epcis_event_postgres_cannot_store_is_refused_at_validation() -> None:
    """A NUL (or a lone surrogate) in any string of the event would stop the worker's batch in Postgres's jsonb."""
    from trace_service.contract.events import build_catalogue

    catalogue = build_catalogue()
    with open(EXAMPLE_ENVELOPE, encoding="utf-8") as f:
        envelope = json.load(f)
    envelope["data"]["event"]["zs-trace:note"] = "a\u0000b"
    digest = hashing.event_hash(envelope["data"]["event"], envelope["data"]["context"])
    envelope["event_id"] = str(hashing.envelope_id(digest, error_declaration=False))
    with pytest.raises(ValidationError) as caught:
        catalogue.event.validate_json(json.dumps(envelope))
    assert "NUL" in str(caught.value)


def test_a_time_with_no_utc_equivalent_is_unhashable_not_a_crash() -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "0001-01-01T00:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [],
        "action": "OBSERVE",
    }
    with pytest.raises(hashing.Unhashable):
        hashing.event_hash(event, [STD])
