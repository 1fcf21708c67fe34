"""Posting events: 202 after the broker acked, applied by the worker, status and waiting."""

from __future__ import annotations

import httpx

from tests.support import Actors, harvested_event, lot_tested_event


async def test_one_event_is_accepted_then_applied(client: httpx.AsyncClient, actors: Actors, worker: None, db) -> None:
    op, key = await actors.operator_with_key()
    event = harvested_event(op)
    r = await client.post("/v1/events", json=event, headers=key)
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": [event["event_id"]]}

    r = await client.post("/v1/events?wait=true", json=lot_tested_event(op), headers=key)
    assert r.status_code == 200, r.text
    assert r.json()["events"][0]["status"] == "applied"

    r = await client.get(f"/v1/events/{event['event_id']}", headers=key)
    assert r.status_code == 200
    assert r.json()["status"] == "applied"
    row = await db.fetchrow(
        "SELECT event_type, operator, source, envelope FROM events WHERE event_id = $1",
        __import__("uuid").UUID(event["event_id"]),
    )
    assert row["event_type"] == "produce.harvested"
    assert row["operator"] == op
    assert row["source"] == "api"
