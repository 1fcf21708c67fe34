"""EPCIS 2.0 over HTTP: capture, capture jobs and queries, against the real broker, Postgres and worker.

The documents are written here for these tests: every event type, with ILMD, sensor data, an error
declaration, business transactions, and a JSON-LD document with a context and extension fields of its own.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest

from tests.support import Actors, code, post_events, register_operators, scenario_tag, wait_for
from trace_service.chain import scenarios
from trace_service.contract.epcis import hashing, schema

STANDARD_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
JSON = {"Content-Type": "application/json"}
LD = {"Content-Type": "application/ld+json"}


def document(events: list[dict[str, Any]], context: Any = None) -> dict[str, Any]:
    return {
        "@context": context if context is not None else [STANDARD_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T08:00:00.000+08:00",
        "epcisBody": {"eventList": events},
    }


def _sgtin(serial: str) -> str:
    return f"urn:epc:id:sgtin:6901234.012345.{serial}"


def every_type(op: str, tag: str) -> list[dict[str, Any]]:
    """One event of each of the five types, with the optional parts a cold-chain exporter sends."""
    here = {"id": f"urn:zs-trace:operator:{op}"}
    serial = str(int.from_bytes(tag.encode(), "big") % 10**10).zfill(10)
    crate, pallet = _sgtin(f"C{tag}"), f"urn:epc:id:sscc:6901234.{serial}"
    return [
        {
            "type": "ObjectEvent",
            "eventTime": "2026-11-30T06:00:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "epcList": [crate],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "readPoint": here,
            "bizLocation": here,
            "ilmd": {"cbvmda:countryOfOrigin": "NZ", "cbvmda:lotNumber": f"K{tag}"},
        },
        {
            "type": "ObjectEvent",
            "eventTime": "2026-11-30T07:30:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "epcList": [crate],
            "action": "OBSERVE",
            "bizStep": "https://ref.gs1.org/cbv/BizStep-storing",
            "disposition": "in_progress",
            "readPoint": here,
            "sensorElementList": [
                {
                    "sensorMetadata": {"time": "2026-11-30T07:30:00.000+08:00", "deviceID": f"urn:zs-trace:dev:{tag}"},
                    "sensorReport": [
                        {"type": "Temperature", "value": -19.5, "uom": "CEL"},
                        {"type": "Temperature", "value": -18.25, "uom": "CEL", "time": "2026-11-30T07:45:00+08:00"},
                    ],
                }
            ],
        },
        {
            "type": "AggregationEvent",
            "eventTime": "2026-11-30T08:00:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "parentID": pallet,
            "childEPCs": [crate],
            "action": "ADD",
            "bizStep": "packing",
            "readPoint": here,
        },
        {
            "type": "TransactionEvent",
            "eventTime": "2026-11-30T09:00:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "bizTransactionList": [
                {"type": "po", "bizTransaction": f"urn:zs-trace:po:{tag}"},
                {"type": "inv", "bizTransaction": f"urn:zs-trace:inv:{tag}"},
            ],
            "parentID": pallet,
            "epcList": [crate],
            "action": "ADD",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "readPoint": here,
            "sourceList": [{"type": "owning_party", "source": f"urn:zs-trace:operator:{op}"}],
        },
        {
            "type": "TransformationEvent",
            "eventTime": "2026-11-30T10:00:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "inputEPCList": [crate],
            "outputEPCList": [_sgtin(f"D{tag}"), _sgtin(f"E{tag}")],
            "transformationID": f"urn:zs-trace:xform:{tag}",
            "bizStep": "repackaging",
            "readPoint": here,
            "ilmd": {"cbvmda:bestBeforeDate": "2027-05-30"},
        },
        {
            "type": "AssociationEvent",
            "eventTime": "2026-11-30T11:00:00.000+08:00",
            "eventTimeZoneOffset": "+08:00",
            "parentID": f"urn:epc:id:sgln:6901234.{serial[:5]}.{tag}",
            "childEPCs": [_sgtin(f"D{tag}")],
            "action": "ADD",
            "bizStep": "assembling",
            "readPoint": here,
        },
    ]


def ld_document(op: str, tag: str) -> dict[str, Any]:
    """JSON-LD with a vocabulary of its own: extension fields at the top of an event and inside ILMD."""
    context = [STANDARD_CONTEXT, {"cold": "https://cold.example.org/voc/"}]
    return document(
        [
            {
                "type": "ObjectEvent",
                "eventID": f"urn:uuid:{uuid.uuid4()}",
                "eventTime": "2026-11-29T22:00:00.000Z",
                "eventTimeZoneOffset": "+00:00",
                "epcList": [_sgtin(f"L{tag}")],
                "action": "OBSERVE",
                "bizStep": "departing",
                "readPoint": {"id": f"urn:zs-trace:operator:{op}"},
                "cold:vesselName": "MV Southern Reefer",
                "cold:container": {"cold:number": f"MSKU{tag}", "cold:setPointC": -20},
            }
        ],
        context,
    )


async def capture(
    client: httpx.AsyncClient, key: dict[str, str], doc: Any, headers: dict[str, str] = JSON
) -> httpx.Response:
    body = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return await client.post("/epcis/capture", content=body, headers={**key, **headers})


async def finished(client: httpx.AsyncClient, key: dict[str, str], location: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        r = await client.get(location, headers=key)
        assert r.status_code == 200, r.text
        return r.json() if not r.json()["running"] else None

    return await wait_for(done, timeout=20)


def _problem(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.headers["GS1-EPCIS-Version"] == "2.0.0"
    body = r.json()
    assert body["type"] == type_, body
    assert body["status"] == status
    assert body["title"]
    assert "Traceback" not in r.text
    return body


def expected_id(event: dict[str, Any], context: Any) -> str:
    return event.get("eventID") or hashing.event_hash(event, context)


async def fetch(client: httpx.AsyncClient, key: dict[str, str], event_id: str) -> httpx.Response:
    return await client.get(f"/epcis/events/{quote(event_id, safe='')}", headers=key)


def modulo_added(event: dict[str, Any], sent: dict[str, Any]) -> dict[str, Any]:
    """The event without what the standard lets a repository add."""
    out = {k: v for k, v in event.items() if k not in ("recordTime", "@context")}
    if "eventID" not in sent:
        out.pop("eventID", None)
    return out


async def _rows(db: asyncpg.Connection, epc: str) -> int:
    return await db.fetchval("SELECT count(*) FROM epcis_events WHERE epcs @> ARRAY[$1::text]", epc)


# -- capture and query back ---------------------------------------------------------------------------------


async def test_every_event_type_is_captured_and_queried_back(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = code("", 8)
    docs = [(document(every_type(op, tag)), JSON), (ld_document(op, tag), LD)]
    for doc, headers in docs:
        r = await capture(client, key, doc, headers)
        assert r.status_code == 202, r.text
        assert r.headers["GS1-EPCIS-Version"] == "2.0.0"
        assert r.headers["GS1-CBV-Version"] == "2.0.0"
        location = r.headers["Location"]
        assert location.startswith("/epcis/capture/")
        job = await finished(client, key, location)
        assert job["success"] is True, job["errors"]
        assert job["errors"] == []
        assert job["captureErrorBehaviour"] == "rollback"
        assert job["finishedAt"] >= job["createdAt"]

        for sent in doc["epcisBody"]["eventList"]:
            r = await fetch(client, key, expected_id(sent, doc["@context"]))
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["recordTime"]
            assert modulo_added(got, sent) == sent

    before = await db.fetchval("SELECT count(*) FROM epcis_events WHERE operator = $1", op)
    assert before == 7
    applied = await db.fetchval("SELECT count(*) FROM events WHERE operator = $1", op)
    for doc, headers in docs:  # again: nothing new is produced or stored, and the job still succeeds
        r = await capture(client, key, doc, headers)
        assert r.status_code == 202, r.text
        assert (await finished(client, key, r.headers["Location"]))["success"] is True
    assert await db.fetchval("SELECT count(*) FROM epcis_events WHERE operator = $1", op) == before
    assert await db.fetchval("SELECT count(*) FROM events WHERE operator = $1", op) == applied

    r = await client.get("/epcis/capture", headers=key)
    assert r.status_code == 200
    assert len(r.json()) == 4


async def test_the_query_document_unites_the_contexts_and_validates(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = code("", 8)
    ld = ld_document(op, tag)
    ld["epcisBody"]["eventList"] += [
        dict(e, readPoint={"id": f"urn:zs-trace:operator:{op}"}) for e in every_type(op, tag)[:1]
    ]
    r = await capture(client, key, ld, LD)
    assert r.status_code == 202, r.text
    assert (await finished(client, key, r.headers["Location"]))["success"]
    r = await client.get(
        f"/epcis/events?MATCH_anyEPC={quote(_sgtin(f'L{tag}'))},{quote(_sgtin(f'C{tag}'))}", headers=key
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "EPCISQueryDocument"
    assert len(body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == 2
    assert {"cold": "https://cold.example.org/voc/"} in body["@context"]
    assert STANDARD_CONTEXT in body["@context"]
    assert schema.validate_query_document(body) == []


async def test_an_error_declaration_is_shown_on_the_event_it_corrects(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = code("", 8)
    original = every_type(op, tag)[1]
    original["eventID"] = f"urn:uuid:{uuid.uuid4()}"
    r = await capture(client, key, document([original]))
    assert r.status_code == 202, r.text
    assert (await finished(client, key, r.headers["Location"]))["success"]

    declared = dict(
        original, errorDeclaration={"declarationTime": "2026-12-01T09:00:00.000+08:00", "reason": "incorrect_data"}
    )
    r = await capture(client, key, document([declared]))
    assert r.status_code == 202, r.text
    assert (await finished(client, key, r.headers["Location"]))["success"]
    r = await fetch(client, key, original["eventID"])
    assert r.status_code == 200
    assert modulo_added(r.json(), declared) == declared
    assert await db.fetchval("SELECT count(*) FROM epcis_events WHERE epcis_id = $1", original["eventID"]) == 1


# -- refusals: the standard's errors, and nothing applied ---------------------------------------------------


async def test_bad_documents_get_the_standards_errors_and_nothing_is_applied(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = code("", 8)
    good = every_type(op, tag)[0]
    crate = good["epcList"][0]

    r = await capture(client, key, b'{"type": "EPCISDocument", "epcisBody": ')
    _problem(r, 400, "epcisException:ValidationException")

    no_action = {k: v for k, v in every_type(op, tag)[1].items() if k != "action"}
    body = _problem(
        r := await capture(client, key, document([good, no_action])), 400, "epcisException:ValidationException"
    )
    assert any(e["pointer"].startswith("/epcisBody/eventList/1") for e in body["errors"]), body

    unknown = dict(good, type="TeleportationEvent")
    _problem(await capture(client, key, document([good, unknown])), 400, "epcisException:ValidationException")

    bad_lot = dict(
        good,
        epcList=[],
        # A city lot URI must hold a city code (a GS1 lot the city cannot name is only kept out of the graph).
        quantityList=[{"epcClass": "urn:zs-trace:lot:lot-1a", "quantity": 20, "uom": "KGM"}],
    )
    body = _problem(await capture(client, key, document([good, bad_lot])), 400, "epcisException:ValidationException")
    assert any(e["pointer"].startswith("/epcisBody/eventList/1") for e in body["errors"]), body

    _problem(
        await capture(client, key, document([good]), {"Content-Type": "text/plain"}),
        415,
        "epcisException:UnsupportedMediaTypeException",
    )
    _problem(
        await capture(client, key, document([good]), {**JSON, "Accept": "text/html"}),
        406,
        "epcisException:NotAcceptableException",
    )

    r = await capture(client, key, document([dict(good, epcList=[_sgtin(f"X{tag}{i}")]) for i in range(1001)]))
    _problem(r, 413, "epcisException:CaptureLimitExceededException")
    assert r.headers["GS1-EPCIS-Capture-Limit"] == "1000"

    _problem(await capture(client, {}, document([good])), 401, "epcisException:SecurityException")
    regulator = await actors.staff_key("regulator")
    _problem(await capture(client, regulator, document([good])), 403, "epcisException:SecurityException")
    other = await actors.operator(kind="wholesaler")
    elsewhere = dict(good, bizLocation={"id": f"urn:zs-trace:operator:{other}"})
    _problem(await capture(client, key, document([good, elsewhere])), 403, "epcisException:SecurityException")

    # A good document afterwards is applied: the refused ones left nothing behind before it.
    r = await capture(client, key, document([dict(good, epcList=[_sgtin(f"Z{tag}")])]))
    assert r.status_code == 202
    assert (await finished(client, key, r.headers["Location"]))["success"]
    assert await _rows(db, crate) == 0
    digest = hashing.event_hash(good, [STANDARD_CONTEXT])
    ids = [hashing.envelope_id(digest, error_declaration=False)]
    assert await db.fetchval("SELECT count(*) FROM intake WHERE event_id = ANY($1::uuid[])", ids) == 0
    assert await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids) == 0


async def test_query_parameters_are_checked(client: httpx.AsyncClient, actors: Actors) -> None:
    _, key = await actors.operator_with_key(kind="wholesaler")
    for query in ("EQ_colour=red", "perPage=0", "perPage=1001", "GE_eventTime=yesterday", "nextPageToken=abc"):
        _problem(await client.get(f"/epcis/events?{query}", headers=key), 400, "epcisException:QueryParameterException")
    _problem(await fetch(client, key, "urn:uuid:" + str(uuid.uuid4())), 404, "epcisException:NoSuchResourceException")
    _problem(
        await client.get(f"/epcis/capture/{uuid.uuid4()}", headers=key), 404, "epcisException:NoSuchResourceException"
    )
    # The rest of the API keeps its own shape.
    r = await client.get(f"/v1/events/{uuid.uuid4()}", headers=key)
    assert r.status_code == 404
    assert set(r.json()) == {"error"}


# -- paging and scope ---------------------------------------------------------------------------------------


async def test_three_pages_of_seven_events(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = code("", 8)
    crate = _sgtin(f"P{tag}")
    template = every_type(op, tag)[1]
    events = [dict(template, epcList=[crate], eventTime=f"2026-11-30T0{i}:00:00.000+08:00") for i in range(7)]
    r = await capture(client, key, document(events))
    assert r.status_code == 202, r.text
    assert (await finished(client, key, r.headers["Location"]))["success"]

    url: str | None = f"/epcis/events?MATCH_epc={quote(crate)}&perPage=3"
    pages: list[list[dict[str, Any]]] = []
    while url:
        r = await client.get(url, headers=key)
        assert r.status_code == 200, r.text
        pages.append(r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"])
        link = r.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert [len(p) for p in pages] == [3, 3, 1]
    times = sorted(e["eventTime"] for page in pages for e in page)
    assert times == sorted(e["eventTime"] for e in events)


async def test_the_pig_chain_reads_as_valid_epcis_within_each_keys_scope(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    ids = [f"urn:uuid:{e['event_id']}" for e in sc["events"]]
    regulator = await actors.staff_key("regulator")

    async def all_indexed() -> dict[str, Any] | None:
        r = await client.get(f"/epcis/events?EQ_eventID={','.join(ids)}&perPage=100", headers=regulator)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if len(body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) == len(ids) else None

    body = await wait_for(all_indexed)
    assert schema.validate_query_document(body) == []
    types = {e["type"] for e in body["epcisBody"]["queryResults"]["resultsBody"]["eventList"]}
    assert {"ObjectEvent", "TransformationEvent"} <= types

    farm = sc["events"][0]["operator"]
    farm_key = await actors.key(farm)
    r = await client.get(f"/epcis/events?EQ_eventID={','.join(ids)}&perPage=100", headers=farm_key)
    mine = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert {e["eventID"] for e in mine} == {f"urn:uuid:{e['event_id']}" for e in sc["events"] if e["operator"] == farm}
    outsider = await actors.key(await actors.operator(kind="wholesaler"))
    r = await client.get(f"/epcis/events?EQ_eventID={','.join(ids)}", headers=outsider)
    assert r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"] == []
    _problem(await fetch(client, outsider, ids[0]), 404, "epcisException:NoSuchResourceException")
    assert (await fetch(client, farm_key, ids[0])).status_code == 200


@pytest.mark.parametrize(
    "value", ["shipping", "https://ref.gs1.org/cbv/BizStep-shipping", "urn:epcglobal:cbv:bizstep:shipping"]
)
async def test_biz_step_is_matched_in_any_of_its_forms(
    client: httpx.AsyncClient, actors: Actors, worker: None, value: str
) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = code("", 8)
    events = every_type(op, tag)
    r = await capture(client, key, document(events))
    assert r.status_code == 202, r.text
    assert (await finished(client, key, r.headers["Location"]))["success"]
    crate = quote(_sgtin(f"C{tag}"))
    r = await client.get(f"/epcis/events?MATCH_anyEPC={crate}&EQ_bizStep={quote(value)}", headers=key)
    found = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert [e["type"] for e in found] == ["TransactionEvent"]
    r = await client.get(
        f"/epcis/events?MATCH_parentID={quote(events[2]['parentID'])}&eventType=AggregationEvent", headers=key
    )
    assert [e["type"] for e in r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]] == [
        "AggregationEvent"
    ]


async def test_a_gs1_lot_the_city_cannot_name_is_captured_and_queried_but_joins_no_graph(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    dated = f"urn:epc:class:lgtin:6901234.012345.{code('', 4)}-10-07"  # a lot named by a date, as GS1 allows
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-30T06:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [],
        "quantityList": [{"epcClass": dated, "quantity": 12.5, "uom": "KGM"}],
        "action": "OBSERVE",
        "bizStep": "receiving",
        "bizLocation": {"id": f"urn:zs-trace:operator:{op}"},
    }
    r = await capture(client, key, document([event]))
    assert r.status_code == 202, r.text
    assert (await finished(client, key, r.headers["Location"]))["success"] is True
    r = await client.get("/epcis/events", params={"MATCH_anyEPCClass": dated}, headers=key)
    assert r.status_code == 200, r.text
    [got] = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert modulo_added(got, event) == event
    assert await db.fetchval("SELECT count(*) FROM lots WHERE documents->>'epc' = $1", dated) == 0
