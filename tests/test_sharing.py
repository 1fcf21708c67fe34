"""Sharing with other departments (contract section 9): department keys and their scopes, personal data, the
shared stream and its pull feed, exports and the audit. Real Postgres, broker and worker."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.support import Actors, post_events, register_operators, scenario_tag
from trace_service.access import scopes as scope_rules
from trace_service.access.models import Principal, Role
from trace_service.access.scopes import Scopes, parse_scopes
from trace_service.chain import scenarios
from trace_service.contract import personal
from trace_service.db.engine import create_engine
from trace_service.errors import Forbidden
from trace_service.settings import Settings
from trace_service.sharing import repository as sharing_repo
from trace_service.sharing import service as sharing
from trace_service.web import session

OWNER_NAME = "李某某"
OWNER_CODE = "440000199001011234"
PLATE = "粤T12345"


# -- pure: scopes and personal data ------------------------------------------------------------------------


def test_scopes_parse_patterns_and_flags() -> None:
    s = parse_scopes(["slaughter.*", "lot.tested", "alerts", "lot.tested"])
    assert s.patterns == ("slaughter.*", "lot.tested")
    assert (s.alerts, s.market, s.personal) == (True, False, False)
    assert s.covers_event("slaughter.asf_tested")
    assert s.covers_event("lot.tested")
    assert not s.covers_event("farm.pigs_dispatched")
    assert s.event_types == {"slaughter.pigs_received", "slaughter.asf_tested", "slaughter.batch_slaughtered",
                             "lot.tested"}  # fmt: skip
    assert parse_scopes(["*"]).all_events
    assert Scopes.everything().all_events
    assert Scopes.everything().personal


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (["fram.*"], "matches no event type"),
        (["lot.tasted"], "matches no event type"),
        (["lot"], "not an event-type pattern"),
        (["farm.pigs_*"], "not an event-type pattern"),
        (["Alerts"], "not an event-type pattern"),
        ([], "at least one scope"),
    ],
)
def test_scopes_refuse_what_matches_nothing(values: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_scopes(values)


def test_scopes_of_each_role() -> None:
    assert Scopes.of(Principal(Role.REGULATOR, "k")) == Scopes.everything()
    assert Scopes.of(Principal(Role.ADMIN, "k")) == Scopes.everything()
    assert Scopes.of(Principal(Role.OPERATOR, "k", operator="OP0001")) == Scopes()
    dept = Principal(Role.DEPARTMENT, "k", scopes=("farm.*", "market", "gone.type"))
    # A stored scope the catalogue no longer knows grants nothing (and does not break the key).
    assert Scopes.of(dept) == Scopes(patterns=("farm.*",), market=True)


def test_redact_removes_the_personal_fields_and_says_which() -> None:
    envelope = {
        "event_id": str(uuid.uuid4()),
        "event_type": "slaughter.pigs_received",
        "data": {"lot": "SB0001", "owner": {"code": OWNER_CODE, "name": OWNER_NAME}, "vehicle_plate": PLATE,
                 "head_count": 3},
    }  # fmt: skip
    before = orjson.dumps(envelope)
    out = personal.redact(envelope)
    assert orjson.dumps(envelope) == before  # the input is left as it was
    assert out["data"] == {"lot": "SB0001", "owner": {}, "head_count": 3}
    assert out["redacted"] == ["data.owner.code", "data.owner.name", "data.vehicle_plate"]
    assert OWNER_NAME not in orjson.dumps(out).decode()
    # Absent or null fields are not listed; other types pass through untouched.
    none = {"event_type": "farm.pigs_dispatched", "data": {"lot": "F1", "vehicle_plate": None}}
    assert personal.redact(none) is none
    tested = {"event_type": "lot.tested", "data": {"lot": "L1"}}
    assert personal.redact(tested) is tested


def test_every_personal_path_names_a_field_of_its_event_type() -> None:
    from trace_service.contract.events import build_catalogue

    models = build_catalogue().data_models
    for event_type, paths in personal.PERSONAL_PATHS.items():
        for path in paths:
            model: Any = models[event_type]
            for part in path:
                assert part in model.model_fields, (event_type, path)
                annotation = model.model_fields[part].annotation
                model = next((a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")),
                             None)  # fmt: skip


def test_audience_narrows_scopes_never_widens_them() -> None:
    dept = parse_scopes(["lot.tested", "alerts"])
    f = sharing.Audience(dept).filter()
    assert f.kinds == ["alert", "event"]
    assert f.event_types == ["lot.tested"]
    # A subscription asking for more than its key's scopes gets the intersection.
    f = sharing.Audience(dept, kinds=frozenset({"event", "market"}), event_types=("lot.*", "farm.*")).filter()
    assert f.kinds == ["event"]
    assert f.event_types == ["lot.tested"]
    f = sharing.Audience(dept, event_types=("farm.*",)).filter()
    assert f.kinds == ["alert"]
    assert sharing.Audience(Scopes.everything()).filter().unrestricted
    assert not sharing.Audience(Scopes.everything(), regions=("4420",)).filter().unrestricted


def test_migration_locks_the_stream_with_the_code_constant() -> None:
    import importlib

    migration = importlib.import_module("trace_service.db.migrations.versions.0011_sharing_stream")
    assert migration.STREAM_LOCK == sharing_repo.STREAM_LOCK


# -- keys ----------------------------------------------------------------------------------------------


async def department(actors: Actors, scopes: list[str]) -> tuple[dict[str, str], str]:
    r = await actors.client.post(
        "/v1/keys", json={"role": "department", "name": "农业农村局", "scopes": scopes}, headers=actors.admin
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["role"] == "department"
    assert body["operator"] is None
    return {"Authorization": f"Bearer {body['key']}"}, body["key_id"]


async def test_department_keys_are_issued_by_admins_with_valid_scopes(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    r = await client.post(
        "/v1/keys", json={"role": "department", "name": "市场监管局", "scopes": ["lot.tested", "alerts", "alerts"]},
        headers=actors.admin,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["scopes"] == ["lot.tested", "alerts"]

    for scopes in (["fram.*"], ["everything"], []):
        r = await client.post("/v1/keys", json={"role": "department", "name": "x", "scopes": scopes},
                              headers=actors.admin)  # fmt: skip
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["field"] == "scopes"
    r = await client.post("/v1/keys", json={"role": "regulator", "name": "x", "scopes": ["farm.*"]},
                          headers=actors.admin)  # fmt: skip
    assert r.status_code == 422
    regulator = await actors.staff_key("regulator")
    r = await client.post("/v1/keys", json={"role": "department", "name": "x", "scopes": ["farm.*"]},
                          headers=regulator)  # fmt: skip
    assert r.status_code == 403


async def test_a_department_key_never_writes_nor_administers(
    client: httpx.AsyncClient, actors: Actors, settings: Settings
) -> None:
    """Every regulator and admin branch refuses a department, whatever its scopes."""
    dept, key_id = await department(actors, ["*", "alerts", "market", "personal"])
    op = await actors.operator()
    event = {"event_id": str(uuid.uuid4()), "event_type": "regulator.lot_held",
             "occurred_at": "2026-11-25T03:40:00+08:00", "operator": op,
             "data": {"lot": "LOTHELD00001", "reason": "test", "scope": "lot"}}  # fmt: skip
    refused = [
        ("POST", "/v1/events", event),
        ("POST", "/v1/operators", {"code": "DEPT000001", "name": "x", "kind": "farm", "region": "442000"}),
        ("PATCH", f"/v1/operators/{op}", {"status": "suspended"}),
        ("GET", f"/v1/operators/{op}", None),
        ("POST", f"/v1/operators/{op}/keys", {"name": "x"}),
        ("POST", "/v1/keys", {"role": "regulator", "name": "x"}),
        ("DELETE", f"/v1/keys/{key_id}", None),
        ("GET", "/v1/dead-letters", None),
        ("GET", "/v1/integrators", None),
        ("POST", "/v1/integrators", {"name": "x", "operators": [op]}),
        ("POST", "/v1/codes", {"count": 1}),
        ("POST", "/v1/alerts/al_000000000000000000000000/acknowledge", {"note": "x"}),
        ("POST", "/v1/alerts/al_000000000000000000000000/resolve", {"note": "x"}),
        ("GET", "/v1/lots/LOTHELD00001/recall", None),
        ("GET", "/v1/audit", None),
    ]
    for method, path, body in refused:
        r = await client.request(method, path, json=body, headers=dept)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] in ("forbidden", "not_regulator"), r.text
    # The key still works (nothing above revoked it), and the console refuses it.
    assert (await client.get("/v1/feed", headers=dept)).status_code == 200
    engine = create_engine(settings, pool_size=1, name="test-console")
    try:
        with pytest.raises(Forbidden):
            await session.authenticate_key(engine, settings, dept["Authorization"].removeprefix("Bearer "))
    finally:
        await engine.dispose()


async def test_scopes_gate_the_read_endpoints(client: httpx.AsyncClient, actors: Actors) -> None:
    flags_only, _ = await department(actors, ["alerts"])
    events_only, _ = await department(actors, ["lot.tested"])
    r = await client.get("/v1/lots/NOSUCHLOT0001", headers=flags_only)
    assert r.status_code == 403
    assert "event-type scope" in r.json()["error"]["message"]
    r = await client.get("/v1/lots/NOSUCHLOT0001/trace", headers=flags_only)
    assert r.status_code == 403
    assert (await client.get("/v1/lots/NOSUCHLOT0001", headers=events_only)).status_code == 404
    for path, scope in (("/v1/alerts", "alerts"), ("/v1/alerts/stream", "alerts"), ("/v1/monitor/supply", "market")):
        r = await client.get(path, headers=events_only)
        assert r.status_code == 403, (path, r.text)
        assert f"`{scope}`" in r.json()["error"]["message"]
    assert (await client.get("/v1/alerts?limit=1", headers=flags_only)).status_code == 200
    assert (
        await client.get("/v1/exports/events?from=2026-11-25T00:00:00%2B08:00", headers=flags_only)
    ).status_code == 403
    operator = await actors.key(await actors.operator())
    for path in ("/v1/feed", "/v1/exports/events?from=2026-11-25T00:00:00%2B08:00"):
        assert (await client.get(path, headers=operator)).status_code == 403


# -- the stream, end to end ---------------------------------------------------------------------------------


async def replay(client: httpx.AsyncClient, actors: Actors, name: str = "pig_chain") -> dict[str, Any]:
    """A scenario replayed through the API and the worker, with a pig owner's code and plates added."""
    sc = scenarios.instantiate(scenarios.load(name), scenario_tag())
    for ev in sc["events"]:
        if ev["event_type"] == "slaughter.pigs_received":
            ev["data"]["owner"] = {"code": OWNER_CODE, "name": OWNER_NAME}
            ev["data"]["vehicle_plate"] = PLATE
        if ev["event_type"] == "farm.pigs_dispatched":
            ev["data"]["vehicle_plate"] = PLATE
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    return sc


