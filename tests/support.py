"""Helpers shared by the tests: event builders, waiting, operators and keys."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from trace_service.access import keys
from trace_service.contract import signing
from trace_service.settings import Settings

T = TypeVar("T")
Headers = list[tuple[str, bytes]]

SHANGHAI = "+08:00"


async def wait_for(predicate: Callable[[], Awaitable[T]], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with the last value after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: T | None = None
    while loop.time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def code(prefix: str = "", length: int = 12) -> str:
    """A random code in the operator/lot alphabet."""
    alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length - len(prefix)))


def now_iso(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def lot_tested_event(operator: str, *, lot: str | None = None, result: str = "pass", **over: Any) -> dict[str, Any]:
    """A small valid event (lot.tested)."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "lot.tested",
        "occurred_at": "2026-11-25T03:40:00+08:00",
        "operator": operator,
        "data": {
            "lot": lot or code("L", 16),
            "test": "pesticide_rapid",
            "method": "enzyme inhibition",
            "value": 12.5,
            "result": result,
        },
    }
    event.update(over)
    return event


def harvested_event(operator: str, **over: Any) -> dict[str, Any]:
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "produce.harvested",
        "occurred_at": "2026-11-25T05:10:00+08:00",
        "operator": operator,
        "data": {
            "lot": code("P", 16),
            "base_code": operator,
            "product_code": "VEG-CHOYSUM",
            "product_name": "菜心",
            "weight_kg": 1250.5,
            "compliance_cert_number": "HG-2026-000123",
            "origin_region": "442000",
            "harvested_at": "2026-11-25T04:30:00+08:00",
        },
    }
    event.update(over)
    return event


@dataclass(frozen=True)
class Integrator:
    key_id: str
    secret: str

    def sign(self, key: bytes, value: bytes) -> Headers:
        return signing.sign_headers(self.key_id, self.secret, key, value)


def api_headers(settings: Settings, key: bytes, value: bytes, actor: str = signing.STAFF_ACTOR) -> Headers:
    """The headers the API puts on a message it produced for ``actor`` (``staff`` or an operator code),
    signed with the test settings' API secret: for tests that stand in for the API on the topic."""
    master = keys.signing_master(settings.signing_secret.get_secret_value(), settings.key_pepper.get_secret_value())
    assert master is not None, "the test settings carry a key pepper"
    return signing.sign_headers(signing.API_KEY_ID, keys.api_signing_secret(master), key, value, actor=actor)


async def produce(settings: Settings, messages: list[tuple[bytes, bytes, Headers]], topic: str | None = None) -> None:
    """Produce (key, value, headers) straight to the events topic, as a direct producer does (acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic or settings.topic_events, value=v, key=k, headers=h) for k, v, h in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def as_api(
    settings: Settings, events: list[dict[str, Any]], actor: str = signing.STAFF_ACTOR
) -> list[tuple[bytes, bytes, Headers]]:
    """Events as messages keyed by operator and signed as the API signs them for ``actor``."""
    out = []
    for e in events:
        key, value = e["operator"].encode(), orjson.dumps(e)
        out.append((key, value, api_headers(settings, key, value, actor)))
    return out


class Actors:
    """Registers operators and issues keys through the API, as an administrator would."""

    def __init__(self, client: httpx.AsyncClient, admin_token: str) -> None:
        self.client = client
        self.admin = {"Authorization": f"Bearer {admin_token}"}

    async def operator(self, *, kind: str = "planting_base", parent: str | None = None, region: str = "442000") -> str:
        op = code("OP", 12)
        body: dict[str, Any] = {"code": op, "name": f"测试经营者 {op}", "kind": kind, "region": region}
        if parent:
            body["parent"] = parent
        r = await self.client.post("/v1/operators", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return op

    async def key(self, operator: str) -> dict[str, str]:
        r = await self.client.post(f"/v1/operators/{operator}/keys", json={"name": "test"}, headers=self.admin)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}

    async def operator_with_key(self, **kw: Any) -> tuple[str, dict[str, str]]:
        op = await self.operator(**kw)
        return op, await self.key(op)

    async def integrator(self, operators: list[str], name: str = "test integrator") -> Integrator:
        """Register a direct producer for ``operators`` (admin), with the secret it is shown once."""
        r = await self.client.post("/v1/integrators", json={"name": name, "operators": operators}, headers=self.admin)
        assert r.status_code == 201, r.text
        return Integrator(r.json()["key_id"], r.json()["secret"])

    async def staff_key(self, role: str = "regulator") -> dict[str, str]:
        r = await self.client.post("/v1/keys", json={"role": role, "name": f"test {role}"}, headers=self.admin)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}


async def register_operators(client: httpx.AsyncClient, admin: dict[str, str], operators: list[dict[str, Any]]) -> None:
    """Register a scenario's operators, parents before their tenants."""
    pending = list(operators)
    done: set[str] = set()
    while pending:
        ready = [op for op in pending if not op.get("parent") or op["parent"] in done]
        assert ready, f"operators with unknown parents: {pending}"
        for op in ready:
            r = await client.post("/v1/operators", json=op, headers=admin)
            assert r.status_code in (201, 409), r.text
            done.add(op["code"])
            pending.remove(op)


# The market monitor's figures and its claims of a day's sweeps are city-wide and shared by every test of a
# session: a test that judges days takes a Wednesday of its own, ten weeks from any other test's, handed out
# in turn from a random start (random Wednesdays of two tests met now and then).
_WEEK_SLOTS = itertools.count(secrets.randbelow(120))


def a_wednesday() -> date:
    """A Wednesday years back (2000 on) with four weeks of history before it and five after it that no other
    test of this session uses."""
    return date(2000, 1, 5) + timedelta(weeks=5 + 10 * (next(_WEEK_SLOTS) % 120))


async def post_events(
    client: httpx.AsyncClient, headers: dict[str, str], events: list[dict[str, Any]], *, wait: bool = True
) -> httpx.Response:
    r = await client.post(f"/v1/events?wait={'true' if wait else 'false'}", json=events, headers=headers)
    assert r.status_code in (200, 202), r.text
    if wait:
        body = r.json()
        assert body["complete"], body
        assert {e["status"] for e in body["events"]} == {"applied"}, body
    return r


def scenario_tag() -> str:
    return code("", 4)
