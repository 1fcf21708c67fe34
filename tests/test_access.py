"""Operators and keys: registration, reading, suspension, issuing and revoking keys, and who may do which."""

from __future__ import annotations

import asyncpg
import httpx

from tests.support import Actors, code, lot_tested_event


async def test_register_and_read_operator(client: httpx.AsyncClient, actors: Actors) -> None:
    op = code("RG", 12)
    body = {"code": op, "name": "中山市东升农产品批发市场", "kind": "wholesale_market", "region": "442000"}
    r = await client.post("/v1/operators", json=body, headers=actors.admin)
    assert r.status_code == 201
    assert r.json()["status"] == "active"
    assert (await client.post("/v1/operators", json=body, headers=actors.admin)).status_code == 409

    r = await client.get(f"/v1/operators/{op}", headers=actors.admin)
    assert r.status_code == 200
    assert r.json()["name"] == body["name"]
    assert (await client.get(f"/v1/operators/{code('NO', 12)}", headers=actors.admin)).status_code == 404


async def test_operator_validation(client: httpx.AsyncClient, actors: Actors) -> None:
    good = {"code": code("VA", 12), "name": "x", "kind": "farm", "region": "442000"}
    cases = [
        ({**good, "code": "lower"}, "code"),
        ({**good, "region": "992000"}, "region"),  # 99 is no province
        ({**good, "kind": "spaceport"}, "kind"),
        ({**good, "parent": code("NO", 12)}, "parent"),
        ({**good, "surprise": 1}, "surprise"),
        ({**good, "credit_code": "123"}, "credit_code"),
    ]
    for body, field in cases:
        r = await client.post("/v1/operators", json=body, headers=actors.admin)
        assert r.status_code == 422, (body, r.text)
        assert any(d["field"].endswith(field) for d in r.json()["error"]["details"]), r.json()


async def test_roles(client: httpx.AsyncClient, actors: Actors) -> None:
    op, op_key = await actors.operator_with_key(kind="wholesale_market")
    child = await actors.operator(kind="wholesaler", parent=op)
    regulator = await actors.staff_key("regulator")
    body = {"code": code("RL", 12), "name": "x", "kind": "farm", "region": "440100"}

    # Operators cannot register operators or issue keys.
    assert (await client.post("/v1/operators", json=body, headers=op_key)).status_code == 403
    assert (await client.post(f"/v1/operators/{op}/keys", json={}, headers=op_key)).status_code == 403
    assert (await client.post("/v1/keys", json={"role": "admin", "name": "x"}, headers=op_key)).status_code == 403
    # They see themselves and their tenants, nobody else (not even whether a code exists).
    assert (await client.get(f"/v1/operators/{op}", headers=op_key)).status_code == 200
    assert (await client.get(f"/v1/operators/{child}", headers=op_key)).status_code == 200
    other = await actors.operator()
    assert (await client.get(f"/v1/operators/{other}", headers=op_key)).status_code == 403
    assert (await client.get(f"/v1/operators/{code('NO', 12)}", headers=op_key)).status_code == 403

    # Regulators register operators and issue operator keys, but not staff keys.
    assert (await client.post("/v1/operators", json=body, headers=regulator)).status_code == 201
    r = await client.post(f"/v1/operators/{body['code']}/keys", json={"name": "pos"}, headers=regulator)
    assert r.status_code == 201
    assert r.json()["role"] == "operator"
    assert (
        await client.post("/v1/keys", json={"role": "regulator", "name": "x"}, headers=regulator)
    ).status_code == 403
    assert (
        await client.post("/v1/keys", json={"role": "operator", "name": "x"}, headers=actors.admin)
    ).status_code == 422


async def test_keys_are_shown_once_stored_hashed_and_revocable(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection
) -> None:
    op = await actors.operator()
    r = await client.post(f"/v1/operators/{op}/keys", json={"name": "label scale"}, headers=actors.admin)
    issued = r.json()
    secret = issued["key"]
    assert secret.startswith("trk.")
    assert issued["key_id"] in secret
    row = await db.fetchrow("SELECT * FROM api_keys WHERE key_id = $1", issued["key_id"])
    assert secret.encode() not in bytes(row["secret_hash"])
    assert secret.split(".")[2] not in str(dict(row))
    key = {"Authorization": f"Bearer {secret}"}
    assert (await client.post("/v1/events", json=lot_tested_event(op), headers=key)).status_code == 202

    admin2 = await actors.staff_key("admin")
    r = await client.delete(f"/v1/keys/{issued['key_id']}", headers=admin2)
    assert r.status_code == 204
    assert (await client.post("/v1/events", json=lot_tested_event(op), headers=key)).status_code == 401
    assert (await client.delete("/v1/keys/nosuchkey", headers=admin2)).status_code == 404


async def test_errors_have_the_contract_body(client: httpx.AsyncClient, actors: Actors) -> None:
    for method, path in (("GET", "/v1/nothing"), ("PUT", "/v1/events"), ("GET", "/v1/events/not-a-uuid")):
        r = await client.request(method, path, headers=actors.admin)
        assert r.status_code in (404, 405, 422), (path, r.status_code)
        assert set(r.json()["error"]) == {"code", "message", "details"}
    r = await client.post(
        "/v1/operators", content=b"{oops", headers={**actors.admin, "content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
