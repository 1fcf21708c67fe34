"""A chain of imported frozen pork captured only through EPCIS 2.0: an importer commissions the lot at the port,
ships it to a cold store, the cold store records its temperatures and ships it on to a wholesaler, who repacks
it into a lot of its own. The wholesaler's lot traces back to the import, and the cold store's temperature
excursion raises ``cold_chain_break`` (issue 14). Real Postgres, broker, API and worker.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.support import Actors, code, wait_for
from trace_service.contract.epcis.uris import gtin14

CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"zs-trace": "https://trace.zs.example/epcis/"},
]
COMPANY, ITEM = "6901234", "012345"


def operator_uri(op: str) -> dict[str, str]:
    return {"id": f"urn:zs-trace:operator:{op}"}


def lgtin(lot: str) -> str:
    return f"urn:epc:class:lgtin:{COMPANY}.{ITEM}.{lot}"


def city_code(lot: str) -> str:
    gtin = gtin14(COMPANY, ITEM)
    assert gtin is not None
    return gtin + lot


def doc(*events: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "@context": CONTEXT,
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-12-01T00:00:00Z",
            "epcisBody": {"eventList": list(events)},
        }
    )


def shipping(at: str, lot: str, sender: str, receiver: str, kg: float) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "eventTime": at,
        "eventTimeZoneOffset": "+08:00",
        "epcList": [],
        "quantityList": [{"epcClass": lgtin(lot), "quantity": kg, "uom": "KGM"}],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "bizLocation": operator_uri(sender),
        "sourceList": [{"type": "owning_party", "source": operator_uri(sender)["id"]}],
        "destinationList": [{"type": "owning_party", "destination": operator_uri(receiver)["id"]}],
    }


def reading(at: str, celsius: float) -> dict[str, Any]:
    return {"sensorMetadata": {"time": at}, "sensorReport": [{"type": "Temperature", "value": celsius, "uom": "CEL"}]}


async def _capture(client: httpx.AsyncClient, key: dict[str, str], body: bytes) -> None:
    r = await client.post("/epcis/capture", content=body, headers={**key, "Content-Type": "application/ld+json"})
    assert r.status_code == 202, r.text
    location = r.headers["Location"]

    async def done() -> dict[str, Any] | None:
        job = await client.get(location, headers=key)
        assert job.status_code == 200, job.text
        return job.json() if not job.json()["running"] else None

    job = await wait_for(done, timeout=30)
    assert job["success"], job


async def test_an_import_captured_through_epcis_traces_back_and_its_excursion_alerts(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    importer = await actors.operator(kind="importer")
    store = await actors.operator(kind="cold_store")
    market = await actors.operator(kind="wholesale_market")
    wholesaler = await actors.operator(kind="wholesaler", parent=market)
    keys = {op: await actors.key(op) for op in (importer, store, wholesaler)}
    regulator = await actors.staff_key()
    imported, repacked = code("IM", 8), code("WP", 8)

    commissioning = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-30T08:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [],
        "quantityList": [{"epcClass": lgtin(imported), "quantity": 2000, "uom": "KGM"}],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "bizLocation": operator_uri(importer),
        "bizTransactionList": [
            {"type": "urn:zs-trace:btt:customs_declaration", "bizTransaction": f"urn:zs-trace:customs:CD{imported}"},
            {"type": "urn:zs-trace:btt:inspection_certificate", "bizTransaction": f"urn:zs-trace:cert:IQ{imported}"},
            {"type": "urn:zs-trace:btt:disinfection_certificate", "bizTransaction": f"urn:zs-trace:cert:DS{imported}"},
        ],
        "ilmd": {"cbvmda:countryOfOrigin": "BR", "zs-trace:storage": "frozen", "zs-trace:entryPort": "南沙港"},
    }
    await _capture(
        client,
        keys[importer],
        doc(commissioning, shipping("2026-11-30T09:00:00+08:00", imported, importer, store, 2000)),
    )

    # The cold store's door was left open: above -15 °C from 10:10 to 11:00, fifty minutes.
    storing = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-30T10:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "epcList": [],
        "quantityList": [{"epcClass": lgtin(imported), "quantity": 2000, "uom": "KGM"}],
        "action": "OBSERVE",
        "bizStep": "storing",
        "disposition": "in_progress",
        "bizLocation": operator_uri(store),
        "sensorElementList": [
            reading("2026-11-30T10:00:00+08:00", -18.5),
            reading("2026-11-30T10:10:00+08:00", -12.0),
            reading("2026-11-30T10:40:00+08:00", -9.5),
            reading("2026-11-30T11:00:00+08:00", -18.0),
        ],
    }
    onward = shipping("2026-11-30T14:00:00+08:00", imported, store, wholesaler, 2000)
    await _capture(client, keys[store], doc(storing, onward))

    repacking = {
        "type": "TransformationEvent",
        "eventTime": "2026-11-30T16:00:00+08:00",
        "eventTimeZoneOffset": "+08:00",
        "inputQuantityList": [{"epcClass": lgtin(imported), "quantity": 2000, "uom": "KGM"}],
        "outputQuantityList": [{"epcClass": lgtin(repacked), "quantity": 1990, "uom": "KGM"}],
        "bizStep": "repackaging",
        "bizLocation": operator_uri(wholesaler),
    }
    await _capture(client, keys[wholesaler], doc(repacking))

    # The wholesaler's lot traces back to the import, which the cold store handed on.
    r = await client.get(f"/v1/lots/{city_code(repacked)}/trace?direction=up", headers=regulator)
    assert r.status_code == 200, r.text
    trace = r.json()
    lots = {lot["code"]: lot for lot in trace["lots"]}
    assert set(lots) == {city_code(imported), city_code(repacked)}
    assert lots[city_code(imported)]["kind"] == "imported"
    assert lots[city_code(imported)]["holder"] == wholesaler
    assert lots[city_code(repacked)]["holder"] == wholesaler
    assert [(e["from"], e["to"]) for e in trace["edges"]] == [(city_code(imported), city_code(repacked))]
    r = await client.get(f"/v1/lots/{city_code(imported)}", headers=regulator)
    assert r.status_code == 200, r.text
    assert r.json()["documents"]["origin_country"] == "BR"
    assert r.json()["documents"]["entry_port"] == "南沙港"

    # The recall of the import reaches the wholesaler's lot.
    r = await client.get(f"/v1/lots/{city_code(imported)}/recall", headers=regulator)
    assert r.status_code == 200, r.text
    assert city_code(repacked) in r.text

    async def excursion() -> dict[str, Any] | None:
        r = await client.get("/v1/alerts?rule=cold_chain_break", headers=regulator)
        assert r.status_code == 200, r.text
        found = [a for a in r.json()["items"] if a["subject"] == {"type": "lot", "code": city_code(imported)}]
        return found[0] if found else None

    alert = await wait_for(excursion, timeout=20)
    assert alert["severity"] == "critical"
    assert alert["evidence"]["minutes"] > 30

    # Read back as EPCIS: every captured event that names the import lot (as a quantity class, in any list).
    r = await client.get("/epcis/events", params={"MATCH_anyEPCClass": lgtin(imported)}, headers=regulator)
    assert r.status_code == 200, r.text
    steps = [e.get("bizStep") for e in r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]]
    assert sorted(steps) == sorted(["commissioning", "shipping", "storing", "shipping", "repackaging"])
