"""Imported cold-chain meat (issue 14): the five domestic event types, their graph effects, custody, and the
rules cold_chain_break and import_docs_missing (their faulty scenarios run in tests/test_alerts.py with the
other rules; here the clean chain, the arithmetic and the order independence)."""

from __future__ import annotations

import asyncio
import copy
import json
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Actors, code, register_operators, scenario_tag, wait_for
from trace_service.alerts import engine as alerts_engine
from trace_service.alerts import facts, rules
from trace_service.alerts.models import alert_id
from trace_service.chain import ownership, projection, scenarios
from trace_service.chain import writes as chain_repo
from trace_service.contract.events import EventType, build_catalogue
from trace_service.db.engine import create_engine
from trace_service.settings import RuleSettings, Settings

CATALOGUE = build_catalogue()
EXAMPLES = Path(__file__).resolve().parent.parent / "events" / "examples"
COLD_TYPES = [
    EventType.IMPORT_CUSTOMS_CLEARED,
    EventType.IMPORT_DOCUMENTS_SUPPLIED,
    EventType.COLDSTORE_STORED_IN,
    EventType.COLDSTORE_RELEASED,
    EventType.LOT_TEMPERATURE_RECORDED,
]
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def example(event_type: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / f"{event_type}.json").read_text(encoding="utf-8"))
    return doc


def validate(doc: dict[str, Any]) -> BaseModel:
    event: BaseModel = CATALOGUE.event.validate_json(orjson.dumps(doc))
    return event


# -- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", [t.value for t in COLD_TYPES])
def test_each_example_is_valid(event_type: str) -> None:
    event = validate(example(event_type))
    assert event.event_type == event_type  # type: ignore[attr-defined]


def _with(event_type: str, path: str, value: Any, *, drop: bool = False) -> dict[str, Any]:
    doc = copy.deepcopy(example(event_type))
    scenarios._path_set(doc, path, value, drop=drop)
    return doc


