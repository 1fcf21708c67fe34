"""Alerts: every integrity rule fires in its faulty scenario, in order and shuffled, and only there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from tests.support import Actors, as_api, produce, register_operators, scenario_tag, wait_for
from trace_service.alerts.models import alert_id
from trace_service.chain import scenarios
from trace_service.settings import Settings

FAULTS = sorted(p.stem for p in (scenarios.SCENARIOS / "faults").glob("*.json"))


LIMIT = asyncio.Semaphore(4)  # replays at once: enough to overlap, not enough to swamp two cores


async def _applied(db: asyncpg.Connection, ids: list[str]) -> bool:
    async with _DB_LOCK:
        n = await db.fetchval(
            "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
        )
    return n == len(ids)


_DB_LOCK = asyncio.Lock()  # one asyncpg connection serves every concurrent replay


async def _alerts_of(db: asyncpg.Connection, tag: str, ids: list[str]) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        """SELECT rule, subject_code, severity FROM alerts a
           WHERE a.subject_code LIKE '%' || $1  -- every code of a replay ends with its tag
              OR a.id IN (SELECT alert_id FROM alert_events WHERE event_id = ANY($2::uuid[]))
           ORDER BY rule, subject_code""",
        tag,
        [uuid.UUID(i) for i in ids],
    )
    return [(r["rule"], r["subject_code"], r["severity"]) for r in rows]


def _expected_subject(sc: dict[str, Any], subject: Any) -> str:
    m = sc["mapping"]
    if isinstance(subject, str):
        return m.get(subject, subject)
    if "event" in subject:
        return sc["events"][subject["event"]]["event_id"]
    return f"{m.get(subject['seller'], subject['seller'])}/{m.get(subject['voucher'], subject['voucher'])}"


async def _replay(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection, settings: Settings, name: str, seed: int | None
) -> tuple[dict[str, Any], str, list[str]]:
    async with LIMIT:
        return await _replay_one(client, actors, db, settings, name, seed)


async def _replay_one(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection, settings: Settings, name: str, seed: int | None
) -> tuple[dict[str, Any], str, list[str]]:
    tag = scenario_tag()
    sc = scenarios.instantiate(scenarios.load(name), tag)
    await register_operators(client, actors.admin, sc["operators"])
    events = list(sc["events"])
    if seed is not None:
        random.Random(seed).shuffle(events)
    for event in events:  # one request each: separate produces, so arrival order is the shuffled order
        r = await client.post("/v1/events", json=event, headers=actors.admin)
        assert r.status_code == 202, r.text
    ids = [e["event_id"] for e in events]
    conflict = sc.get("kafka_conflict")
    if conflict:
        copy = orjson.loads(orjson.dumps(sc["events"][conflict["event"]]))
        scenarios._path_set(copy, conflict["path"], conflict["value"])
        # Straight to the topic, signed as the API signs what it produces for the admin key the events came with.
        await produce(settings, as_api(settings, [copy]))
    await wait_for(lambda: _applied(db, ids), timeout=30)
    return sc, tag, ids


async def test_every_rule_fires_once_in_its_scenario_in_order_and_shuffled(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection, settings: Settings
) -> None:
    # One shuffled order per rule by default; TRACE_TEST_SHUFFLES=N tries N orders each (a soak).
    shuffles = int(os.environ.get("TRACE_TEST_SHUFFLES", "1"))
    runs = [
        (name, seed)
        for name in FAULTS
        for seed in (None, *(1000 * k + FAULTS.index(name) for k in range(1, shuffles + 1)))
    ]
    replays = await asyncio.gather(*(_replay(client, actors, db, settings, f"faults/{n}", s) for n, s in runs))

    async def expected_present() -> bool:
        for (sc, _, _), _run in zip(replays, runs, strict=True):
            want = sc["expect"]["alert"]
            aid = alert_id(want["rule"], want["subject_type"], _expected_subject(sc, want["subject"]))
            async with _DB_LOCK:
                if not await db.fetchval("SELECT count(*) FROM alerts WHERE id = $1", aid):
                    return False
        return True

    with contextlib.suppress(AssertionError):  # what is missing is reported below, scenario by scenario
        await wait_for(expected_present, timeout=40, interval=0.3)
    await asyncio.sleep(settings.rules.settle_seconds + 1.0)  # let any other (wrong) finding appear too

    problems = []
    for (sc, tag, ids), (name, seed) in zip(replays, runs, strict=True):
        want = sc["expect"]["alert"]
        expected = [(want["rule"], _expected_subject(sc, want["subject"]), want["severity"])]
        got = await _alerts_of(db, tag, ids)
        if got != expected:
            problems.append(f"{name} (shuffled={seed is not None}): expected {expected}, got {got}")
    assert problems == [], "\n".join(problems)


async def test_normal_chains_raise_nothing(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection, settings: Settings
) -> None:
    runs = [(n, s) for n in ("pig_chain", "produce_chain") for s in (None, 7, 8)]
    replays = await asyncio.gather(*(_replay(client, actors, db, settings, n, s) for n, s in runs))
    await asyncio.sleep(settings.rules.settle_seconds + 1.0)
    for (_, tag, ids), run in zip(replays, runs, strict=True):
        assert await _alerts_of(db, tag, ids) == [], run
