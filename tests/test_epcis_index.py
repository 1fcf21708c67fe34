"""The EPCIS index of a domestic event, computed from the typed event (``mapping.index``, ``store.domestic_row``),
agrees with what rendering it would give (``mapping.render`` then ``mapping.epcs``, ``store.index_row``): on every
example in events/examples and every event of the scenarios. Then, through the API and the worker: a domestic
event is stored with no document and served rendered from its envelope, and the class filters find it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import Actors, post_events, register_operators, scenario_tag, wait_for
from trace_service.chain import scenarios
from trace_service.contract.epcis import mapping
from trace_service.contract.epcis.uris import lot_uri
from trace_service.contract.events import EPCIS_URIS, Envelope, EventType, build_catalogue
from trace_service.epcis import store

ROOT = Path(__file__).resolve().parent.parent / "events"
CATALOGUE = build_catalogue()


def _domestic(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in envelopes if e.get("event_type") != EventType.EPCIS_EVENT]


def _examples() -> list[dict[str, Any]]:
    return _domestic([json.loads(p.read_text(encoding="utf-8")) for p in sorted((ROOT / "examples").glob("*.json"))])


def _scenario_events() -> list[dict[str, Any]]:
    names = sorted(str(p.relative_to(ROOT / "scenarios").with_suffix("")) for p in (ROOT / "scenarios").rglob("*.json"))
    found: list[dict[str, Any]] = []
    for name in names:
        found += _domestic(scenarios.load(name)["events"])
    return found


def _valid(raw: dict[str, Any]) -> Envelope | None:
    try:
        return CATALOGUE.event.validate_json(json.dumps(raw))
    except ValueError:
        return None  # a fault scenario's event the contract refuses: never indexed


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "doc"}
    out["event_id"] = str(out["event_id"])
    moment = out["event_time"]
    out["event_time"] = moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)
    return out


def _check(event: Envelope) -> None:
    envelope = event.model_dump(mode="json")
    rendered = mapping.render(envelope, EPCIS_URIS)
    found = mapping.index(event, EPCIS_URIS)
    every, inputs, outputs = mapping.epcs(rendered)
    assert (found.type, found.biz_step, found.disposition, found.action) == (
        rendered["type"],
        rendered["bizStep"],
        rendered.get("disposition"),
        rendered.get("action"),
    ), event.event_type
    assert (found.epcs, found.inputs, found.outputs) == (every, inputs, outputs), event.event_type
    # The whole row, column by column, as the worker used to write it from the rendering (doc aside).
    row = store.domestic_row(event, EPCIS_URIS)
    assert row["doc"] is None
    assert _comparable(row) == _comparable(store.index_row(envelope["event_id"], envelope["operator"], rendered, None))


def test_the_examples_cover_every_domestic_type() -> None:
    types = {e["event_type"] for e in _examples()}
    assert types == {t.value for t in EventType} - {EventType.EPCIS_EVENT.value}
    assert set(mapping._INDEX) == types


@pytest.mark.parametrize("raw", _examples(), ids=lambda e: str(e["event_type"]))
def test_the_index_of_each_example_is_that_of_its_rendering(raw: dict[str, Any]) -> None:
    event = _valid(raw)
    assert event is not None
    _check(event)


def test_the_index_of_every_scenario_event_is_that_of_its_rendering() -> None:
    checked = 0
    for raw in _scenario_events():
        event = _valid(raw)
        if event is not None:
            _check(event)
            checked += 1
    assert checked > 100


def test_an_event_type_with_no_rendering_has_no_index() -> None:
    event = _valid(_examples()[0])
    assert event is not None
    with pytest.raises(ValueError, match="no EPCIS rendering"):
        mapping.index(event.model_copy(update={"event_type": "unknown.type"}), EPCIS_URIS)


async def test_domestic_events_are_stored_without_a_document_and_served_rendered(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    by_id = {f"urn:uuid:{e['event_id']}": e for e in sc["events"]}
    regulator = await actors.staff_key("regulator")

    async def page(**params: str) -> list[dict[str, Any]]:
        r = await client.get("/epcis/events", params={**params, "perPage": "100"}, headers=regulator)
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        return found

    async def all_indexed() -> list[dict[str, Any]] | None:
        found = await page(EQ_eventID=",".join(by_id))
        return found if len(found) == len(by_id) else None

    served = await wait_for(all_indexed)
    assert served is not None
    docs = await db.fetch(
        "SELECT doc FROM epcis_events WHERE event_id = ANY($1::uuid[])", [e["event_id"] for e in sc["events"]]
    )
    assert len(docs) == len(by_id)
    assert all(row["doc"] is None for row in docs)
    for event in served:
        raw = by_id[event["eventID"]]
        typed = _valid(raw)
        assert typed is not None
        expected = mapping.render(typed.model_dump(mode="json"), EPCIS_URIS)
        assert {k: v for k, v in event.items() if k != "recordTime"} == expected

    # The slaughtered lot: in the quantityList of the events before the slaughter, an input of the slaughter.
    slaughter = next(e for e in sc["events"] if e["event_type"] == "slaughter.batch_slaughtered")
    lot = lot_uri(slaughter["data"]["lot"], EPCIS_URIS)
    observed = {e["eventID"] for e in await page(MATCH_epcClass=lot)}
    anywhere = {e["eventID"] for e in await page(MATCH_anyEPCClass=lot)}
    inputs = {e["eventID"] for e in await page(MATCH_anyEPCClass=lot, eventType="TransformationEvent")}
    assert inputs == {f"urn:uuid:{slaughter['event_id']}"}
    assert observed
    assert observed.isdisjoint(inputs)
    assert anywhere == observed | inputs
    assert await page(MATCH_anyEPC=lot) == []  # a lot is a class, never an EPC of a list
