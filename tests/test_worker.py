"""The worker on the Kafka path: direct producers, dead letters, crashes and consumer groups."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from tests.support import Actors, as_api, code, harvested_event, lot_tested_event, produce, wait_for
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine
from trace_service.settings import Settings
from trace_service.worker.main import Worker


async def _count(db: asyncpg.Connection, ids: list[str]) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
    )


async def _read_topic(settings: Settings, topic: str, expected: int) -> list:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list = []
    try:
        async with asyncio.timeout(20):
            while len(got) < expected:
                batch = await consumer.getmany(timeout_ms=200)
                for msgs in batch.values():
                    got.extend(msgs)
    finally:
        await consumer.stop()
    return got


async def test_direct_producers_bad_messages_go_to_dead_letters(
    settings: Settings, worker: None, db: asyncpg.Connection, client: httpx.AsyncClient, actors: Actors
) -> None:
    op = await actors.operator()
    integrator = await actors.integrator([op])  # a third-party system, signing what it produces
    # Creating events: they apply whatever else the stream holds (a lot.tested would wait for its lot).
    first = harvested_event(op)
    conflicting = {**first, "data": {**first["data"], "weight_kg": 1.5}}
    after = harvested_event(op)
    messages = [
        b"\xff\xfenot json at all",
        orjson.dumps({**lot_tested_event(op), "event_type": "lot.teleported"}),
        orjson.dumps(first),
        orjson.dumps(conflicting),
        orjson.dumps(first),  # an identical repeat: a no-op, not a dead letter
        orjson.dumps(after),
    ]
    key = op.encode()
    await produce(settings, [(key, m, integrator.sign(key, m)) for m in messages])

    await wait_for(lambda: _count(db, [first["event_id"], after["event_id"]]), timeout=20)
    assert await _count(db, [first["event_id"], after["event_id"]]) == 2
    stored = await db.fetchval(
        "SELECT envelope->'data'->>'weight_kg' FROM events WHERE event_id = $1", uuid.UUID(first["event_id"])
    )
    assert stored == "1250.5"  # the first version won; the conflicting one did not overwrite it
    source = await db.fetchval("SELECT source FROM events WHERE event_id = $1", uuid.UUID(after["event_id"]))
    assert source == "kafka"

    rows = await db.fetch(
        "SELECT error_code, raw, event_id, kafka_offset FROM dead_letters WHERE topic = $1 ORDER BY kafka_offset",
        settings.topic_events,
    )
    assert [r["error_code"] for r in rows] == ["malformed_json", "invalid_event", "conflicting_duplicate"]
    assert bytes(rows[0]["raw"]) == messages[0]  # kept byte for byte
    assert bytes(rows[2]["raw"]) == messages[3]
    assert rows[2]["event_id"] == uuid.UUID(first["event_id"])

    dlq = await _read_topic(settings, settings.topic_dlq, 3)
    assert sorted(dict(m.headers)["error-code"] for m in dlq) == [
        b"conflicting_duplicate",
        b"invalid_event",
        b"malformed_json",
    ]
    assert {m.value for m in dlq} == {messages[0], messages[1], messages[3]}
    assert all(dict(m.headers)["error-message"] for m in dlq)

    # Regulators see them through the API; the rejected event's status says why.
    regulator = await actors.staff_key("regulator")
    r = await client.get("/v1/dead-letters?limit=500", headers=regulator)
    assert r.status_code == 200
    mine = [d for d in r.json()["items"] if d["topic"] == settings.topic_events]
    assert [d["error_code"] for d in mine] == ["conflicting_duplicate", "invalid_event", "malformed_json"]
    assert mine[2]["raw_encoding"] == "base64"  # not UTF-8: shown losslessly
    assert mine[1]["details"][0]["field"] == "event_type"
    assert orjson.loads(mine[0]["raw"])["data"]["weight_kg"] == 1.5
    invalid_id = orjson.loads(messages[1])["event_id"]
    r = await client.get(f"/v1/events/{invalid_id}", headers=regulator)
    assert r.json()["status"] == "rejected"
    assert r.json()["reason"] == "invalid_event"
    r = await client.get(f"/v1/events/{first['event_id']}", headers=regulator)
    assert r.json()["status"] == "applied"  # the conflicting copy does not change the original's status
    _, operator_key = await actors.operator_with_key()
    assert (await client.get("/v1/dead-letters", headers=operator_key)).status_code == 403


async def test_two_workers_in_one_group_apply_each_event_once(settings: Settings, db: asyncpg.Connection) -> None:
    catalogue = build_catalogue()
    stop = asyncio.Event()
    engines = [create_engine(settings, pool_size=2) for _ in range(2)]
    workers = [Worker(settings, e, catalogue) for e in engines]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        await wait_for(lambda: asyncio.sleep(0, all(w.assignment() for w in workers)), timeout=20)
        # Keys spread the events over the partitions: with 8 random keys all of them landed in one worker's
        # half of the partitions now and then (2 x 2^-8); with 32 that is 2 x 2^-32.
        ops = [code("GR", 12) for _ in range(32)]
        events = [harvested_event(ops[i % 32]) for i in range(2000)]
        await produce(settings, as_api(settings, events))  # as the API produces them for a regulator
        ids = [e["event_id"] for e in events]
        await wait_for(lambda: asyncio.sleep(0, sum(w.applied for w in workers) >= 2000), timeout=30)
        assert await _count(db, ids) == 2000
        assert sum(w.applied for w in workers) == 2000
        assert all(w.applied > 0 for w in workers), [w.applied for w in workers]
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for e in engines:
            await e.dispose()


def _spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACE_")}
    env.update(
        {
            "TRACE_DATABASE_URL": settings.database_url,
            "TRACE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRACE_TOPIC_EVENTS": settings.topic_events,
            "TRACE_TOPIC_DLQ": settings.topic_dlq,
            "TRACE_TOPIC_ALERTS": settings.topic_alerts,
            "TRACE_CONSUMER_GROUP": settings.consumer_group,
            "TRACE_KEY_PEPPER": settings.key_pepper.get_secret_value(),  # the API's: its signing secret derives from it
            "TRACE_WORKER_SESSION_TIMEOUT_MS": "2000",
            "TRACE_WORKER_HEARTBEAT_INTERVAL_MS": "500",
            "TRACE_WORKER_MAX_RECORDS": "100",
            "TRACE_LOG_LEVEL": "warning",
        }
    )
    return subprocess.Popen([sys.executable, "-m", "trace_service.cli", "worker"], env=env)


async def test_worker_killed_mid_stream_applies_every_event_once(settings: Settings, db: asyncpg.Connection) -> None:
    ops = [code("KL", 12) for _ in range(4)]
    events = [harvested_event(ops[i % 4]) for i in range(6000)]
    ids = [e["event_id"] for e in events]
    await produce(settings, as_api(settings, events))  # as the API produces them for a regulator

    first = _spawn_worker(settings)
    try:
        applied = await wait_for(lambda: _count(db, ids), timeout=30, interval=0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    partial = await _count(db, ids)
    assert 0 < applied <= partial < len(ids), "the kill must land in the middle of the stream"

    second = _spawn_worker(settings)
    try:
        await wait_for(lambda: _all_applied(db, ids), timeout=60)
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0  # SIGTERM: the batch in hand is finished and the worker exits cleanly
    finally:
        if second.poll() is None:
            second.kill()
    assert await _count(db, ids) == len(ids)
    conflicts = await db.fetchval("SELECT count(*) FROM dead_letters WHERE topic = $1", settings.topic_events)
    assert conflicts == 0


async def _all_applied(db: asyncpg.Connection, ids: list[str]) -> bool:
    return await _count(db, ids) == len(ids)
