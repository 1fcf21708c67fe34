"""Who may change or read a lot (contract section 7), with the real API, broker and worker.

The matrix: every event type that speaks about a lot, sent by another operator against B's lot, in both
arrival orders: after B's lot exists (the API refuses it: 403 ``not_holder`` / 409 ``lot_taken``) and
before it (the API cannot tell; the worker parks the event until B's creating event says who holds the lot,
then refuses it as a dead letter with a ``not_holder`` alert naming both operators). B's lot never changes.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support import Actors, code, harvested_event, wait_for

pytestmark = pytest.mark.usefixtures("worker")

AT = "2026-11-25T06:00:00+08:00"


def _event(event_type: str, operator: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": AT,
        "operator": operator,
        "data": data,
    }


def _assert_applied(r: httpx.Response) -> None:
    assert r.status_code == 200, r.text
    assert r.json()["events"][0]["status"] == "applied", r.text


def attacks(attacker: str, lot: str) -> dict[str, dict[str, Any]]:
    """One event of each type that would change ``lot`` (held by someone else) if it counted."""
    return {
        "lot.tested": _event(
            "lot.tested", attacker, {"lot": lot, "test": "pesticide_rapid", "method": "酶抑制法", "value": 80.0,
                                     "result": "fail"}
        ),
        "lot.disposed": _event("lot.disposed", attacker, {"lot": lot, "weight_kg": 100.0, "reason": "销毁"}),
        "retail.sold": _event(
            "retail.sold", attacker, {"sale_code": code("S", 18), "lot": lot, "weight_kg": 2.5, "unit_price": 12.0}
        ),
        "trade.shipped": _event(
            "trade.shipped", attacker,
            {"voucher_number": code("V", 12), "buyer": attacker, "lines": [{"lot": lot, "weight_kg": 50.0}]},
        ),
        "slaughter.asf_tested": _event(
            "slaughter.asf_tested", attacker, {"lot": lot, "method": "pcr", "result": "positive", "sampled_at": AT}
        ),
        "slaughter.batch_slaughtered": _event(
            "slaughter.batch_slaughtered", attacker,
            {"lot": lot, "head_count": 1, "condemned_head": 0, "product_quarantine_cert_number": "PQ-0001",
             "outputs": [{"lot": code("C", 16), "product_code": "PORK-CARCASS", "product_name": "白条",
                          "weight_kg": 80.0}]},
        ),
        # Creating events for a code B holds.
        "produce.harvested": {**harvested_event(attacker), "data": {**harvested_event(attacker)["data"], "lot": lot}},
        "trade.received": _event(
            "trade.received", attacker,
            {"voucher_number": code("V", 12), "seller": attacker,
             "lines": [{"lot": lot, "from_lot": code("F", 16), "weight_kg": 10.0}], "documents": {}},
        ),
        "farm.pigs_dispatched": _event(
            "farm.pigs_dispatched", attacker,
            {"lot": lot, "farm_code": "4420000001",
             "quarantine_cert": {"number": code("Q", 10), "kind": "B", "issued_at": AT, "head_count": 1},
             "head_count": 1, "ear_tags": ["144200000000001"], "destination": attacker, "origin_region": "442000"},
        ),
        "retail.sold (sale code)": _event(
            "retail.sold", attacker, {"sale_code": lot, "lot": code("L", 16), "weight_kg": 1.0, "unit_price": 1.0}
        ),
    }  # fmt: skip


CREATING = {"produce.harvested", "trade.received", "farm.pigs_dispatched", "retail.sold (sale code)"}
KINDS = sorted(attacks("ATTACKER01", "LOT00000001"))


async def _own_source_lot(
    client: httpx.AsyncClient, key: dict[str, str], attacker: str, attack: dict[str, Any]
) -> None:
    """The sale-code attack sells from a lot the attacker really holds."""
    if attack["event_type"] == "retail.sold" and attack["data"]["lot"].startswith("L"):
        own = harvested_event(attacker)
        own["data"]["lot"] = attack["data"]["lot"]
        assert (await client.post("/v1/events?wait=true", json=own, headers=key)).status_code == 200


async def _lot(client: httpx.AsyncClient, headers: dict[str, str], lot: str) -> dict[str, Any]:
    r = await client.get(f"/v1/lots/{lot}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _victim_view(lot: dict[str, Any]) -> tuple[Any, ...]:
    return (lot["holder"], lot["status"], lot["kg_in"], lot["kg_out"], lot["kg_on_hand"], lot["created_by_event"],
            len(lot["facts"]))  # fmt: skip


async def _status(client: httpx.AsyncClient, headers: dict[str, str], event_id: str) -> dict[str, Any]:
    r = await client.get(f"/v1/events/{event_id}", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("kind", KINDS)
async def test_another_operator_cannot_change_a_known_lot(client: httpx.AsyncClient, actors: Actors, kind: str) -> None:
    victim, victim_key = await actors.operator_with_key()
    attacker, attacker_key = await actors.operator_with_key(kind="wholesaler")
    harvest = harvested_event(victim)
    lot = harvest["data"]["lot"]
    r = await client.post("/v1/events?wait=true", json=harvest, headers=victim_key)
    _assert_applied(r)
    before = _victim_view(await _lot(client, victim_key, lot))

    attack = attacks(attacker, lot)[kind]
    await _own_source_lot(client, attacker_key, attacker, attack)
    r = await client.post("/v1/events?wait=true", json=attack, headers=attacker_key)
    expected = (409, "lot_taken") if kind in CREATING else (403, "not_holder")
    assert (r.status_code, r.json()["error"]["code"]) == expected, r.text
    assert r.json()["error"]["details"][0]["lot"] == lot
    # Nothing of the request was accepted, and B's lot is as it was; B still reads it with its own key.
    assert (await client.get(f"/v1/events/{attack['event_id']}", headers=attacker_key)).status_code == 404
    assert _victim_view(await _lot(client, victim_key, lot)) == before


@pytest.mark.parametrize("kind", KINDS)
async def test_another_operator_cannot_change_a_lot_created_after_its_event(
    client: httpx.AsyncClient, actors: Actors, kind: str
) -> None:
    victim, victim_key = await actors.operator_with_key()
    attacker, attacker_key = await actors.operator_with_key(kind="wholesaler")
    harvest = harvested_event(victim)
    lot = harvest["data"]["lot"]
    regulator = await actors.staff_key()

    # The attack arrives first: nobody holds the lot yet, so the API accepts it and the worker waits.
    attack = attacks(attacker, lot)[kind]
    await _own_source_lot(client, attacker_key, attacker, attack)
    if kind in CREATING:
        await _first_creation_wins(client, (attack, attacker, attacker_key), (harvest, victim, victim_key), lot)
        return
    r = await client.post("/v1/events?wait=true", json=attack, headers=attacker_key)
    assert r.status_code == 200, r.text
    await wait_for(lambda: _parked(client, regulator, attack["event_id"]))
    waiting = await _status(client, attacker_key, attack["event_id"])
    assert (waiting["status"], waiting["waiting_for"]) == ("accepted", [lot])

    r = await client.post("/v1/events?wait=true", json=harvest, headers=victim_key)
    assert r.status_code == 200, r.text
    assert r.json()["events"][0]["status"] == "applied"

    async def refused() -> dict[str, Any] | None:
        body = await _status(client, attacker_key, attack["event_id"])
        return body if body["status"] == "rejected" else None

    status = await wait_for(refused)
    assert status["reason"] == "not_holder"
    lot_now = await _lot(client, victim_key, lot)
    assert (lot_now["holder"], lot_now["status"], lot_now["kg_out"], lot_now["facts"]) == (victim, "active", 0.0, [])

    # The regulators' queue names both operators.
    async def alert() -> dict[str, Any] | None:
        r = await client.get(f"/v1/alerts?rule=not_holder&operator={attacker}", headers=regulator)
        items = [a for a in r.json()["items"] if a["subject"]["code"] == lot]
        return items[0] if items else None

    found = await wait_for(alert)
    assert (found["evidence"]["holder"], found["evidence"]["operator"]) == (victim, attacker)
    assert attack["event_id"] in str(found["evidence"])


async def _first_creation_wins(
    client: httpx.AsyncClient,
    first: tuple[dict[str, Any], str, dict[str, str]],
    second: tuple[dict[str, Any], str, dict[str, str]],
    lot: str,
) -> None:
    """Two operators create the same code, one right after the other: one holds it, the other is set aside
    (409 at the API if the first was applied already, else a lot_taken dead letter from the worker). Events
    of two operators travel on different partitions, so which one the worker sees first is not fixed."""
    (ev1, op1, key1), (ev2, op2, key2) = first, second
    assert (await client.post("/v1/events", json=ev1, headers=key1)).status_code == 202
    r = await client.post("/v1/events", json=ev2, headers=key2)
    if r.status_code == 409:
        assert r.json()["error"]["code"] == "lot_taken"
        outcomes = {op1: "applied", op2: "refused"}
    else:
        assert r.status_code == 202, r.text

        async def decided(event: dict[str, Any], key: dict[str, str]) -> dict[str, Any] | None:
            body = await _status(client, key, event["event_id"])
            return body if body["status"] != "accepted" else None

        one = await wait_for(lambda: decided(ev1, key1))
        two = await wait_for(lambda: decided(ev2, key2))
        assert sorted([one["status"], two["status"]]) == ["applied", "rejected"], (one, two)
        assert (one.get("reason") or two.get("reason")) == "lot_taken"
        outcomes = {op1: one["status"], op2: two["status"]}
    [winner] = [op for op, outcome in outcomes.items() if outcome == "applied"]
    [loser_key] = [key for op, key in ((op1, key1), (op2, key2)) if op != winner]
    winner_key = key1 if winner == op1 else key2
    assert (await _lot(client, winner_key, lot))["holder"] == winner
    assert (await client.get(f"/v1/lots/{lot}", headers=loser_key)).status_code == 404


async def _parked(client: httpx.AsyncClient, regulator: dict[str, str], event_id: str) -> bool:
    r = await client.get(f"/v1/events/{event_id}", headers=regulator)
    return r.status_code == 200 and r.json()["status"] == "accepted"


async def test_a_market_tests_its_tenants_lots_and_tenants_not_each_others(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection
) -> None:
    market, market_key = await actors.operator_with_key(kind="wholesale_market")
    tenant = await actors.operator(kind="wholesaler", parent=market)
    sibling, sibling_key = await actors.operator_with_key(kind="wholesaler", parent=market)
    tenant_key = await actors.key(tenant)
    harvest = harvested_event(tenant)
    lot = harvest["data"]["lot"]
    assert (await client.post("/v1/events?wait=true", json=harvest, headers=tenant_key)).status_code == 200

    test = attacks(market, lot)["lot.tested"]
    r = await client.post("/v1/events?wait=true", json=test, headers=market_key)
    _assert_applied(r)
    assert (await _lot(client, tenant_key, lot))["status"] == "stopped"

    r = await client.post("/v1/events", json=attacks(sibling, lot)["lot.disposed"], headers=sibling_key)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_holder")


async def test_a_pending_link_grants_nothing_until_the_seller_ships(client: httpx.AsyncClient, actors: Actors) -> None:
    seller, seller_key = await actors.operator_with_key()
    buyer, buyer_key = await actors.operator_with_key(kind="wholesaler")
    harvest = harvested_event(seller)
    seller_lot = harvest["data"]["lot"]
    assert (await client.post("/v1/events?wait=true", json=harvest, headers=seller_key)).status_code == 200
    voucher = code("V", 12)
    buyer_lot = code("B", 16)
    received = _event(
        "trade.received", buyer,
        {"voucher_number": voucher, "seller": seller,
         "lines": [{"lot": buyer_lot, "from_lot": seller_lot, "weight_kg": 300.0}], "documents": {}},
    )  # fmt: skip
    r = await client.post("/v1/events?wait=true", json=received, headers=buyer_key)
    _assert_applied(r)

    # Pending: the buyer cannot read the seller's lot (the same 404 as an unknown code) nor trace up to it,
    # and the seller's stock is untouched.
    r = await client.get(f"/v1/lots/{seller_lot}", headers=buyer_key)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    up = (await client.get(f"/v1/lots/{buyer_lot}/trace?direction=up", headers=buyer_key)).json()
    assert [lot["code"] for lot in up["lots"]] == [buyer_lot]
    assert (await _lot(client, seller_key, seller_lot))["kg_out"] == 0.0
    regulator = await actors.staff_key()
    seen = (await client.get(f"/v1/lots/{buyer_lot}/trace?direction=up", headers=regulator)).json()
    assert [(e["from"], e["pending"]) for e in seen["edges"]] == [(seller_lot, True)]

    # A shipment on the same voucher to someone else confirms nothing.
    stranger = await actors.operator()
    other = _event(
        "trade.shipped", seller, {"voucher_number": voucher, "buyer": stranger, "lines": [{"lot": seller_lot,
                                                                                         "weight_kg": 1.0}]}
    )  # fmt: skip
    assert (await client.post("/v1/events?wait=true", json=other, headers=seller_key)).status_code == 200
    assert (await client.get(f"/v1/lots/{seller_lot}", headers=buyer_key)).status_code == 404

    # The seller's shipment on that voucher, listing that lot for this buyer, confirms the link.
    voucher2 = code("V", 12)
    received2 = _event(
        "trade.received", buyer,
        {"voucher_number": voucher2, "seller": seller,
         "lines": [{"lot": buyer_lot, "from_lot": seller_lot, "weight_kg": 200.0}], "documents": {}},
    )  # fmt: skip
    shipped = _event(
        "trade.shipped", seller, {"voucher_number": voucher2, "buyer": buyer, "lines": [{"lot": seller_lot,
                                                                                       "weight_kg": 200.0}]}
    )  # fmt: skip
    assert (await client.post("/v1/events?wait=true", json=shipped, headers=seller_key)).status_code == 200
    assert (await client.post("/v1/events?wait=true", json=received2, headers=buyer_key)).status_code == 200
    assert (await client.get(f"/v1/lots/{seller_lot}", headers=buyer_key)).status_code == 200
    up = (await client.get(f"/v1/lots/{buyer_lot}/trace?direction=up", headers=buyer_key)).json()
    assert {lot["code"] for lot in up["lots"]} == {buyer_lot, seller_lot}
    assert all(not e["pending"] for e in up["edges"])
    assert (await _lot(client, seller_key, seller_lot))["kg_out"] == 201.0  # what the seller shipped


async def test_issued_codes_belong_to_their_operator(client: httpx.AsyncClient, actors: Actors) -> None:
    owner, owner_key = await actors.operator_with_key()
    other, other_key = await actors.operator_with_key()
    r = await client.post("/v1/codes", json={"count": 2}, headers=owner_key)
    assert r.status_code in (200, 201), r.text
    mine, spare = r.json()["codes"]
    taken = {**harvested_event(other), "data": {**harvested_event(other)["data"], "lot": mine}}
    r = await client.post("/v1/events", json=taken, headers=other_key)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "lot_taken"), r.text
    ok = {**harvested_event(owner), "data": {**harvested_event(owner)["data"], "lot": spare}}
    r = await client.post("/v1/events?wait=true", json=ok, headers=owner_key)
    _assert_applied(r)


async def test_a_slaughter_intake_counts_only_when_the_farm_dispatched_to_that_slaughterhouse(
    client: httpx.AsyncClient, actors: Actors
) -> None:
    farm, farm_key = await actors.operator_with_key(kind="farm")
    slaughterhouse, s_key = await actors.operator_with_key(kind="slaughterhouse")
    other, other_key = await actors.operator_with_key(kind="slaughterhouse")
    farm_lot = attacks(farm, code("F", 16))["farm.pigs_dispatched"]
    farm_lot["data"]["destination"] = slaughterhouse
    farm_lot["data"]["head_count"] = farm_lot["data"]["quarantine_cert"]["head_count"] = 1
    _assert_applied(await client.post("/v1/events?wait=true", json=farm_lot, headers=farm_key))
    lot = farm_lot["data"]["lot"]

    def received(operator: str) -> dict[str, Any]:
        return _event(
            "slaughter.pigs_received", operator,
            {"lot": code("SB", 16), "quarantine_cert_number": farm_lot["data"]["quarantine_cert"]["number"],
             "owner": {"name": "货主"}, "origin_region": "442000", "head_count": 1, "dead_on_arrival": 0,
             "ear_tags": [], "live_weight_kg": 110.0, "from_lot": lot},
        )  # fmt: skip

    # Another slaughterhouse names the farm's lot: its own batch is recorded, the farm's pigs stay on hand.
    _assert_applied(await client.post("/v1/events?wait=true", json=received(other), headers=other_key))
    assert (await _lot(client, farm_key, lot))["head"]["out"] == 0
    assert (await client.get(f"/v1/lots/{lot}", headers=other_key)).status_code == 404
    # The slaughterhouse the pigs were dispatched to takes them, and may read the farm's lot.
    _assert_applied(await client.post("/v1/events?wait=true", json=received(slaughterhouse), headers=s_key))
    assert (await _lot(client, farm_key, lot))["head"]["out"] == 1
    assert (await client.get(f"/v1/lots/{lot}", headers=s_key)).status_code == 200


async def test_an_event_about_a_lot_nobody_creates_is_rejected_after_the_park_period(
    database_url: str, broker_bootstrap: str
) -> None:
    from tests.conftest import ADMIN_TOKEN, api_client, make_settings, running_worker
    from trace_service.settings import RuleSettings

    settings = make_settings(
        database_url, broker_bootstrap, rules=RuleSettings(settle_seconds=2.0, grace_seconds=3, tick_seconds=0.2,
                                                           park_seconds=1)
    )  # fmt: skip
    async with api_client(settings) as client, running_worker(settings):
        actors = Actors(client, ADMIN_TOKEN)
        op, key = await actors.operator_with_key(kind="wholesale_market")
        orphan = attacks(op, code("N", 16))["lot.tested"]
        r = await client.post("/v1/events?wait=true", json=orphan, headers=key)
        assert r.json()["events"][0]["waiting_for"] == [orphan["data"]["lot"]], r.text

        async def decided() -> dict[str, Any] | None:
            body = await _status(client, key, orphan["event_id"])
            return body if body["status"] == "rejected" else None

        body = await wait_for(decided, timeout=30)
        assert body["reason"] == "lot_unknown"
        assert orphan["data"]["lot"] in body["message"]
