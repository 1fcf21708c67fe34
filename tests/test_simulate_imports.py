"""The simulator's imported meat (issue 14): a generated day holds valid events of every import type, in the
order a port, a cold store and a market make them, with exactly the injected cold-chain and document faults;
``imports`` changes nothing else in the city's day."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from decimal import Decimal

import orjson

from trace_service.alerts.rules import Reading, excursions
from trace_service.contract.events import build_catalogue
from trace_service.contract.origins import COUNTRIES
from trace_service.sim.city import ENTRY_PORTS, build_city
from trace_service.sim.events import IMPORT_RULES, RULES, simulate

END = date(2025, 3, 12)
IMPORT_TYPES = {
    "import.customs_cleared",
    "import.documents_supplied",
    "coldstore.stored_in",
    "coldstore.released",
    "lot.temperature_recorded",
}
CERTS = ("inspection_cert_number", "disinfection_cert_number")


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_generated_day_holds_valid_events_of_every_import_type() -> None:
    sim = simulate(build_city(8, "tiny"), days=1, end=END, anomalies=0.05)
    catalogue = build_catalogue()
    for event in sim.events:
        catalogue.event.validate_json(orjson.dumps(event))
    types = Counter(e["event_type"] for e in sim.events)
    assert set(types) >= IMPORT_TYPES, types
    assert set(IMPORT_RULES) <= set(RULES)

    city = sim.city
    kinds = {op.code: op.kind for op in city.operators}
    cleared = {e["data"]["lot"]: e for e in sim.events if e["event_type"] == "import.customs_cleared"}
    assert cleared
    ports = {p for p, _ in ENTRY_PORTS}
    for lot, e in cleared.items():
        d = e["data"]
        assert kinds[e["operator"]] == "importer"
        assert d["origin_country"] in COUNTRIES
        assert d["entry_port"] in ports
        assert d["storage"] == "frozen"
        about = [x for x in sim.events if x["data"].get("lot") == lot]
        # The importer reports its lot at every step, in the order of the chain, into its own cold store.
        assert {x["operator"] for x in about} == {e["operator"]}
        order = [x["event_type"] for x in about if x["event_type"] != "import.documents_supplied"]
        assert order[0] == "import.customs_cleared" and order[1] == "coldstore.stored_in"  # noqa: PT018
        assert order[-1] == "coldstore.released"
        assert set(order[2:-1]) == {"lot.temperature_recorded"}
        stored = next(x for x in about if x["event_type"] == "coldstore.stored_in")
        assert kinds[stored["data"]["store"]] == "cold_store"
        # Readings every 30 minutes, between going in and coming out.
        times = [
            _t(r["at"]) for x in about if x["event_type"] == "lot.temperature_recorded" for r in x["data"]["readings"]
        ]
        assert {b - a for a, b in itertools.pairwise(times)} == {timedelta(minutes=30)}
        released = next(x for x in about if x["event_type"] == "coldstore.released")
        assert _t(stored["occurred_at"]) < times[0] and times[-1] < _t(released["occurred_at"])  # noqa: PT018
        # Then shipped whole to a frozen-meat wholesaler at a wholesale market.
        [shipped] = [
            x for x in sim.events if x["event_type"] == "trade.shipped" and x["data"]["lines"][0]["lot"] == lot
        ]
        assert shipped["data"]["buyer"] in city.frozen_wholesalers
        assert kinds[city.by_code[shipped["data"]["buyer"]].parent or ""] == "wholesale_market"
        assert _t(shipped["occurred_at"]) > _t(released["occurred_at"])

    # And sold: a traced sale of imported meat at a supermarket.
    imported_lots = {
        line["lot"]
        for e in sim.events
        if e["event_type"] == "trade.received"
        and e["operator"] in {op.code for op in city.operators if op.kind == "supermarket"}
        for line in e["data"]["lines"]
        if line["product_code"] in ("PORK-FROZEN", "BEEF-FROZEN")
    }
    assert any(e["event_type"] == "retail.sold" and e["data"]["lot"] in imported_lots for e in sim.events)


def test_the_import_faults_are_exactly_those_injected() -> None:
    sim = simulate(build_city(8, "small"), days=3, end=END, anomalies=0.05)
    truth = {t.rule: set() for t in sim.truth if t.rule in IMPORT_RULES}
    for t in sim.truth:
        if t.rule in IMPORT_RULES:
            truth[t.rule].add(t.subject_code)
    assert set(truth) == set(IMPORT_RULES)

    readings: dict[str, list[Reading]] = {}
    for e in sim.events:
        if e["event_type"] == "lot.temperature_recorded":
            for r in e["data"]["readings"]:
                at, celsius = _t(r["at"]), Decimal(str(r["celsius"]))
                readings.setdefault(e["data"]["lot"], []).append(Reading(at, celsius, uuid.UUID(e["event_id"])))
    broken = {
        lot for lot, rs in readings.items() if any(x.duration > timedelta(minutes=30) for x in excursions(rs, -15.0))
    }
    assert broken == truth["cold_chain_break"]
    # Elsewhere every reading stays at or below -16.2 °C: no short excursion either.
    assert all(r.celsius <= Decimal("-16.2") for lot, rs in readings.items() if lot not in broken for r in rs)

    # A lot lacks a certificate at the time of a shipment of it (or of a lot made from it) only where injected.
    docs: dict[str, set[str]] = {}
    supplied: dict[str, list[tuple[datetime, set[str]]]] = {}
    for e in sim.events:
        d = e["data"]
        if e["event_type"] == "import.customs_cleared":
            docs[d["lot"]] = {k for k in CERTS if d.get(k)}
        elif e["event_type"] == "import.documents_supplied":
            supplied.setdefault(d["lot"], []).append((_t(e["occurred_at"]), {k for k in CERTS if d.get(k)}))
    late = set()
    for e in sim.events:
        if e["event_type"] == "trade.shipped" and e["data"]["lines"][0]["lot"] in docs:
            lot, at = e["data"]["lines"][0]["lot"], _t(e["occurred_at"])
            have = docs[lot] | {k for when, ks in supplied.get(lot, []) if when <= at for k in ks}
            if have != set(CERTS):
                late.add(lot)
    assert late == truth["import_docs_missing"]


def test_imports_change_nothing_else_in_the_day() -> None:
    city = build_city(4, "tiny")
    without = simulate(city, days=2, end=END, imports=0)
    more = simulate(city, days=2, end=END, imports=2)
    assert not any(e["event_type"] in IMPORT_TYPES for e in without.events)
    theirs = {e["event_id"]: orjson.dumps(e) for e in more.events}
    assert all(theirs.get(e["event_id"]) == orjson.dumps(e) for e in without.events)
    flows = len(city.import_flows)
    assert Counter(e["event_type"] for e in more.events)["import.customs_cleared"] == 2 * 2 * flows
    # Modest: imports are a small part of the city's day.
    assert len(more.events) - len(without.events) < 0.25 * len(without.events)
