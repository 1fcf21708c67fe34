"""Authenticated producers (contract section 8): integrators registered by an admin, the signature every
message on the events topic carries, and what the worker does with messages that are unsigned, forged or
not the sender's to send. Real broker, real worker, real Postgres."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import api_client, make_settings, running_worker
from tests.support import (
    Actors,
    Headers,
    api_headers,
    code,
    harvested_event,
    post_events,
    produce,
    wait_for,
)
from trace_service.contract import signing
from trace_service.contract.events import build_catalogue
from trace_service.db.engine import create_engine
from trace_service.settings import Settings
from trace_service.worker import authn
from trace_service.worker.decode import Position, decode
from trace_service.worker.service import Record, apply_batch

# -- helpers ---------------------------------------------------------------------------------------------


def _message(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return event["operator"].encode(), orjson.dumps(event)


async def _stored(db: asyncpg.Connection, event_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("SELECT source, envelope FROM events WHERE event_id = $1", uuid.UUID(event_id))


async def _dead(db: asyncpg.Connection, settings: Settings, event_id: str) -> list[asyncpg.Record]:
    """The dead letters of the events topic that name this id, as a status source or as a mere claim."""
    return list(
        await db.fetch(
            """SELECT error_code, error_message, event_id, operator, details FROM dead_letters
               WHERE topic = $1 AND (event_id = $2 OR details @> $3::jsonb) ORDER BY kafka_offset""",
            settings.topic_events,
            uuid.UUID(event_id),
            orjson.dumps([{"claimed_event_id": event_id}]).decode(),
        )
    )


async def _one_dead(db: asyncpg.Connection, settings: Settings, event_id: str) -> asyncpg.Record:
    async def found() -> list[asyncpg.Record]:
        return await _dead(db, settings, event_id)

    rows = await wait_for(found, timeout=20)
    assert len(rows) == 1, rows
    return rows[0]


async def _applied(db: asyncpg.Connection, event_id: str) -> asyncpg.Record:
    async def found() -> asyncpg.Record | None:
        return await _stored(db, event_id)

    return await wait_for(found, timeout=20)


# -- the scheme, pure ---------------------------------------------------------------------------------------


def test_the_scheme_binds_key_id_key_actor_and_value_and_refuses_malformed_claims() -> None:
    headers = signing.sign_headers("int-abc", "secret", b"OP0001", b"{}", actor="staff")
    claim = signing.read_claim(headers)
    assert isinstance(claim, signing.Claim)
    assert signing.verify("secret", claim, b"OP0001", b"{}")
    assert not signing.verify("other", claim, b"OP0001", b"{}")
    assert not signing.verify("secret", claim, b"OP0002", b"{}")
    assert not signing.verify("secret", claim, b"OP0001", b"{ }")
    for name, value in (("trace-actor", b"OP0001"), ("trace-key-id", b"int-abd")):
        changed = signing.read_claim([(n, value if n == name else v) for n, v in headers])
        assert isinstance(changed, signing.Claim)
        assert not signing.verify("secret", changed, b"OP0001", b"{}")

    sig = dict(headers)["trace-signature"]
    refused = {
        "unsigned": [],
        "no key id": [("trace-signature", sig)],
        "twice": [*headers, ("trace-key-id", b"int-abc")],
        "other version": [("trace-key-id", b"int-abc"), ("trace-signature", b"v2=" + sig[3:])],
        "not base64": [("trace-key-id", b"int-abc"), ("trace-signature", b"v1=???")],
        "short": [("trace-key-id", b"int-abc"), ("trace-signature", b"v1=AAAA")],
        "not ascii": [("trace-key-id", "int-é".encode()), ("trace-signature", sig)],
    }
    for case, given in refused.items():
        assert isinstance(signing.read_claim(given), str), case
    with pytest.raises(signing.SigningError):
        signing.sign_headers("int-abc", "secret", b"OP\n0001", b"{}")  # a newline would make fields ambiguous


# -- registration -----------------------------------------------------------------------------------------


async def test_admins_register_read_change_and_revoke_integrators(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection
) -> None:
    market = await actors.operator(kind="wholesale_market")
    other = await actors.operator()
    r = await client.post(
        "/v1/integrators", json={"name": "市场信息系统", "operators": [market, market]}, headers=actors.admin
    )
    assert r.status_code == 201, r.text
    body = r.json()
    key_id, secret = body["key_id"], body["secret"]
    assert (body["name"], body["operators"], body["status"]) == ("市场信息系统", [market], "active")
    assert key_id != signing.API_KEY_ID
    assert len(secret) >= 43

    # The secret is shown once: reads never carry it, and the database holds only a salt.
    regulator = await actors.staff_key("regulator")
    r = await client.get(f"/v1/integrators/{key_id}", headers=regulator)
    assert r.status_code == 200
    assert "secret" not in r.json()
    assert r.json()["operators"] == [market]
    listed = (await client.get("/v1/integrators", headers=regulator)).json()["items"]
    assert key_id in [i["key_id"] for i in listed]
    assert all("secret" not in i for i in listed)
    row = await db.fetchrow("SELECT * FROM integrators WHERE key_id = $1", key_id)
    assert row is not None
    stored = b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    assert secret.encode() not in stored
    assert base64.urlsafe_b64decode(secret + "=") not in stored

    # Only admins register, change and revoke; every operator must be registered.
    _, operator_key = await actors.operator_with_key()
    for headers in (regulator, operator_key):
        r = await client.post("/v1/integrators", json={"name": "x", "operators": [market]}, headers=headers)
        assert r.status_code == 403, r.text
        assert (await client.patch(f"/v1/integrators/{key_id}", json={"name": "y"}, headers=headers)).status_code == 403
        assert (await client.delete(f"/v1/integrators/{key_id}", headers=headers)).status_code == 403
    assert (await client.get(f"/v1/integrators/{key_id}", headers=operator_key)).status_code == 403
    unknown = code("NO", 12)
    r = await client.post("/v1/integrators", json={"name": "x", "operators": [market, unknown]}, headers=actors.admin)
    assert r.status_code == 422
    assert r.json()["error"]["details"] == [{"field": "operators", "message": f"unknown operator {unknown}"}]
    for bad in ({"name": "x", "operators": []}, {"name": "x"}, {"name": "x", "operators": [market], "role": "admin"}):
        assert (await client.post("/v1/integrators", json=bad, headers=actors.admin)).status_code == 422, bad
    assert (await client.get("/v1/integrators/int-nosuchkey00", headers=actors.admin)).status_code == 404

    r = await client.patch(f"/v1/integrators/{key_id}", json={"operators": [market, other]}, headers=actors.admin)
    assert r.status_code == 200
    assert r.json()["operators"] == [market, other]
    r = await client.patch(f"/v1/integrators/{key_id}", json={"operators": [unknown]}, headers=actors.admin)
    assert r.status_code == 422

    assert (await client.delete(f"/v1/integrators/{key_id}", headers=actors.admin)).status_code == 204
    r = await client.get(f"/v1/integrators/{key_id}", headers=actors.admin)
    assert r.json()["status"] == "revoked"
    assert r.json()["revoked_at"] is not None
    assert (await client.delete(f"/v1/integrators/{key_id}", headers=actors.admin)).status_code == 204
    r = await client.patch(f"/v1/integrators/{key_id}", json={"name": "again"}, headers=actors.admin)
    assert r.status_code == 409


async def test_the_api_refuses_to_start_without_a_signing_secret(database_url: str, broker_bootstrap: str) -> None:
    unsigned = make_settings(database_url, broker_bootstrap, key_pepper="", signing_secret="")
    with pytest.raises(RuntimeError, match="TRACE_SIGNING_SECRET"):
        async with api_client(unsigned):
            pass
    # With a signing secret of its own and no pepper it starts: the pepper is only the fallback.
    own = make_settings(database_url, broker_bootstrap, key_pepper="", signing_secret="s" * 32)
    async with api_client(own) as c:
        assert (await c.get("/healthz")).status_code == 200


# -- the worker -----------------------------------------------------------------------------------------


async def test_unsigned_forged_and_tampered_messages_are_unauthenticated(
    settings: Settings, worker: None, db: asyncpg.Connection, actors: Actors
) -> None:
    op = await actors.operator()
    integrator = await actors.integrator([op])
    events = [harvested_event(op) for _ in range(7)]
    wrong = hmac.new(b"not the secret", b"anything", hashlib.sha256).digest()
    cases: list[tuple[str, Headers]] = []

    def case(event: dict[str, Any], headers: Headers, key: bytes | None = None, value: bytes | None = None) -> None:
        k, v = _message(event)
        cases.append((event["event_id"], headers))
        messages.append((key or k, value or v, headers))

    messages: list[tuple[bytes, bytes, Headers]] = []
    case(events[0], [])  # unsigned
    case(events[1], [("trace-source", b"api")])  # the old mark of the API, forged
    case(
        events[2],
        [("trace-key-id", b"api"), ("trace-actor", b"staff"), ("trace-signature", b"v1=" + base64.b64encode(wrong))],
    )
    k, v = _message(events[3])
    tampered = orjson.dumps({**events[3], "data": {**events[3]["data"], "weight_kg": 9999.0}})
    case(events[3], api_headers(settings, k, v), value=tampered)  # a valid API signature of other bytes
    k, v = _message(events[4])
    case(events[4], api_headers(settings, k, v), key=b"SOMEONEELSE1")  # ... or of another key
    k, v = _message(events[5])
    case(events[5], signing.sign_headers(integrator.key_id, "a guessed secret", k, v))
    k, v = _message(events[6])
    case(events[6], signing.sign_headers("int-nosuchkey00", integrator.secret, k, v))
    await produce(settings, messages)

    for event_id, _ in cases:
        row = await _one_dead(db, settings, event_id)
        assert row["error_code"] == "unauthenticated", row
        # The claimed id and operator are shown to regulators but serve no status.
        assert (row["event_id"], row["operator"]) == (None, None)
        detail = orjson.loads(row["details"])[0]
        assert detail["claimed_event_id"] == event_id
        assert detail["claimed_operator"] == op
        assert await _stored(db, event_id) is None
    reasons = [(await _dead(db, settings, e))[0]["error_message"] for e, _ in cases]
    assert "not signed" in reasons[0]
    assert "not signed" in reasons[1]
    assert all("does not match" in r for r in reasons[2:6]), reasons
    assert reasons[6] == "no integrator int-nosuchkey00"

    # The same messages are on the dead-letter topic, byte for byte, with their headers and the reason.
    consumer = AIOKafkaConsumer(
        settings.topic_dlq, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[Any] = []
    try:
        while len(got) < len(messages):
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    assert {m.value for m in got} == {v for _, v, _ in messages}
    assert {dict(m.headers)["error-code"] for m in got} == {b"unauthenticated"}


async def test_an_integrator_reports_for_its_operators_and_their_tenants_only(
    settings: Settings, worker: None, db: asyncpg.Connection, actors: Actors, client: httpx.AsyncClient
) -> None:
    market = await actors.operator(kind="wholesale_market")
    stall = await actors.operator(kind="wholesaler", parent=market)
    suspended = await actors.operator(kind="wholesaler", parent=market)
    outsider = await actors.operator()
    integrator = await actors.integrator([market])
    assert (
        await client.patch(f"/v1/operators/{suspended}", json={"status": "suspended"}, headers=actors.admin)
    ).status_code == 200

    own, tenant, outside, for_suspended = (harvested_event(o) for o in (market, stall, outsider, suspended))
    hold = {
        "event_id": str(uuid.uuid4()),
        "event_type": "regulator.lot_held",
        "occurred_at": "2026-11-25T09:00:00+08:00",
        "operator": market,
        "data": {"lot": own["data"]["lot"], "reason": "抽检", "scope": "lot"},
    }
    events = [own, tenant, outside, for_suspended, hold]
    messages = []
    for e in events:
        k, v = _message(e)
        messages.append((k, v, integrator.sign(k, v)))
    await produce(settings, messages)

    assert (await _applied(db, own["event_id"]))["source"] == "kafka"
    assert (await _applied(db, tenant["event_id"]))["source"] == "kafka"  # a tenant of its market

    row = await _one_dead(db, settings, outside["event_id"])
    assert row["error_code"] == "forbidden"
    assert outsider in row["error_message"]
    assert integrator.key_id in row["error_message"]
    assert row["event_id"] is None  # not the sender's operator: its claimed id serves no status
    row = await _one_dead(db, settings, hold["event_id"])
    assert (row["error_code"], row["error_message"]) == ("forbidden", "only regulators send regulator.lot_held")
    row = await _one_dead(db, settings, for_suspended["event_id"])
    assert (row["error_code"], row["error_message"]) == ("forbidden", f"operator {suspended} is suspended")
    assert row["event_id"] == uuid.UUID(for_suspended["event_id"])  # its own operator's event: status "rejected"
    for e in (outside, hold, for_suspended):
        assert await _stored(db, e["event_id"]) is None

    # The API's mark is authorized the same way, for the actor it names (the market's key here).
    by_api, not_for_api = harvested_event(stall), harvested_event(outsider)
    await produce(
        settings,
        [(k, v, api_headers(settings, k, v, actor=market)) for k, v in map(_message, (by_api, not_for_api))],
    )
    assert (await _applied(db, by_api["event_id"]))["source"] == "api"
    row = await _one_dead(db, settings, not_for_api["event_id"])
    assert (row["error_code"], row["event_id"]) == ("forbidden", None)

    # An admin adds the outsider to its operators: the next message for it is applied.
    r = await client.patch(
        f"/v1/integrators/{integrator.key_id}", json={"operators": [market, outsider]}, headers=actors.admin
    )
    assert r.status_code == 200
    later = harvested_event(outsider)
    k, v = _message(later)
    await produce(settings, [(k, v, integrator.sign(k, v))])
    await _applied(db, later["event_id"])


async def test_a_revoked_integrator_is_unauthenticated(
    settings: Settings, worker: None, db: asyncpg.Connection, actors: Actors, client: httpx.AsyncClient
) -> None:
    op = await actors.operator()
    integrator = await actors.integrator([op])
    before = harvested_event(op)
    k, v = _message(before)
    await produce(settings, [(k, v, integrator.sign(k, v))])
    await _applied(db, before["event_id"])

    assert (await client.delete(f"/v1/integrators/{integrator.key_id}", headers=actors.admin)).status_code == 204
    after = harvested_event(op)
    k, v = _message(after)
    await produce(settings, [(k, v, integrator.sign(k, v))])
    row = await _one_dead(db, settings, after["event_id"])
    assert (row["error_code"], row["error_message"]) == (
        "unauthenticated",
        f"integrator {integrator.key_id} is revoked",
    )
    assert row["event_id"] is None
    assert await _stored(db, after["event_id"]) is None


async def test_source_is_api_only_for_what_the_api_produced(
    settings: Settings, worker: None, db: asyncpg.Connection, actors: Actors, client: httpx.AsyncClient
) -> None:
    op, key = await actors.operator_with_key()
    integrator = await actors.integrator([op])
    through_api = harvested_event(op)
    await post_events(client, key, [through_api])
    assert (await _applied(db, through_api["event_id"]))["source"] == "api"

    # What the API produced, read back off the topic: signed with key id api for the key's operator.
    consumer = AIOKafkaConsumer(
        settings.topic_events, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        found: list[Any] = []
        while not found:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                found += [m for m in msgs if orjson.loads(m.value)["event_id"] == through_api["event_id"]]
    finally:
        await consumer.stop()
    headers = dict(found[0].headers)
    assert (headers["trace-key-id"], headers["trace-actor"]) == (b"api", op.encode())
    assert headers["trace-signature"].startswith(b"v1=")

    direct = harvested_event(op)
    k, v = _message(direct)
    # An integrator's own "trace-source: api" header is covered by nothing and changes nothing.
    await produce(settings, [(k, v, [("trace-source", b"api"), *integrator.sign(k, v)])])
    assert (await _applied(db, direct["event_id"]))["source"] == "kafka"


async def test_a_forged_copy_of_a_pending_event_does_not_change_its_status(
    settings: Settings, worker: None, db: asyncpg.Connection, actors: Actors
) -> None:
    """The event is accepted by an API whose messages the worker has not read yet (they sit in another topic),
    so it is pending when forged copies of its id arrive; afterwards the real message is applied."""
    elsewhere = settings.model_copy(update={"topic_events": settings.topic_events + ".held"})
    async with api_client(elsewhere) as api:
        other_actors = Actors(api, actors.admin["Authorization"].removeprefix("Bearer "))
        op, key = await other_actors.operator_with_key()
        event = harvested_event(op)
        r = await api.post("/v1/events", json=event, headers=key)
        assert r.status_code == 202, r.text
        status = await api.get(f"/v1/events/{event['event_id']}", headers=key)
        assert status.json()["status"] == "accepted"

        # Unsigned, with the old mark of the API, and with a made-up signature of the API: one batch each
        # (two different copies of an id in one batch are the case of the last test below).
        forgeries: list[Headers] = [
            [],
            [("trace-source", b"api")],
            [("trace-key-id", b"api"), ("trace-actor", op.encode()), ("trace-signature", b"v1=" + b"A" * 44)],
        ]
        for n, headers in enumerate(forgeries, start=1):
            forged = {**event, "data": {**event["data"], "weight_kg": float(n)}}
            k, v = _message(forged)
            await produce(settings, [(k, v, headers)])

            async def dead_letters(n: int = n) -> bool:
                return len(await _dead(db, settings, event["event_id"])) == n

            await wait_for(dead_letters, timeout=20)
        assert {r["error_code"] for r in await _dead(db, settings, event["event_id"])} == {"unauthenticated"}
        status = await api.get(f"/v1/events/{event['event_id']}", headers=key)
        assert status.json()["status"] == "accepted", status.json()

        # The API's own message, copied into the worker's topic as it is (the topic is not signed), applies.
        consumer = AIOKafkaConsumer(
            elsewhere.topic_events, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            held: list[Any] = []
            while not held:
                for msgs in (await consumer.getmany(timeout_ms=500)).values():
                    held += msgs
        finally:
            await consumer.stop()
        await produce(settings, [(m.key, m.value, list(m.headers)) for m in held])
        stored = await _applied(db, event["event_id"])
        assert (stored["source"], orjson.loads(stored["envelope"])["data"]["weight_kg"]) == ("api", 1250.5)
        status = await api.get(f"/v1/events/{event['event_id']}", headers=key)
        assert status.json()["status"] == "applied"


async def test_a_third_party_client_signs_with_the_standard_library_alone(
    settings: Settings, worker: None, db: asyncpg.Connection, actors: Actors
) -> None:
    """The scheme as docs/api.md states it, written out with hmac, hashlib and base64, as any language would."""
    op = await actors.operator()
    integrator = await actors.integrator([op])
    event = harvested_event(op)
    key = op.encode()
    value = orjson.dumps(event)

    canonical = b"\n".join([b"v1", integrator.key_id.encode(), key, b"", hashlib.sha256(value).hexdigest().encode()])
    mac = hmac.new(integrator.secret.encode("ascii"), canonical, hashlib.sha256).digest()
    headers = [("trace-key-id", integrator.key_id.encode()), ("trace-signature", b"v1=" + base64.b64encode(mac))]
    assert headers == signing.sign_headers(integrator.key_id, integrator.secret, key, value)

    await produce(settings, [(key, value, headers)])
    assert (await _applied(db, event["event_id"]))["source"] == "kafka"


async def test_a_worker_without_a_signing_secret_applies_nothing(
    database_url: str, broker_bootstrap: str, db: asyncpg.Connection
) -> None:
    """It cannot tell the API's messages from forgeries, so every message is a dead letter that says why."""
    settings = make_settings(database_url, broker_bootstrap)
    event = harvested_event(code("NS", 12))
    k, v = _message(event)
    await produce(settings, [(k, v, api_headers(settings, k, v))])
    async with running_worker(
        settings.model_copy(update={"key_pepper": SecretStr(""), "signing_secret": SecretStr("")})
    ):
        row = await _one_dead(db, settings, event["event_id"])
    assert row["error_code"] == "unauthenticated"
    assert "TRACE_SIGNING_SECRET" in row["error_message"]
    assert await _stored(db, event["event_id"]) is None


