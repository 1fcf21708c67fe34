"""The live alert stream over real HTTP, and the alert topic after a worker crash."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer

from tests.conftest import ADMIN_TOKEN
from tests.support import Actors, post_events, register_operators, scenario_tag, wait_for
from trace_service.alerts.models import alert_id
from trace_service.api.app import create_app
from trace_service.chain import scenarios
from trace_service.runtime.embedded import find_free_port
from trace_service.settings import Settings


@contextlib.asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[str]:
    """The API on a real socket (SSE needs a streaming transport)."""
    port = find_free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_stream_delivers_new_alerts_live(settings: Settings, worker: None) -> None:
    async with served(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        actors = Actors(client, ADMIN_TOKEN)
        regulator = await actors.staff_key("regulator")
        received: list[dict] = []
        connected = asyncio.Event()

        async def listen() -> None:
            async with client.stream("GET", "/v1/alerts/stream", headers=regulator) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                connected.set()
                event = None
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "alert":
                        received.append(orjson.loads(line[6:]))

        listener = asyncio.create_task(listen())
        await asyncio.wait_for(connected.wait(), 10)
        sc = scenarios.instantiate(scenarios.load("faults/origin_outside_zone"), scenario_tag())
        await register_operators(client, actors.admin, sc["operators"])
        await post_events(client, actors.admin, sc["events"])
        batch = sc["mapping"]["SLBATCH0001"]

        async def arrived() -> list[dict]:
            return [a for a in received if a["subject"]["code"] == batch]

        [alert] = await wait_for(arrived, timeout=15)
        assert alert["rule"] == "origin_outside_zone"
        assert alert["status"] == "open"

        # A change is streamed too.
        await client.post(f"/v1/alerts/{alert['id']}/acknowledge", json={"note": "收到"}, headers=regulator)

        async def acknowledged() -> bool:
            return any(a["id"] == alert["id"] and a["status"] == "acknowledged" for a in received)

        await wait_for(acknowledged, timeout=15)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        operator_key = await actors.key((await actors.operator_with_key())[0])
        assert (await client.get("/v1/alerts/stream", headers=operator_key)).status_code == 403


def _worker_env(settings: Settings) -> dict[str, str]:
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
            "TRACE_WORKER_MAX_RECORDS": "5",
            "TRACE_RULE_SETTLE_SECONDS": "1",
            "TRACE_RULE_TICK_SECONDS": "0.2",
            "TRACE_LOG_LEVEL": "warning",
        }
    )
    return env


async def test_alert_topic_carries_every_alert_after_a_worker_crash(
    settings: Settings, client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection
) -> None:
    replays = []
    for name in ("faults/yield_out_of_range", "faults/origin_outside_zone", "faults/asf_not_released"):
        sc = scenarios.instantiate(scenarios.load(name), scenario_tag())
        await register_operators(client, actors.admin, sc["operators"])
        for event in sc["events"]:
            assert (await client.post("/v1/events", json=event, headers=actors.admin)).status_code == 202
        replays.append(sc)
    ids = [uuid.UUID(e["event_id"]) for sc in replays for e in sc["events"]]

    first = subprocess.Popen([sys.executable, "-m", "trace_service.cli", "worker"], env=_worker_env(settings))
    try:
        await wait_for(
            lambda: db.fetchval("SELECT count(*) > 0 FROM events WHERE event_id = ANY($1::uuid[])", ids), timeout=30
        )
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    second = subprocess.Popen([sys.executable, "-m", "trace_service.cli", "worker"], env=_worker_env(settings))
    try:
        await wait_for(
            lambda: db.fetchval("SELECT count(*) = $2 FROM events WHERE event_id = ANY($1::uuid[])", ids, len(ids)),
            timeout=60,
        )
        # Every stored alert version gets published, once the rules and the relay have caught up.
        expected = [alert_id(sc["expect"]["alert"]["rule"], "lot", sc["mapping"]["SLBATCH0001"]) for sc in replays]
        await wait_for(
            lambda: db.fetchval(
                """SELECT count(DISTINCT alert_id) = $2 AND count(*) FILTER (WHERE published_at IS NULL) = 0
                   FROM alert_outbox WHERE alert_id = ANY($1::text[])""",
                expected,
                len(expected),
            ),
            timeout=30,
        )
        rows = await db.fetch("SELECT alert_id, version FROM alert_outbox WHERE alert_id = ANY($1::text[])", expected)
        stored = {(r["alert_id"], r["version"]) for r in rows}
        consumer = AIOKafkaConsumer(
            settings.topic_alerts, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        seen: set[tuple[str, int]] = set()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while not stored <= seen:
                        for msgs in (await consumer.getmany(timeout_ms=300)).values():
                            for m in msgs:
                                body = orjson.loads(m.value)
                                assert m.key.decode() == body["id"]
                                if body["id"] in expected:
                                    seen.add((body["id"], body["version"]))
        finally:
            await consumer.stop()
        # Exactly once in effect: each stored version appears, and nothing that was not stored.
        assert seen == stored
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
