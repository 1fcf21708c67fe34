"""The simulator: every event it makes is valid, the same seed makes the same events, and a smoke run of a
tiny city through a served API raises exactly the alerts of the faults it injected."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta

import asyncpg
import orjson
import pytest
import uvicorn

from tests.conftest import ADMIN_TOKEN
from tests.support import wait_for
from trace_service.alerts.models import alert_id
from trace_service.api.app import create_app
from trace_service.contract.codes import CodePatterns, check_ear_tag, check_farm_code
from trace_service.contract.events import build_catalogue
from trace_service.settings import Settings
from trace_service.sim import runner
from trace_service.sim.city import build_city
from trace_service.sim.events import RULES, Simulation, simulate

# A fixed past day no other test writes market figures for (test_market draws its days before 2024).
END = date(2025, 3, 12)


def _tiny(seed: int = 11, days: int = 1, anomalies: float = 0.05) -> Simulation:
    return simulate(build_city(seed, "tiny"), days=days, end=END, anomalies=anomalies)


def test_every_event_and_operator_is_valid() -> None:
    sim = simulate(build_city(5, "small"), days=2, end=END, anomalies=0.05)
    catalogue = build_catalogue()
    for event in sim.events + sim.conflicts:
        catalogue.event.validate_json(orjson.dumps(event))  # raises on the first invalid one
    assert len({e["event_id"] for e in sim.events}) == len(sim.events)

    p = CodePatterns()
    codes = [op.code for op in sim.city.operators]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(p.operator, c) for c in codes)
    for farm in sim.city.farms + sim.city.outside_farms:
        check_farm_code(farm.farm_code)
    tags = Counter(t for e in sim.events if e["event_type"] == "farm.pigs_dispatched" for t in e["data"]["ear_tags"])
    for tag in tags:
        check_ear_tag(tag)
    reused = {t.subject_code for t in sim.truth if t.rule == "ear_tag_reused"}
    again = {
        t
        for e in sim.events
        if e["event_type"] == "farm.pigs_dispatched" and e["data"]["lot"] in reused
        for t in e["data"]["ear_tags"]
    }
    assert {t for t, n in tags.items() if n > 1} == again  # only the injected fault reuses a tag
    # Every integrity rule is injected, and the shock is there (not judged: two days have no baseline).
    assert {t.rule for t in sim.truth if t.kind == "integrity"} == set(RULES)
    assert [(t.rule, t.detectable) for t in sim.truth if t.kind == "market"] == [("supply_drop", False)]
    assert sim.skipped == []
    # The shock cuts a wholesale market's receipts, not what the stalls and canteens downstream get: every
    # standing order is filled on the last day too (orders vary by 8 % a day).
    last = sim.last_day.isoformat()
    got: Counter[tuple[str, str, str]] = Counter()
    for e in sim.events:
        if e["event_type"] == "trade.received" and e["occurred_at"].startswith(last):
            for line in e["data"]["lines"]:
                got[(e["data"]["seller"], e["operator"], line["product_code"])] += line["weight_kg"]
    short = [o for o in sim.city.orders if got[(o.seller, o.buyer, o.product)] < 0.9 * o.kg]
    assert short == []
    # Heads slaughtered before the simulated days (the shelf-life fault's old batch) never fall on the weekday
    # of the day after them: the market monitor would compare that day's silence with those few heads.
    before = {
        date.fromisoformat(e["occurred_at"][:10])
        for e in sim.events
        if e["event_type"] == "slaughter.batch_slaughtered" and e["occurred_at"][:10] < sim.first_day.isoformat()
    }
    assert before
    assert all((sim.last_day + timedelta(days=1) - day).days % 7 for day in before)
    # Before dawn is the busiest time of the day; a few hundred pigs a day in trucks.
    stats = sim.stats()
    assert 2 <= stats["peak_hour"] <= 6
    assert 500 <= stats["pigs_slaughtered_per_day"] <= 700


def test_the_same_seed_makes_the_same_events() -> None:
    a, b = _tiny(seed=3, days=2), _tiny(seed=3, days=2)
    assert orjson.dumps(a.events) == orjson.dumps(b.events)
    assert a.truth == b.truth
    assert orjson.dumps(a.conflicts) == orjson.dumps(b.conflicts)
    other = _tiny(seed=4, days=2)
    assert {e["event_id"] for e in other.events}.isdisjoint({e["event_id"] for e in a.events})
    quiet = _tiny(seed=3, days=2, anomalies=0.0)
    assert quiet.truth == []
    assert quiet.conflicts == []


@pytest.fixture
def served(settings: Settings) -> Iterator[str]:
    """The app served over real HTTP by uvicorn in a thread of its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


