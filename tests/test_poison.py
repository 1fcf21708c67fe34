"""Poison events: nothing the store cannot keep gets past validation, and nothing stops the worker.

At the API every item of the corpus is a 422 naming its field, with nothing accepted. A message that passes
validation and still fails in the database (here a trigger of this test refuses one marked product, as a
constraint or a bug would) is found by splitting its batch: it becomes an ``unapplicable`` dead letter with
the database's reason, every other event of the batch is applied, and the worker goes on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.support import Actors, harvested_event, lot_tested_event, produce, wait_for
from trace_service.settings import Settings

NUL = "\u0000"


def _with(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copy = orjson.loads(orjson.dumps(event))
    *parents, last = path.split(".")
    node = copy
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[last] = value
    return copy


def corpus(op: str) -> list[tuple[str, dict[str, Any] | bytes, str]]:
    """(what, event or raw body, the field the 422 must name)."""
    harvest = harvested_event(op)
    test = lot_tested_event(op)
    dispatch = {
        "event_id": str(uuid.uuid4()),
        "event_type": "farm.pigs_dispatched",
        "occurred_at": "2026-11-25T03:00:00+08:00",
        "operator": op,
        "data": {
            "lot": "FARMLOT00000042",
            "farm_code": "4420000001",
            "quarantine_cert": {"number": "QC-0001", "kind": "B", "issued_at": "2026-11-25T02:00:00+08:00",
                                "head_count": 1},
            "head_count": 1,
            "ear_tags": ["144200000000001"],
            "destination": op,
            "vehicle_plate": "粤T12345",
            "origin_region": "442000",
        },
    }  # fmt: skip
    # JSON allows the escape of a lone surrogate; Postgres cannot store it.
    raw_surrogate = json.dumps(_with(harvest, "data.product_name", "菜\ud800心")).encode()
    raw_nan = orjson.dumps(test).replace(b'"value":12.5', b'"value":NaN')
    raw_inf = orjson.dumps(test).replace(b'"value":12.5', b'"value":1e400')
    assert raw_nan != orjson.dumps(test)
    return [
        ("NUL in a product name", _with(harvest, "data.product_name", f"菜{NUL}心"), "data.product_name"),
        ("NUL in a test method", _with(test, "data.method", NUL), "data.method"),
        ("NUL in a plate", _with(dispatch, "data.vehicle_plate", f"粤T{NUL}1"), "data.vehicle_plate"),
        ("year 1 with +14:00", _with(test, "occurred_at", "0001-01-01T00:00:00+14:00"), "occurred_at"),
        ("year 9999 certificate", _with(dispatch, "data.quarantine_cert.issued_at", "9999-12-31T23:59:59-14:00"),
         "data.quarantine_cert.issued_at"),
        ("before 1970", _with(harvest, "data.harvested_at", "1969-12-31T23:59:59+00:00"), "data.harvested_at"),
        ("unix seconds as a string", _with(harvest, "data.harvested_at", "1700000000"), "data.harvested_at"),
        ("unix seconds as a number", _with(harvest, "occurred_at", 1700000000), "occurred_at"),
        ("a lone surrogate", raw_surrogate, "data.product_name"),
        ("NaN", raw_nan, "data.value"),
        ("infinity", raw_inf, "data.value"),
    ]  # fmt: skip


async def test_the_api_refuses_each_poison_with_its_field(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    op, key = await actors.operator_with_key()
    for what, item, field in corpus(op):
        body = item if isinstance(item, bytes) else orjson.dumps(item)
        r = await client.post("/v1/events", content=body, headers={**key, "content-type": "application/json"})
        assert r.status_code == 422, (what, r.text)
        fields = [d.get("field") for d in r.json()["error"]["details"]]
        assert field in fields, (what, fields)
    # A hold whose reason holds a NUL: regulators are validated like everyone.
    regulator = await actors.staff_key()
    hold = {
        **lot_tested_event(op),
        "event_type": "regulator.lot_held",
        "data": {"lot": "LOT00000001", "reason": f"复检{NUL}", "scope": "lot"},
    }
    r = await client.post("/v1/events", json=hold, headers=regulator)
    assert r.status_code == 422, r.text
    # The worker is unharmed: the next event is applied.
    r = await client.post("/v1/events?wait=true", json=harvested_event(op), headers=key)
    assert r.status_code == 200, r.text
    assert r.json()["events"][0]["status"] == "applied"


@pytest.fixture
async def refusing_trigger(db: asyncpg.Connection) -> AsyncIterator[str]:
    """A trigger that refuses lots of one product, standing for any non-transient database failure."""
    marker = "POISON-" + uuid.uuid4().hex[:8]
    name = marker.replace("-", "_").lower()
    await db.execute(
        f"""
        CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.product_code = '{marker}' THEN
                RAISE EXCEPTION 'lots of product % are refused by this test', NEW.product_code
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON lots FOR EACH ROW EXECUTE FUNCTION {name}();
        """
    )
    try:
        yield marker
    finally:
        await db.execute(f"DROP TRIGGER {name} ON lots; DROP FUNCTION {name}();")


async def test_a_message_the_database_refuses_is_split_out_and_the_rest_applied(
    client: httpx.AsyncClient, actors: Actors, worker: None, refusing_trigger: str
) -> None:
    op, key = await actors.operator_with_key()
    good = [harvested_event(op) for _ in range(40)]
    bad = [_with(harvested_event(op), "data.product_code", refusing_trigger) for _ in range(2)]
    batch = [*good[:20], bad[0], *good[20:], bad[1]]
    r = await client.post("/v1/events", json=batch, headers=key)
    assert r.status_code == 202, r.text

    async def settled() -> list[dict[str, Any]] | None:
        bodies = [(await client.get(f"/v1/events/{e['event_id']}", headers=key)).json() for e in batch]
        return bodies if all(b["status"] != "accepted" for b in bodies) else None

    statuses = {b["event_id"]: b for b in await wait_for(settled, timeout=30)}
    assert {statuses[e["event_id"]]["status"] for e in good} == {"applied"}
    for e in bad:
        body = statuses[e["event_id"]]
        assert (body["status"], body["reason"]) == ("rejected", "unapplicable")
        assert "refused by this test" in body["message"]
    # The worker goes on: a later event is applied as usual.
    r = await client.post("/v1/events?wait=true", json=harvested_event(op), headers=key)
    assert r.json()["events"][0]["status"] == "applied", r.text


async def test_poison_produced_straight_to_kafka_is_dead_lettered_and_the_rest_applied(
    client: httpx.AsyncClient, actors: Actors, worker: None, settings: Settings, db: asyncpg.Connection
) -> None:
    """The Kafka path: an integrator's signed stream with the whole corpus in it. Each poison is an
    invalid_event dead letter naming its field, the valid events around it are applied, the worker goes on."""
    op, key = await actors.operator_with_key()
    integrator = await actors.integrator([op])
    good = [harvested_event(op) for _ in range(10)]
    poisons = [item for _, item, _ in corpus(op)]
    values = [orjson.dumps(e) for e in good[:5]] + [
        p if isinstance(p, bytes) else orjson.dumps(p) for p in poisons
    ] + [orjson.dumps(e) for e in good[5:]]  # fmt: skip
    await produce(settings, [(op.encode(), v, integrator.sign(op.encode(), v)) for v in values])

    async def all_in() -> int | None:
        applied = await db.fetchval(
            "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", [uuid.UUID(e["event_id"]) for e in good]
        )
        return applied if applied == len(good) else None

    await wait_for(all_in, timeout=30)
    regulator = await actors.staff_key()

    async def dead_fields() -> list[str] | None:
        r = await client.get("/v1/dead-letters?error_code=invalid_event&limit=500", headers=regulator)
        mine = [d for d in r.json()["items"] if d["topic"] == settings.topic_events]
        if len(mine) < len(poisons):
            return None
        return [f.get("field") for d in mine for f in d["details"]]

    fields = await wait_for(dead_fields, timeout=30)
    for what, _, field in corpus(op):
        assert field in fields, (what, fields)
    r = await client.post("/v1/events?wait=true", json=harvested_event(op), headers=key)
    assert r.json()["events"][0]["status"] == "applied", r.text


async def test_an_integrator_cannot_change_another_operators_lot(
    client: httpx.AsyncClient, actors: Actors, worker: None, settings: Settings
) -> None:
    """Ownership on the Kafka path: the integrator reports for A; B's lot is out of its reach whatever the
    arrival order, and the refusal is a not_holder dead letter."""
    a = await actors.operator()
    b, b_key = await actors.operator_with_key()
    integrator = await actors.integrator([a])
    harvest = harvested_event(b)
    lot = harvest["data"]["lot"]
    assert (await client.post("/v1/events?wait=true", json=harvest, headers=b_key)).status_code == 200
    failing = lot_tested_event(a, lot=lot, result="fail")
    value = orjson.dumps(failing)
    await produce(settings, [(a.encode(), value, integrator.sign(a.encode(), value))])
    regulator = await actors.staff_key()

    async def refused() -> dict[str, Any] | None:
        r = await client.get(f"/v1/events/{failing['event_id']}", headers=regulator)
        if r.status_code == 404:  # produced straight to Kafka: unknown until the worker has read it
            return None
        body: dict[str, Any] = r.json()
        return body if body["status"] == "rejected" else None

    assert (await wait_for(refused))["reason"] == "not_holder"
    lot_now = (await client.get(f"/v1/lots/{lot}", headers=b_key)).json()
    assert (lot_now["status"], lot_now["facts"]) == ("active", [])