BAD = {
    "China as origin": ("import.customs_cleared", "data.origin_country", "CN"),
    "origin lower case": ("import.customs_cleared", "data.origin_country", "br"),
    "origin three letters": ("import.customs_cleared", "data.origin_country", "BRA"),
    "storage unknown": ("import.customs_cleared", "data.storage", "ambient"),
    "entry port too long": ("import.customs_cleared", "data.entry_port", "港" * 65),
    "declaration number malformed": ("import.customs_cleared", "data.customs_declaration_number", "CD 1"),
    "unknown field": ("import.customs_cleared", "data.halal", True),
    "no certificate supplied": ("import.documents_supplied", "data.disinfection_cert_number", None),
    "store not an operator code": ("coldstore.stored_in", "data.store", "cold store 1"),
    "released with unknown field": ("coldstore.released", "data.temperature", -18),
    "minus 100 degrees": ("lot.temperature_recorded", "data.readings.0.celsius", -100.0),
    "plus 91 degrees": ("lot.temperature_recorded", "data.readings.0.celsius", 91.0),
    "three decimals": ("lot.temperature_recorded", "data.readings.0.celsius", -18.125),
    "naive reading time": ("lot.temperature_recorded", "data.readings.0.at", "2026-11-24T11:30:00"),
    "unknown reading field": ("lot.temperature_recorded", "data.readings.0.humidity", 80),
    "no readings": ("lot.temperature_recorded", "data.readings", []),
    "temperature as text": ("lot.temperature_recorded", "data.readings.0.celsius", "-18"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_events_are_rejected(case: str) -> None:
    event_type, path, value = BAD[case]
    with pytest.raises(ValidationError):
        validate(_with(event_type, path, value))


def test_optional_fields_and_edges_of_the_ranges() -> None:
    validate(_with("import.customs_cleared", "data.inspection_cert_number", None, drop=True))
    validate(_with("lot.temperature_recorded", "data.readings.0.celsius", -90))
    validate(_with("lot.temperature_recorded", "data.readings.0.celsius", 4.25))
    validate(_with("coldstore.stored_in", "data.weight_kg", None, drop=True))


def test_claims_the_importer_creates_and_the_holder_reports() -> None:
    created = ownership.claims(validate(example("import.customs_cleared")))
    assert [(c.code, c.creates) for c in created] == [("IM2026112400001", True)]
    for t in COLD_TYPES[1:]:
        assert [(c.code, c.creates) for c in ownership.claims(validate(example(t)))] == [("IM2026112400001", False)]


# -- the pure rules ----------------------------------------------------------------------------------

S = RuleSettings()


def _readings(*pairs: tuple[int, float]) -> tuple[rules.Reading, ...]:
    return tuple(rules.Reading(T0 + timedelta(minutes=m), Decimal(str(c)), uuid.uuid4()) for m, c in pairs)


def _breaks(*pairs: tuple[int, float]) -> list[Any]:
    return rules.cold_chain_break([rules.ColdLot("IMP1", "IMPORTER01", "IMP1", _readings(*pairs))], S)


def test_exactly_thirty_minutes_is_no_break_and_thirty_one_is() -> None:
    assert _breaks((0, -18), (10, -14), (40, -15)) == []  # above from 10 to the reading at -15 at 40: 30 min
    found = _breaks((0, -18), (10, -14), (41, -18))
    assert [f.rule for f in found] == ["cold_chain_break"]
    assert found[0].evidence["minutes"] == 31
    assert found[0].evidence["peak"] == -14.0
    assert len(found[0].event_ids) == 2  # the reading above and the one that came back


def test_two_short_excursions_do_not_add_up() -> None:
    assert _breaks((0, -10), (20, -18), (30, -9), (55, -20)) == []  # 20 + 25 minutes
    assert _breaks((0, -10), (20, -12), (40, -11)) != []  # one excursion of 40 minutes, never back


def test_an_excursion_that_never_comes_back_ends_at_its_last_reading() -> None:
    assert _breaks((0, -18), (5, -10), (35, -10)) == []  # 30 minutes to the last reading above
    found = _breaks((0, -18), (5, -10), (36, -8.5))
    assert found[0].evidence["minutes"] == 31
    assert found[0].evidence["peak"] == -8.5


def test_the_limits_are_settings() -> None:
    lot = [rules.ColdLot("IMP1", None, "IMP1", _readings((0, -17), (20, -19)))]
    assert rules.cold_chain_break(lot, S) == []
    strict = RuleSettings(cold_chain_max_c=-18.0, cold_chain_max_minutes=10)
    assert [f.subject_code for f in rules.cold_chain_break(lot, strict)] == ["IMP1"]


def _imported(supplied_at: datetime | None, sold_at: datetime) -> rules.ImportedLot:
    supplied = (rules.Supplied(supplied_at, uuid.uuid4(), {"disinfection_cert_number": "DS-1"}),) if supplied_at else ()
    out = rules.ImportOutflow("WH1", "shipped", sold_at, uuid.uuid4(), "WHOLESALER1")
    return rules.ImportedLot("IMP1", "IMPORTER01", uuid.uuid4(), {"inspection_cert_number": "IQ-1"}, supplied, (out,))


def test_import_documents_count_from_when_they_were_supplied() -> None:
    assert rules.import_docs_missing([_imported(T0, T0 + timedelta(hours=1))]) == []
    late = rules.import_docs_missing([_imported(T0 + timedelta(hours=2), T0 + timedelta(hours=1))])
    assert [(f.rule, f.subject_code, f.evidence["missing"]) for f in late] == [
        ("import_docs_missing", "IMP1", ["disinfection_cert_number"])
    ]
    assert "消毒证明" in late[0].message_zh
    assert "disinfection certificate" in late[0].message_en
    never = rules.import_docs_missing([_imported(None, T0)])
    assert never[0].severity == "warning"


# -- the graph, through apply_plan --------------------------------------------------------------------


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    e = create_engine(settings, pool_size=2, name="test-cold-chain")
    try:
        yield e
    finally:
        await e.dispose()


def _chain(tag: str) -> list[dict[str, Any]]:
    sc = scenarios.instantiate(scenarios.load("import_chain"), tag)
    return list(sc["events"])


async def _apply(engine: AsyncEngine, raw: list[dict[str, Any]]) -> chain_repo.Applied:
    events = [validate(e) for e in raw]
    async with engine.begin() as conn:
        return await chain_repo.apply_plan(conn, projection.plan(events))


async def _lot(db: asyncpg.Connection, lot_code: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM lots WHERE code = $1", lot_code)
    assert row is not None
    return row


async def test_customs_entry_documents_and_temperatures_are_stored(engine: AsyncEngine, db: asyncpg.Connection) -> None:
    tag = scenario_tag()
    events = _chain(tag)
    await _apply(engine, events[:5])
    lot = await _lot(db, f"IMPLOT0001{tag}")
    assert lot["kind"] == "imported"
    assert lot["holder"] == f"442000700001{tag}"
    assert lot["product_name"] == "冷冻去骨牛肉"
    assert lot["kg_in"] == Decimal("1000.000")
    docs = orjson.loads(lot["documents"])
    assert docs == {
        "origin_country": "BR",
        "entry_port": "南沙港",
        "storage": "frozen",
        "customs_declaration_number": "CD5120261124001",
        "inspection_cert_number": "IQ5120261124001-" + tag,
    }
    kinds = await db.fetch("SELECT fact, data FROM lot_facts WHERE lot_id = $1 ORDER BY occurred_at", lot["id"])
    assert [k["fact"] for k in kinds] == ["import_docs", "cold_in"]
    assert orjson.loads(kinds[0]["data"]) == {"disinfection_cert_number": f"DS5120261124001-{tag}"}
    assert orjson.loads(kinds[1]["data"])["store"] == f"442000702001{tag}"
    temps = await db.fetch("SELECT at, celsius FROM lot_temperatures WHERE lot_id = $1 ORDER BY at", lot["id"])
    assert [float(t["celsius"]) for t in temps] == [-19.5, -19.0, -18.6, -18.8, -18.9, -18.7, -19.1]


async def test_readings_before_the_entry_give_the_same_graph_and_findings(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    hot = _chain(scenario_tag())
    hot[3]["data"]["readings"][3]["celsius"] = -12.0  # 11:45, back below only at 12:30 (event 4 after the edit)
    hot[4]["data"]["readings"][0]["celsius"] = -11.5
    hot[4]["data"]["readings"][1]["celsius"] = -13.0
    lot = hot[0]["data"]["lot"]
    # Readings first: the lot is unresolved, nothing is frozen yet, no finding.
    await _apply(engine, [hot[4], hot[3]])
    async with engine.begin() as conn:
        ids = {lot: (await _lot(db, lot))["id"]}
        assert (await _lot(db, lot))["status"] == "unresolved"
        assert await alerts_engine.cold_chain_checks(conn, projection.plan([validate(hot[3])]), ids, S) == []
    # The customs entry arrives: now the same readings are a frozen lot's, and the batch finds the break.
    entry = projection.plan([validate(hot[0])])
    async with engine.begin() as conn:
        applied = await chain_repo.apply_plan(conn, entry)
        assert await alerts_engine.cold_chain_checks(conn, entry, applied.ids, S) == [("cold_chain", lot)]
        found = rules.cold_chain_break(await facts.cold_lots(conn, [applied.ids[lot]], generations=0), S)
    assert [(f.rule, f.subject_code, f.evidence["minutes"]) for f in found] == [("cold_chain_break", lot, 45.0)]

    # In the other order, the same.
    other = copy.deepcopy(hot)
    other_tag = scenario_tag()
    other = [scenarios.replace_strings(e, {lot: f"IMPLOT0001{other_tag}"}) for e in other]
    for e in other:
        e["event_id"] = str(uuid.uuid4())
    await _apply(engine, [other[0]])
    await _apply(engine, [other[3], other[4]])
    async with engine.begin() as conn:
        oid = (await _lot(db, f"IMPLOT0001{other_tag}"))["id"]
        again = rules.cold_chain_break(await facts.cold_lots(conn, [oid], generations=0), S)
    assert [f.evidence | {"frozen_lot": None} for f in again] == [f.evidence | {"frozen_lot": None} for f in found]


async def test_a_lot_received_from_a_frozen_import_is_a_frozen_lot(engine: AsyncEngine, db: asyncpg.Connection) -> None:
    events = _chain(scenario_tag())
    await _apply(engine, events[:8])
    child = events[7]["data"]["lines"][0]["lot"]
    reading = {
        "event_id": str(uuid.uuid4()),
        "event_type": "lot.temperature_recorded",
        "occurred_at": "2026-11-25T06:00:00+08:00",
        "operator": events[7]["operator"],
        "data": {"lot": child, "readings": [{"at": "2026-11-25T05:00:00+08:00", "celsius": -5.0},
                                            {"at": "2026-11-25T05:45:00+08:00", "celsius": -6.0}]},
    }  # fmt: skip
    await _apply(engine, [reading])
    async with engine.begin() as conn:
        found = rules.cold_chain_break(await facts.cold_lots(conn, [(await _lot(db, child))["id"]], 0), S)
    assert [(f.subject_code, f.evidence["frozen_lot"]) for f in found] == [(child, events[0]["data"]["lot"])]


def _custody(lot: str, holder: str, at: datetime) -> projection.Plan:
    p = projection.Plan()
    p.fact(projection.FactRow(lot, uuid.uuid4(), "custody", None, at, {"holder": holder}))
    return p


async def test_custody_facts_change_the_holder_and_back_in_any_order(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    events = _chain(scenario_tag())
    lot, importer = events[0]["data"]["lot"], events[0]["operator"]
    store = code("CS", 10)
    await _apply(engine, events[:1])
    async with engine.begin() as conn:
        applied = await chain_repo.apply_plan(conn, _custody(lot, store, T0 + timedelta(hours=3)))
    assert applied.holder_changed == [lot]
    assert (await _lot(db, lot))["holder"] == store
    async with engine.begin() as conn:  # an older custody fact arriving late changes nothing
        applied = await chain_repo.apply_plan(conn, _custody(lot, "SOMEONE0001", T0 + timedelta(hours=2)))
    assert applied.holder_changed == []
    assert (await _lot(db, lot))["holder"] == store
    async with engine.begin() as conn:  # a later one passes it back
        applied = await chain_repo.apply_plan(conn, _custody(lot, importer, T0 + timedelta(hours=4)))
    assert applied.holder_changed == [lot]
    assert (await _lot(db, lot))["holder"] == importer

    # Custody before the creating event: the lot stays without a holder until it is created, then the
    # custody fact decides.
    tag = scenario_tag()
    late = _chain(tag)
    late_lot = late[0]["data"]["lot"]
    async with engine.begin() as conn:
        await chain_repo.apply_plan(conn, _custody(late_lot, store, T0 + timedelta(days=1)))
    assert (await _lot(db, late_lot))["holder"] is None
    applied = await _apply(engine, late[:1])
    assert applied.holder_changed == [late_lot]
    assert (await _lot(db, late_lot))["holder"] == store


# -- end to end: the clean chain raises nothing ---------------------------------------------------------


async def test_the_clean_import_chain_in_order_and_shuffled(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection, settings: Settings
) -> None:
    regulator = await actors.staff_key("regulator")
    runs = []
    for seed in (None, 3, 11):
        tag = scenario_tag()
        sc = scenarios.instantiate(scenarios.load("import_chain"), tag)
        await register_operators(client, actors.admin, sc["operators"])
        events = list(sc["events"])
        if seed is not None:
            random.Random(seed).shuffle(events)
        for event in events:
            r = await client.post("/v1/events", json=event, headers=actors.admin)
            assert r.status_code == 202, r.text
        runs.append((sc, tag))

    async def applied() -> bool:
        ids = [uuid.UUID(e["event_id"]) for sc, _ in runs for e in sc["events"]]
        n: int = await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids)
        return n == len(ids)

    await wait_for(applied, timeout=30)
    await asyncio.sleep(settings.rules.settle_seconds + 1.5)
    for sc, tag in runs:
        expect = sc["expect"]
        for lot_code, wanted in expect["lots"].items():
            r = await client.get(f"/v1/lots/{lot_code}", headers=regulator)
            assert r.status_code == 200, r.text
            body = r.json()
            for key, value in wanted.items():
                assert body[key] == (pytest.approx(value) if isinstance(value, float) else value), (key, body)
        r = await client.get(f"/v1/lots/{expect['trace_up']['from']}/trace?direction=up", headers=regulator)
        assert [lot["code"] for lot in r.json()["lots"]] == expect["trace_up"]["path"]
        ids = [uuid.UUID(e["event_id"]) for e in sc["events"]]
        alerts = await db.fetch(
            """SELECT rule, subject_code FROM alerts WHERE subject_code LIKE '%' || $1
               OR id IN (SELECT alert_id FROM alert_events WHERE event_id = ANY($2::uuid[]))""",
            tag,
            ids,
        )
        assert [tuple(a) for a in alerts] == [], tag


@pytest.mark.parametrize("rule", ["cold_chain_break", "import_docs_missing"])
def test_each_rule_has_its_faulty_twin_of_the_import_chain(rule: str) -> None:
    sc = scenarios.load(f"faults/{rule}")
    assert sc["base"] == "import_chain"
    want = sc["expect"]["alert"]
    assert want["rule"] == rule
    assert alert_id(rule, "lot", want["subject"]).startswith("al_")