# -- the seams of the worker's batch, on Postgres -------------------------------------------------------------


@pytest.fixture
async def engine(settings: Settings) -> Any:
    e = create_engine(settings, pool_size=2)
    try:
        yield e
    finally:
        await e.dispose()


async def test_invalid_copies_keep_a_status_only_when_signed_by_their_sender(
    settings: Settings, engine: AsyncEngine, actors: Actors
) -> None:
    """authn.vouch_for_dead: an invalid message's salvaged event_id serves its status only when the message is
    signed by a sender that may speak for its operator."""
    op = await actors.operator()
    outsider = await actors.operator()
    integrator = await actors.integrator([op])
    catalogue = build_catalogue(settings.codes)
    invalid = [{**harvested_event(o), "event_type": "lot.teleported"} for o in (op, op, op, outsider)]
    values = [orjson.dumps(e) for e in invalid]
    headers: list[Headers] = [
        integrator.sign(op.encode(), values[0]),  # signed by its sender: keeps the id
        [],  # unsigned
        integrator.sign(op.encode(), b"other bytes"),  # a signature of something else
        integrator.sign(outsider.encode(), values[3]),  # signed, but not the sender's operator
    ]
    dead = [
        decode(
            catalogue, Position("t", 0, i), e["operator"].encode(), v, h, now=datetime.now(UTC), future_skew_seconds=300
        )
        for i, (e, v, h) in enumerate(zip(invalid, values, headers, strict=True))
    ]
    async with engine.connect() as conn:
        vouched = await authn.vouch_for_dead(conn, dead, settings)  # type: ignore[arg-type]  # all Dead
    assert [d.code for d in vouched] == ["invalid_event"] * 4
    assert vouched[0].event_id == uuid.UUID(invalid[0]["event_id"])
    assert vouched[0].operator == op
    for d, e in zip(vouched[1:], invalid[1:], strict=True):
        assert (d.event_id, d.operator) == (None, None)
        assert d.details[-1]["claimed_event_id"] == e["event_id"]


async def test_a_forged_copy_ahead_of_the_real_message_in_one_batch_does_not_displace_it(
    settings: Settings, engine: AsyncEngine, db: asyncpg.Connection, actors: Actors
) -> None:
    op = await actors.operator()
    event = harvested_event(op)
    records = []
    for offset, weight in enumerate((1.0, 2.0)):  # two different forged copies, ahead of the real message
        fk, fv = _message({**event, "data": {**event["data"], "weight_kg": weight}})
        records.append(Record(settings.topic_events, 0, offset, fk, fv, ()))
    k, v = _message(event)
    records.append(Record(settings.topic_events, 0, 2, k, v, tuple(api_headers(settings, k, v, op))))
    outcome = await apply_batch(
        engine, build_catalogue(settings.codes), records, future_skew_seconds=300, settings=settings
    )
    assert [(d.code, d.event_id) for d in outcome.dead] == [("unauthenticated", None)] * 2
    stored = await _stored(db, event["event_id"])
    assert stored is not None
    assert orjson.loads(stored["envelope"])["data"]["weight_kg"] == 1250.5