async def read_feed(client: httpx.AsyncClient, headers: dict[str, str], after: int, limit: int = 1000) -> tuple[
    list[dict[str, Any]], int
]:  # fmt: skip
    """Everything on the feed after ``after``, the way a department's loop reads it."""
    items: list[dict[str, Any]] = []
    while True:
        r = await client.get(f"/v1/feed?after={after}&limit={limit}", headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["next"] >= after
        assert all(after < i["seq"] <= page["next"] for i in page["items"])
        items += page["items"]
        if page["next"] == after:
            return items, after
        after = page["next"]


def events_with_seq(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i["kind"] == "event"]


async def stream_head(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT COALESCE(max(seq), 0) FROM shared_items"))


async def test_a_lot_tested_department_sees_no_farm_events_and_no_names(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    start = await stream_head(db)
    sc = await replay(client, actors)
    ids = {ev["event_type"]: ev["event_id"] for ev in sc["events"]}
    farm_lot = next(ev["data"]["lot"] for ev in sc["events"] if ev["event_type"] == "farm.pigs_dispatched")
    tested_lot = next(ev["data"]["lot"] for ev in sc["events"] if ev["event_type"] == "lot.tested")
    dept, key_id = await department(actors, ["lot.tested"])

    # The feed: only lot.tested events, whoever else wrote to the stream meanwhile.
    items, _ = await read_feed(client, dept, start)
    assert items
    assert {i["kind"] for i in items} == {"event"}
    assert {i["item"]["event_type"] for i in items} == {"lot.tested"}
    assert ids["lot.tested"] in {i["item"]["event_id"] for i in items}
    text = orjson.dumps(items).decode()
    assert OWNER_NAME not in text
    assert PLATE not in text
    assert OWNER_CODE not in text

    # The read endpoints.
    r = await client.get(f"/v1/events/{ids['farm.pigs_dispatched']}", headers=dept)
    assert r.status_code == 404
    r = await client.get(f"/v1/events/{ids['lot.tested']}", headers=dept)
    assert r.status_code == 200
    assert r.json()["status"] == "applied"
    r = await client.get(f"/v1/lots/{farm_lot}", headers=dept)
    assert r.status_code == 200, r.text
    lot = r.json()
    assert lot["documents"] == {}
    assert lot["created_by_event"] is None
    assert lot["facts"] == []
    r = await client.get(f"/v1/lots/{tested_lot}", headers=dept)
    assert [f["fact"] for f in r.json()["facts"]] == ["test"]
    r = await client.get(f"/v1/lots/{farm_lot}/trace?direction=down", headers=dept)
    assert r.status_code == 200, r.text
    trace = r.json()
    regulator = await actors.staff_key("regulator")
    whole = (await client.get(f"/v1/lots/{farm_lot}/trace?direction=down", headers=regulator)).json()
    assert "farm.pigs_dispatched" in {e["event_type"] for e in whole["events"]}
    # The same graph, but none of the events outside the scope (a trace lists creating and moving events).
    assert [lot["code"] for lot in trace["lots"]] == [lot["code"] for lot in whole["lots"]]
    assert all(e["event_type"] == "lot.tested" for e in trace["events"])
    assert all(lot["created_by_event"] is None for lot in trace["lots"])
    text = r.text
    assert OWNER_NAME not in text
    assert PLATE not in text
    farm = next(lot for lot in trace["lots"] if lot["code"] == farm_lot)
    assert farm["holder_name"] is None  # a farm may be a family: its name is a person's
    slaughterhouse = next(lot for lot in trace["lots"] if lot["kind"] == "slaughter_batch")
    assert slaughterhouse["holder_name"]  # a business's name is not personal
    assert (await client.get(f"/v1/lots/{farm_lot}/recall", headers=dept)).status_code == 403

    # An export of the day: only lot.tested, and no farm type may be asked for.
    day = "from=2026-11-24T00:00:00%2B08:00&to=2026-11-26T00:00:00%2B08:00"
    r = await client.get(f"/v1/exports/events?{day}", headers=dept)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in r.text.splitlines()]
    assert lines
    assert {line["event_type"] for line in lines} == {"lot.tested"}
    r = await client.get(f"/v1/exports/events?{day}&types=farm.*", headers=dept)
    assert r.status_code == 403
    assert "farm.pigs_dispatched" in r.json()["error"]["message"]

    # All of it is in the audit, for a regulator to see.
    r = await client.get(f"/v1/audit?actor={key_id}", headers=regulator)
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    assert {e["action"] for e in entries} == {"feed", "read", "export"}
    assert all(e["actor"] == key_id and e["role"] == "department" for e in entries)
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    feed_pages = [e for e in entries if e["action"] == "feed"]
    assert sum(e["count"] for e in feed_pages) == len(items)
    export = next(e for e in entries if e["action"] == "export" and e["detail"]["types"] == ["lot.tested"])
    assert export["count"] == len(lines)
    assert export["detail"]["complete"] is True
    assert {e["subject"] for e in entries if e["action"] == "read"} >= {f"/v1/lots/{farm_lot}",
                                                                         f"/v1/lots/{farm_lot}/trace"}  # fmt: skip


async def test_personal_scope_shares_names_and_plates(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    start = await stream_head(db)
    sc = await replay(client, actors)
    received = next(ev for ev in sc["events"] if ev["event_type"] == "slaughter.pigs_received")
    with_names, _ = await department(actors, ["slaughter.*", "personal"])
    without, _ = await department(actors, ["slaughter.*"])

    mine = lambda items: next(i["item"] for i in items if i["item"]["event_id"] == received["event_id"])  # noqa: E731
    full = mine((await read_feed(client, with_names, start))[0])
    assert full["data"]["owner"] == {"code": OWNER_CODE, "name": OWNER_NAME}
    assert full["data"]["vehicle_plate"] == PLATE
    assert "redacted" not in full
    assert full["source"] == "api"
    assert full["recorded_at"]
    bare = mine((await read_feed(client, without, start))[0])
    assert bare["data"]["owner"] == {}
    assert "vehicle_plate" not in bare["data"]
    assert bare["redacted"] == ["data.owner.code", "data.owner.name", "data.vehicle_plate"]
    assert {k: v for k, v in bare["data"].items() if k not in ("owner",)} == {
        k: v for k, v in full["data"].items() if k not in ("owner", "vehicle_plate")
    }
    day = "from=2026-11-24T00:00:00%2B08:00&to=2026-11-26T00:00:00%2B08:00&types=slaughter.pigs_received"
    r = await client.get(f"/v1/exports/events?{day}&format=csv", headers=without)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    row = next(row for row in rows if row["event_id"] == received["event_id"])
    assert orjson.loads(row["data"])["owner"] == {}
    assert OWNER_NAME not in r.text
    r = await client.get(f"/v1/exports/events?{day}&format=csv", headers=with_names)
    assert OWNER_NAME in r.text


async def test_regulators_read_events_market_figures_and_alerts_in_seq_order(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    start = await stream_head(db)
    sc = await replay(client, actors, "faults/asf_positive")
    regulator = await actors.staff_key("regulator")
    items, last = await read_feed(client, regulator, start, limit=7)
    seqs = [i["seq"] for i in items]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    events = [i["item"] for i in items if i["kind"] == "event"]
    assert {ev["event_id"] for ev in sc["events"]} <= {ev["event_id"] for ev in events}
    # Regulators get everything whole.
    received = next(ev for ev in events if ev["event_id"] == sc["events"][1]["event_id"])
    assert received["data"]["owner"]["name"] == OWNER_NAME
    alerts = [i["item"] for i in items if i["kind"] == "alert"]
    batch = next(ev["data"]["lot"] for ev in sc["events"] if ev["event_type"] == "slaughter.asf_tested")
    asf = next(a for a in alerts if a["rule"] == "asf_positive" and a["subject"]["code"] == batch)
    r = await client.get(f"/v1/alerts/{asf['id']}", headers=regulator)
    assert {k: v for k, v in r.json().items() if k != "updated_at"} == {
        k: v for k, v in asf.items() if k != "updated_at"
    }
    # An alert comes after the event that raised it.
    tested_seq = next(
        i["seq"] for i in events_with_seq(items) if i["item"]["event_type"] == "slaughter.asf_tested"
        and i["item"]["data"]["lot"] == batch
    )  # fmt: skip
    assert next(i["seq"] for i in items if i["kind"] == "alert" and i["item"]["id"] == asf["id"]) > tested_seq
    # Nothing new: the cursor stays.
    r = await client.get(f"/v1/feed?after={last}", headers=regulator)
    assert r.json() == {"items": [], "next": last} or r.json()["items"][0]["seq"] > last

    # A regulator acknowledging the alert shares its new version.
    r = await client.post(f"/v1/alerts/{asf['id']}/acknowledge", json={"note": "封存"}, headers=regulator)
    assert r.status_code == 200, r.text
    later, _ = await read_feed(client, regulator, last)
    version = next(i["item"] for i in later if i["kind"] == "alert" and i["item"]["id"] == asf["id"])
    assert version["status"] == "acknowledged"
    assert version["version"] > asf["version"]


async def test_market_figures_on_the_stream(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection
) -> None:
    start = await stream_head(db)
    sc = await replay(client, actors)
    commerce, _ = await department(actors, ["market"])
    items, _ = await read_feed(client, commerce, start)
    assert items
    assert {i["kind"] for i in items} == {"market"}
    markets = {op["code"] for op in sc["operators"]}
    mine = [i["item"] for i in items if i["item"]["market"] in markets]
    assert mine, items
    assert set(mine[0]) == {"day", "market", "region", "product_code", "kg_received", "kg_sold", "head", "avg_price"}
    sold = [m for m in mine if m["kg_sold"]]
    assert sold
    assert sold[-1]["avg_price"] == pytest.approx(32.0)
    assert all(m["region"] and m["region"].isdigit() for m in mine)
    # The figures are also readable with `market` (and without `alerts`, the alerts are left out).
    r = await client.get("/v1/monitor/supply?product=PORK-CARCASS", headers=commerce)
    assert r.status_code == 200, r.text
    assert all(day["alerts"] == [] for series in r.json()["series"] for day in series["days"])


async def test_a_narrow_cursor_moves_past_items_it_may_not_see(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection, settings: Settings
) -> None:
    start = await stream_head(db)
    await replay(client, actors)
    end = await stream_head(db)
    engine = create_engine(settings, pool_size=1, name="test-feed-scan")
    try:
        async with engine.connect() as conn:
            nobody = sharing.Audience(parse_scopes(["regulator.lot_held"]))
            items, cursor = await sharing.page(conn, nobody, start, 1000, scan=3)
            # Nothing for it in the first window of 3: the cursor still moves 3 items on.
            third = await db.fetchval(
                "SELECT seq FROM shared_items WHERE seq > $1 ORDER BY seq OFFSET 2 LIMIT 1", start
            )
            assert items == []
            assert cursor == third
            tested = sharing.Audience(parse_scopes(["lot.tested"]))
            found: list[dict[str, Any]] = []
            cursor = start
            while True:
                page, nxt = await sharing.page(conn, tested, cursor, 1000, scan=4)
                found += page
                if nxt == cursor:
                    break
                cursor = nxt
            assert cursor >= end
            everything, _ = await sharing.page(conn, sharing.Audience(Scopes.everything()), start, 1000)
            expected = [i for i in everything if i["kind"] == "event" and i["item"]["event_type"] == "lot.tested"]
            assert found == expected[: len(found)]
            assert len(found) == len(expected)
    finally:
        await engine.dispose()


def test_require_flag_refuses_operators() -> None:
    with pytest.raises(Forbidden):
        scope_rules.require_flag(Principal(Role.OPERATOR, "k", operator="OP0001"), "alerts")