async def _ours(db: asyncpg.Connection, sim: Simulation, ids: list[uuid.UUID]) -> set[tuple[str, str, str]]:
    """Alerts about this run: linked to its events, or about a code carrying its seed tag and days."""
    days = [sim.first_day + timedelta(days=i) for i in range(sim.days)]
    stamps = [f"%{sim.city.tag}{d:%y%m%d}%" for d in days]
    rows = await db.fetch(
        """SELECT rule, subject_type, subject_code FROM alerts a
           WHERE a.subject_code LIKE ANY($1::text[]) OR a.subject_code = ANY($2::text[])
              OR a.id IN (SELECT alert_id FROM alert_events WHERE event_id = ANY($3::uuid[]))""",
        stamps,
        [str(i) for i in ids],
        ids,
    )
    return {(r["rule"], r["subject_type"], r["subject_code"]) for r in rows}


async def test_a_simulated_day_raises_exactly_the_injected_alerts(
    served: str, worker: None, db: asyncpg.Connection, settings: Settings
) -> None:
    sim = _tiny(seed=21)
    summary = await asyncio.to_thread(
        runner.run_api,
        sim,
        served,
        ADMIN_TOKEN,
        batch=200,
        concurrency=4,
        bootstrap=settings.kafka_bootstrap,
        topic=settings.topic_events,
        out=None,
    )
    assert (summary.accepted, summary.errors, summary.conflicts_via) == (len(sim.events), 0, "kafka"), summary
    ids = [uuid.UUID(e["event_id"]) for e in sim.events]

    async def applied() -> bool:
        return bool(await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids) == len(ids))

    await wait_for(applied, timeout=30, interval=0.2)

    truth = runner.truth_document(sim, summary)["truth"]
    expected = {(t["rule"], t["subject_type"], t["subject_code"]) for t in truth if t["detectable"]}
    assert {t[0] for t in expected} == set(RULES)  # the shock of one day is not judged: no baseline

    async def all_raised() -> bool:
        wanted = [alert_id(*key) for key in expected]
        return bool(await db.fetchval("SELECT count(*) FROM alerts WHERE id = ANY($1::text[])", wanted) == len(wanted))

    await wait_for(all_raised, timeout=20, interval=0.3)
    await asyncio.sleep(settings.rules.settle_seconds + 1.0)  # let any wrong finding appear too
    assert await _ours(db, sim, ids) == expected

    # The graph: every lot a fault involves exists and is resolved, and the missing upstream lot is not.
    lots = {t for entry in truth for t in entry.get("lots", [])}
    missing = {t for entry in truth for t in entry.get("unresolved", [])}
    rows = await db.fetch("SELECT code, status FROM lots WHERE code = ANY($1::text[])", sorted(lots | missing))
    status = {r["code"]: r["status"] for r in rows}
    assert set(status) == lots | missing
    assert {c for c, s in status.items() if s == "unresolved"} == missing
    # Every lot the simulation created exists (nothing was dropped on the way).
    created = {e["data"]["lot"] for e in sim.events if e["event_type"] in ("farm.pigs_dispatched", "produce.harvested")}
    assert await db.fetchval("SELECT count(*) FROM lots WHERE code = ANY($1::text[])", sorted(created)) == len(created)
