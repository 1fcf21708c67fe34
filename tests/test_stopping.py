"""Stopping: a positive ASF result after the meat reached a stall stops everything made from the batch."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from tests.support import Actors, post_events, register_operators, scenario_tag, wait_for
from trace_service.alerts.models import alert_id
from trace_service.chain import scenarios


def _event(event_type: str, operator: str, at: str, data: dict) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": at,
        "operator": operator,
        "data": data,
    }


async def test_asf_positive_downstream_stop_trade_and_release(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    m = sc["mapping"]
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    regulator = await actors.staff_key("regulator")

    async def status(code: str) -> str:
        return (await client.get(f"/v1/lots/{m[code]}", headers=regulator)).json()["status"]

    assert await status("STALLLOT0001") == "active"
    # A confirmatory PCR comes back positive after the meat is already on the stall.
    positive = _event(
        "slaughter.asf_tested", m["442000100001"], "2026-11-25T09:00:00+08:00",
        {"lot": m["SLBATCH0001"], "method": "pcr", "result": "positive", "sampled_at": "2026-11-25T08:30:00+08:00"},
    )  # fmt: skip
    r = await client.post("/v1/events?wait=true", json=positive, headers=actors.admin)
    assert r.status_code == 200
    raised = r.json()["events"][0]["alerts"]
    assert [a["rule"] for a in raised] == ["asf_positive"]
    assert m["442000300105"] in raised[0]["evidence"]["downstream_holders"]

    for code in ("SLBATCH0001", "CARCASS0001", "CARCASS0002", "WHLOT0001", "STALLLOT0001"):
        assert await status(code) == "stopped", code
    assert await status("FARMLOT0001") == "exhausted"  # upstream is not touched

    recall = (await client.get(f"/v1/lots/{m['SLBATCH0001']}/recall", headers=regulator)).json()
    assert m["442000300105"] in {h["code"] for h in recall["holders"]}
    assert {lot["status"] for lot in recall["lots"] if lot["kind"] != "sale"} == {"stopped"}

    # The stall sells from the stopped lot anyway.
    sale = _event(
        "retail.sold", m["442000300105"], "2026-11-25T10:00:00+08:00",
        {"sale_code": f"SALE{uuid.uuid4().hex[:12].upper()}", "lot": m["STALLLOT0001"], "weight_kg": 0.5,
         "unit_price": 32.0},
    )  # fmt: skip
    r = await client.post("/v1/events?wait=true", json=sale, headers=actors.admin)
    assert [a["rule"] for a in r.json()["events"][0]["alerts"]] == ["stopped_lot_traded"]
    traded = alert_id("stopped_lot_traded", "lot", m["STALLLOT0001"])
    assert (await client.get(f"/v1/alerts/{traded}", headers=regulator)).json()["severity"] == "critical"

    # The consumer scanning an earlier receipt is warned.
    view = (await client.get(f"/v1/public/trace/{m['SALE2026112500001']}")).json()
    assert view["warning"] is not None
    assert view["checks"]["asf"] == "fail"

    # A regulator's release of the batch lifts the stop all the way down.
    release = _event(
        "regulator.lot_released", "442000900001", "2026-11-25T12:00:00+08:00",
        {"lot": m["SLBATCH0001"], "reason": "复检阴性，解除", "scope": "downstream"},
    )  # fmt: skip
    await post_events(client, regulator, [release])
    assert await status("STALLLOT0001") == "active"
    assert await status("CARCASS0002") == "active"
    assert await status("SLBATCH0001") == "exhausted"


async def test_acknowledge_and_resolve_are_recorded(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    sc = scenarios.instantiate(scenarios.load("faults/origin_outside_zone"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    regulator = await actors.staff_key("regulator")
    aid = alert_id("origin_outside_zone", "lot", sc["mapping"]["SLBATCH0001"])

    async def alert() -> dict:
        r = await client.get(f"/v1/alerts/{aid}", headers=regulator)
        return r.json() if r.status_code == 200 else {}

    first = await wait_for(alert)
    assert first["status"] == "open"
    assert first["severity"] == "critical"
    assert first["message"]["zh"]
    assert first["message"]["en"]
    assert first["subject"] == {"type": "lot", "code": sc["mapping"]["SLBATCH0001"]}

    listed = (await client.get("/v1/alerts?rule=origin_outside_zone&status=open&limit=500", headers=regulator)).json()
    assert aid in {a["id"] for a in listed["items"]}

    r = await client.post(f"/v1/alerts/{aid}/acknowledge", json={"note": "已通知屠宰厂停止进场"}, headers=regulator)
    assert r.status_code == 200
    acked = r.json()
    assert acked["status"] == "acknowledged"
    assert acked["acknowledged"]["note"] == "已通知屠宰厂停止进场"
    assert acked["acknowledged"]["by"]
    assert acked["acknowledged"]["at"]
    assert acked["version"] > first["version"]
    assert (await client.post(f"/v1/alerts/{aid}/acknowledge", json={}, headers=regulator)).status_code == 409

    r = await client.post(f"/v1/alerts/{aid}/resolve", json={"note": "批次已无害化处理"}, headers=regulator)
    assert r.json()["status"] == "resolved"
    assert r.json()["resolved"]["note"] == "批次已无害化处理"
    assert (await client.post(f"/v1/alerts/{aid}/resolve", json={}, headers=regulator)).status_code == 409

    # Replaying the same events finds the same alert; it is not duplicated nor re-opened.
    await post_events(client, actors.admin, sc["events"])
    assert (await alert())["status"] == "resolved"
    count = await db.fetchval("SELECT count(*) FROM alerts WHERE rule = 'origin_outside_zone' AND subject_code = $1",
                              sc["mapping"]["SLBATCH0001"])  # fmt: skip
    assert count == 1

    # Operators have no access to the queue; unknown ids and bad cursors are clear errors.
    _, op_key = await actors.operator_with_key()
    assert (await client.get("/v1/alerts", headers=op_key)).status_code == 403
    assert (await client.post(f"/v1/alerts/{aid}/resolve", json={}, headers=op_key)).status_code == 403
    assert (await client.get("/v1/alerts/al_000000000000000000000000", headers=regulator)).status_code == 404
    assert (await client.get("/v1/alerts?cursor=nonsense", headers=regulator)).status_code == 422


async def test_alert_list_pages_newest_first(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    for _ in range(3):
        sc = scenarios.instantiate(scenarios.load("faults/yield_out_of_range"), scenario_tag())
        await register_operators(client, actors.admin, sc["operators"])
        await post_events(client, actors.admin, sc["events"])
    regulator = await actors.staff_key("regulator")
    seen: list[dict] = []
    cursor = None
    for _ in range(20):
        url = "/v1/alerts?rule=yield_out_of_range&limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=regulator)).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) >= 3
    assert len({a["id"] for a in seen}) == len(seen)
    stamps = [a["created_at"] for a in seen]
    assert stamps == sorted(stamps, reverse=True)
