"""The EPCIS index of a domestic event, computed from the typed event (``mapping.index``, ``store.domestic_row``),
agrees with what rendering it would give (``mapping.render`` then ``mapping.epcs``, ``store.index_row``): on every
example in events/examples and every event of the scenarios. Pure: no database."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from trace_service.chain import scenarios
from trace_service.contract.epcis import mapping
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
