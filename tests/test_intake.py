"""POST /v1/events and GET /v1/events/{id}: the intake contract, against the real broker and Postgres."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import httpx
import orjson
import pytest

from tests.support import Actors, harvested_event, lot_tested_event, now_iso


def _error(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "details"} <= set(body["error"]), body
    assert "Traceback" not in r.text
    return body["error"]


async def _stored(db: asyncpg.Connection, *ids: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
    )


async def test_one_event_is_accepted_then_applied(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    r = await client.post("/v1/events", json=event, headers=key)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [event["event_id"]]}

    r = await client.post("/v1/events?wait=true", json=harvested_event(op), headers=key)
    assert r.status_code == 200, r.text
    assert r.json()["complete"] is True
    assert r.json()["events"][0]["status"] == "applied"

    r = await client.get(f"/v1/events/{event['event_id']}", headers=key)
    assert r.status_code == 200
    assert r.json()["status"] == "applied"
    row = await db.fetchrow(
        "SELECT event_type, operator, source, envelope, occurred_at FROM events WHERE event_id = $1",
        uuid.UUID(event["event_id"]),
    )
    assert row["event_type"] == "produce.harvested"
    assert row["operator"] == op
    assert row["source"] == "api"
    assert orjson.loads(row["envelope"])["data"]["product_name"] == "菜心"


async def test_batch_is_accepted_and_applied(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key()
    batch = [harvested_event(op) for _ in range(250)]
    r = await client.post("/v1/events?wait=true", json=batch, headers=key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == [e["event_id"] for e in batch]
    assert {e["status"] for e in body["events"]} == {"applied"}
    assert await _stored(db, *(e["event_id"] for e in batch)) == 250


async def test_status_is_accepted_before_the_worker_runs(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    assert (await client.post("/v1/events", json=event, headers=key)).status_code == 202
    r = await client.get(f"/v1/events/{event['event_id']}", headers=key)
    assert r.json()["status"] == "accepted"
    r = await client.get(f"/v1/events/{uuid.uuid4()}", headers=key)
    assert r.status_code == 404
    assert _error(r)["code"] == "not_found"


async def test_same_event_twice_is_stored_once_and_other_content_conflicts(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    assert (await client.post("/v1/events?wait=true", json=event, headers=key)).status_code == 200
    # Same content, other spelling: other key order and whitespace.
    respelled = orjson.dumps(dict(reversed(list(event.items()))), option=orjson.OPT_INDENT_2)
    r = await client.post(
        "/v1/events?wait=true", content=respelled, headers={**key, "content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert await _stored(db, event["event_id"]) == 1

    changed = {**event, "data": {**event["data"], "weight_kg": 999.0}}
    r = await client.post("/v1/events", json=changed, headers=key)
    assert r.status_code == 409
    err = _error(r)
    assert err["code"] == "conflict"
    assert err["details"][0]["event_id"] == event["event_id"]


async def test_conflict_with_an_event_still_in_flight(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    assert (await client.post("/v1/events", json=event, headers=key)).status_code == 202
    changed = {**event, "occurred_at": "2026-11-25T03:41:00+08:00"}
    assert (await client.post("/v1/events", json=changed, headers=key)).status_code == 409


async def test_same_id_twice_in_one_batch(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    r = await client.post("/v1/events", json=[event, event], headers=key)
    assert r.status_code == 202
    assert r.json()["accepted"] == [event["event_id"]]
    other = {**event, "data": {**event["data"], "weight_kg": 80.0}}
    r = await client.post("/v1/events", json=[event, other], headers=key)
    assert r.status_code == 409
    assert _error(r)["details"][0]["index"] == 1


def _bad_items(op: str) -> list[tuple[str, dict, str, str]]:
    base = lot_tested_event(op)
    return [
        ("unknown field", {**base, "colour": "red"}, "colour", "extra_forbidden"),
        ("unknown data field", {**base, "data": {**base["data"], "lott": "X"}}, "data.lott", "extra_forbidden"),
        ("naive time", {**base, "occurred_at": "2026-11-25T03:40:00"}, "occurred_at", "timezone_aware"),
        ("future", {**base, "occurred_at": now_iso(timedelta(minutes=10))}, "occurred_at", "in_future"),
        ("bad uuid", {**base, "event_id": "not-a-uuid"}, "event_id", "uuid_parsing"),
        ("unknown type", {**base, "event_type": "farm.pigs_flew"}, "event_type", "unknown_event_type"),
        (
            "missing data field",
            {**base, "data": {k: v for k, v in base["data"].items() if k != "lot"}},
            "data.lot",
            "missing",
        ),
        (
            "bad lot code",
            {**base, "data": {**base["data"], "lot": "lower-case"}},
            "data.lot",
            "string_pattern_mismatch",
        ),
        ("bad enum", {**base, "data": {**base["data"], "result": "maybe"}}, "data.result", "literal_error"),
        ("string for number", {**base, "data": {**base["data"], "value": "12"}}, "data.value", "float_type"),
    ]


@pytest.mark.parametrize("case", range(10), ids=[c[0] for c in _bad_items("X00000")])
async def test_invalid_event_is_422_with_field(client: httpx.AsyncClient, actors: Actors, case: int) -> None:
    op, key = await actors.operator_with_key()
    _, event, field, kind = _bad_items(op)[case]
    r = await client.post("/v1/events", json=event, headers=key)
    assert r.status_code == 422, r.text
    err = _error(r)
    assert err["code"] == "invalid"
    assert any(d["field"] == field and d["type"] == kind for d in err["details"]), err


async def test_batch_with_one_bad_item_accepts_nothing(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    op, key = await actors.operator_with_key()
    batch = [harvested_event(op) for _ in range(5)]
    batch[3]["data"]["weight"] = 1
    r = await client.post("/v1/events", json=batch, headers=key)
    assert r.status_code == 422
    details = _error(r)["details"]
    assert details == [
        {"index": 3, "field": "data.weight", "type": "extra_forbidden", "message": details[0]["message"]}
    ]
    # A later good event of the same operator is applied, and none of the refused batch ever is.
    assert (await client.post("/v1/events?wait=true", json=harvested_event(op), headers=key)).status_code == 200
    assert await _stored(db, *(e["event_id"] for e in batch)) == 0
    r = await client.get(f"/v1/events/{batch[0]['event_id']}", headers=key)
    assert r.status_code == 404


async def test_malformed_json_is_400(client: httpx.AsyncClient, actors: Actors) -> None:
    _, key = await actors.operator_with_key()
    for body in (b'{"event_id": ', b"[1, 2", b"\xff\xfe", b""):
        r = await client.post("/v1/events", content=body, headers={**key, "content-type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert _error(r)["code"] == "malformed_json"


async def test_batch_size_limits(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    r = await client.post("/v1/events", json=[], headers=key)
    assert r.status_code == 422
    r = await client.post("/v1/events", json=[harvested_event(op) for _ in range(1001)], headers=key)
    assert r.status_code == 422
    assert "1000" in _error(r)["message"]
    r = await client.post("/v1/events", json=[1, "x"], headers=key)
    assert r.status_code == 422
    assert [d["index"] for d in _error(r)["details"]] == [0, 1]


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient, actors: Actors) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    event["data"]["method"] = "x" * (6 * 1024 * 1024)
    r = await client.post("/v1/events", json=event, headers=key)
    assert r.status_code == 413
    assert _error(r)["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(7):
            yield b" " * (1024 * 1024)

    r = await client.post("/v1/events", content=chunks(), headers={**key, "content-type": "application/json"})
    assert r.status_code == 413


async def test_authentication_and_ownership(client: httpx.AsyncClient, actors: Actors) -> None:
    market, market_key = await actors.operator_with_key(kind="wholesale_market")
    tenant = await actors.operator(kind="wholesaler", parent=market)
    stall = await actors.operator(kind="wholesaler", parent=market)  # a second tenant
    stranger, stranger_key = await actors.operator_with_key(kind="retail_market")

    event = harvested_event(market)
    r = await client.post("/v1/events", json=event)
    assert r.status_code == 401
    assert _error(r)["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    for bad in (
        "Bearer nonsense",
        "Bearer trk.aaaaaaaaaaaa." + "x" * 43,
        "Basic abc",
        f"Bearer {market_key['Authorization'][7:-1]}",
    ):
        r = await client.post("/v1/events", json=event, headers={"Authorization": bad})
        assert r.status_code == 401, bad

    # A market reports for itself and its tenant wholesalers.
    for op in (market, tenant, stall):
        r = await client.post("/v1/events", json=harvested_event(op), headers=market_key)
        assert r.status_code == 202, r.text
    # ... but not for another operator, and not for its parent from the tenant's side.
    r = await client.post("/v1/events", json=[harvested_event(market), harvested_event(stranger)], headers=market_key)
    assert r.status_code == 403
    assert _error(r)["details"][0]["index"] == 1
    r = await client.post("/v1/events", json=harvested_event(market), headers=stranger_key)
    assert r.status_code == 403

    # Operators may not read each other's events.
    mine = harvested_event(market)
    assert (await client.post("/v1/events", json=mine, headers=market_key)).status_code == 202
    assert (await client.get(f"/v1/events/{mine['event_id']}", headers=stranger_key)).status_code == 404
    assert (await client.get(f"/v1/events/{mine['event_id']}", headers=market_key)).status_code == 200
    regulator = await actors.staff_key("regulator")
    assert (await client.get(f"/v1/events/{mine['event_id']}", headers=regulator)).status_code == 200

    # Holds are the regulators' to post.
    hold = {
        **harvested_event(market),
        "event_type": "regulator.lot_held",
        "data": {"lot": "LOT00000001", "reason": "复检", "scope": "downstream"},
    }
    assert (await client.post("/v1/events", json=hold, headers=market_key)).status_code == 403
    assert (await client.post("/v1/events", json=hold, headers=regulator)).status_code == 202


async def test_suspended_operator_is_refused(client: httpx.AsyncClient, actors: Actors) -> None:
    market, key = await actors.operator_with_key(kind="wholesale_market")
    tenant = await actors.operator(kind="wholesaler", parent=market)
    r = await client.patch(f"/v1/operators/{tenant}", json={"status": "suspended"}, headers=actors.admin)
    assert r.status_code == 200
    assert r.json()["status"] == "suspended"
    r = await client.post("/v1/events", json=harvested_event(tenant), headers=key)
    assert r.status_code == 403
    assert "suspended" in _error(r)["details"][0]["message"]

    r = await client.patch(f"/v1/operators/{market}", json={"status": "suspended"}, headers=actors.admin)
    r = await client.post("/v1/events", json=harvested_event(market), headers=key)
    assert r.status_code == 403
    assert _error(r)["code"] == "operator_suspended"


async def test_metrics_count_accepted_and_refused(client: httpx.AsyncClient, actors: Actors) -> None:
    def value(text: str, name: str) -> float:
        for line in text.splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    op, key = await actors.operator_with_key()
    before = (await client.get("/metrics")).text
    await client.post("/v1/events", json=[harvested_event(op) for _ in range(3)], headers=key)
    await client.post("/v1/events", content=b"{", headers={**key, "content-type": "application/json"})
    after = (await client.get("/metrics")).text
    assert value(after, "trace_events_accepted_total") - value(before, "trace_events_accepted_total") == 3
    refused = 'trace_event_requests_refused_total{code="malformed_json"}'
    assert value(after, refused) - value(before, refused) == 1
