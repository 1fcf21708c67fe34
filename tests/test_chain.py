"""The trace graph end to end: the scenario chains replayed through the API, the broker and the worker."""

from __future__ import annotations

import csv
import io
import random

import httpx
import pytest

from tests.support import Actors, post_events, register_operators, scenario_tag
from trace_service.chain import scenarios


async def _replay(client: httpx.AsyncClient, actors: Actors, name: str) -> dict:
    sc = scenarios.instantiate(scenarios.load(name), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    return sc


def _check_lot(body: dict, expected: dict) -> None:
    for key, value in expected.items():
        if key == "head_in":
            assert body["head"]["in"] == value, body
        elif key == "head_out":
            assert body["head"]["out"] == value, body
        else:
            assert body[key] == pytest.approx(value) if isinstance(value, float) else body[key] == value, (key, body)


@pytest.mark.parametrize("name", ["pig_chain", "produce_chain"])
async def test_scenario_replayed_end_to_end(client: httpx.AsyncClient, actors: Actors, worker: None, name: str) -> None:
    sc = await _replay(client, actors, name)
    regulator = await actors.staff_key("regulator")
    expect = sc["expect"]

    for lot_code, wanted in expect["lots"].items():
        r = await client.get(f"/v1/lots/{lot_code}", headers=regulator)
        assert r.status_code == 200, r.text
        _check_lot(r.json(), wanted)

    # Backward trace from the sale code reaches the farm or base through every step.
    up = expect["trace_up"]
    r = await client.get(f"/v1/lots/{up['from']}/trace?direction=up", headers=regulator)
    assert r.status_code == 200
    trace = r.json()
    assert [lot["code"] for lot in trace["lots"]] == up["path"]
    assert {lot["status"] for lot in trace["lots"]} != {"unresolved"}
    links = {(e["from"], e["to"]) for e in trace["edges"]}
    assert all((up["path"][i + 1], up["path"][i]) in links for i in range(len(up["path"]) - 1))
    assert {e["event_id"] for e in trace["events"]} >= {e["event_id"] for e in trace["edges"]}

    # Recall from the batch or harvest reaches the sale and the holders of stock.
    rc = expect["recall"]
    r = await client.get(f"/v1/lots/{rc['from']}/recall", headers=regulator)
    assert r.status_code == 200
    recall = r.json()
    assert set(rc["reaches"]) <= {lot["code"] for lot in recall["lots"]}
    assert set(rc["holders"]) <= {h["code"] for h in recall["holders"]}
    sale = next(lot for lot in recall["lots"] if lot["kind"] == "sale")
    assert sale["holder"] in rc["holders"]
    assert recall["totals"]["sales"] == 1

    r = await client.get(f"/v1/lots/{rc['from']}/recall?format=csv", headers=regulator)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert {row["code"] for row in rows} == {lot["code"] for lot in recall["lots"]}


async def test_quantities_after_each_step(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    m = sc["mapping"]
    await register_operators(client, actors.admin, sc["operators"])
    regulator = await actors.staff_key("regulator")
    events = sc["events"]

    async def lot(code: str) -> dict:
        r = await client.get(f"/v1/lots/{m[code]}", headers=regulator)
        assert r.status_code == 200, r.text
        return r.json()

    await post_events(client, actors.admin, events[:1])
    farm = await lot("FARMLOT0001")
    assert (farm["status"], farm["head"]["on_hand"]) == ("active", 20)

    await post_events(client, actors.admin, events[1:3])  # received (by certificate), ASF tested
    assert (await lot("FARMLOT0001"))["status"] == "exhausted"
    batch = await lot("SLBATCH0001")
    assert (batch["status"], batch["head"]["on_hand"], batch["kg_on_hand"]) == ("active", 20, 2312.0)
    assert [f["result"] for f in batch["facts"] if f["fact"] == "asf"] == ["negative"]

    await post_events(client, actors.admin, events[3:4])  # slaughtered
    batch = await lot("SLBATCH0001")
    assert (batch["status"], batch["head"]["on_hand"], batch["kg_on_hand"]) == ("exhausted", 0, 0.0)
    carcass = await lot("CARCASS0001")
    assert (carcass["status"], carcass["kg_on_hand"], carcass["product_name"]) == ("active", 867.0, "猪胴体(白条)")

    await post_events(client, actors.admin, events[4:5])  # shipped, not yet received
    assert (await lot("CARCASS0001"))["kg_on_hand"] == 0.0

    await post_events(client, actors.admin, events[5:8])  # received, tested, shipped 120 kg on
    wholesale = await lot("WHLOT0001")
    assert (wholesale["kg_in"], wholesale["kg_on_hand"], wholesale["product_name"]) == (867.0, 747.0, "猪胴体(白条)")

    await post_events(client, actors.admin, events[8:])
    stall = await lot("STALLLOT0001")
    assert (stall["kg_in"], stall["kg_sold"], stall["kg_on_hand"]) == (120.0, 1.25, 118.75)


async def test_out_of_order_delivery_resolves_every_lot(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    regulator = await actors.staff_key("regulator")
    events = list(reversed(sc["events"]))
    # The sale first: everything upstream of it exists only as unresolved references.
    await post_events(client, actors.admin, events[:1])
    sale_code = sc["mapping"]["SALE2026112500001"]
    r = await client.get(f"/v1/lots/{sale_code}/trace?direction=up", headers=regulator)
    assert [lot["status"] for lot in r.json()["lots"]] == ["exhausted", "unresolved"]
    await post_events(client, actors.admin, events[1:])
    r = await client.get(f"/v1/lots/{sale_code}/trace?direction=up", headers=regulator)
    assert "unresolved" not in {lot["status"] for lot in r.json()["lots"]}
    assert len(r.json()["lots"]) == 6


async def test_diamond_and_split(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    """One wholesale lot made from two carcass lots; one carcass lot split to three buyers."""
    tag = scenario_tag()
    base = scenarios.instantiate(scenarios.load("pig_chain"), tag)
    m = base["mapping"]
    await register_operators(client, actors.admin, base["operators"])
    extra_buyers = []
    for i in range(2):
        code = f"4420002002{i}{tag}"
        extra_buyers.append(code)
        await register_operators(
            client, actors.admin, [{"code": code, "name": f"批发商{i}", "kind": "wholesaler", "region": "442000"}]
        )
    slaughterhouse, wholesaler = m["442000100001"], m["442000200101"]
    ev = base["events"][:4]  # farm → batch → two carcasses
    received_both = {
        "event_id": "00000000-0000-4000-8000-" + tag.encode().hex().rjust(12, "0"),
        "event_type": "trade.received",
        "occurred_at": "2026-11-25T04:30:00+08:00",
        "operator": wholesaler,
        "data": {
            "voucher_number": f"MIX-{tag}",
            "seller": slaughterhouse,
            "lines": [
                {"lot": f"MIXLOT{tag}", "from_lot": m["CARCASS0001"], "weight_kg": 100.0},
                {"lot": f"MIXLOT{tag}", "from_lot": m["CARCASS0002"], "weight_kg": 150.0},
            ],
            "documents": {"quarantine_cert_number": "CQ-4420-2026-88001"},
        },
    }
    splits = []
    for i, buyer in enumerate([wholesaler, *extra_buyers]):
        splits.append(
            {
                "event_id": f"00000000-0000-4000-9000-{i:02d}" + tag.encode().hex().rjust(10, "0"),
                "event_type": "trade.received",
                "occurred_at": "2026-11-25T05:00:00+08:00",
                "operator": buyer,
                "data": {
                    "voucher_number": f"SPL-{i}-{tag}",
                    "seller": slaughterhouse,
                    "lines": [{"lot": f"SPL{i}LOT{tag}", "from_lot": m["CARCASS0001"], "weight_kg": 200.0}],
                    "documents": {},
                },
            }
        )
    await post_events(client, actors.admin, [*ev, received_both, *splits])
    regulator = await actors.staff_key("regulator")

    r = await client.get(f"/v1/lots/MIXLOT{tag}/trace?direction=up", headers=regulator)
    codes = [lot["code"] for lot in r.json()["lots"]]
    assert codes[0] == f"MIXLOT{tag}"
    assert set(codes) == {f"MIXLOT{tag}", m["CARCASS0001"], m["CARCASS0002"], m["SLBATCH0001"], m["FARMLOT0001"]}
    assert len(codes) == len(set(codes))  # the diamond's apex appears once
    mixed = (await client.get(f"/v1/lots/MIXLOT{tag}", headers=regulator)).json()
    assert mixed["kg_in"] == 250.0

    r = await client.get(f"/v1/lots/{m['CARCASS0001']}/recall", headers=regulator)
    holders = {h["code"] for h in r.json()["holders"]}
    assert {wholesaler, *extra_buyers} <= holders
    carcass = (await client.get(f"/v1/lots/{m['CARCASS0001']}", headers=regulator)).json()
    # Received without the slaughterhouse's shipment report: the buyers' links are pending and move nothing
    # out of the slaughterhouse's lot (contract section 7), though a recall still reaches those buyers.
    assert carcass["kg_out"] == 0.0


async def test_cycle_does_not_hang(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    op, key = await actors.operator_with_key(kind="wholesaler")
    tag = scenario_tag()
    a, b = f"CYCA{tag}0001", f"CYCB{tag}0001"

    def receipt(i: int, lot: str, parent: str) -> dict:
        return {
            "event_id": f"00000000-0000-4000-a000-{i:02d}" + tag.encode().hex().rjust(10, "0"),
            "event_type": "trade.received",
            "occurred_at": "2026-11-25T05:00:00+08:00",
            "operator": op,
            "data": {"voucher_number": f"CYC-{i}-{tag}", "seller": op,
                     "lines": [{"lot": lot, "from_lot": parent, "weight_kg": 10.0}], "documents": {}},
        }  # fmt: skip

    await post_events(client, key, [receipt(1, a, b), receipt(2, b, a)])
    regulator = await actors.staff_key("regulator")
    for direction in ("up", "down", "both"):
        r = await client.get(f"/v1/lots/{a}/trace?direction={direction}&max_depth=50", headers=regulator)
        assert r.status_code == 200
        assert {lot["code"] for lot in r.json()["lots"]} == {a, b}
    assert (await client.get(f"/v1/lots/{a}/recall", headers=regulator)).status_code == 200


async def test_who_may_read_and_trace(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    sc = await _replay(client, actors, "pig_chain")
    m = sc["mapping"]
    stall_key = await actors.key(m["442000300105"])
    slaughter_key = await actors.key(m["442000100001"])
    stall_lot, sale = m["STALLLOT0001"], m["SALE2026112500001"]

    # The stall traces up from its own lot and sale, and reads the lots upstream of its own.
    assert (await client.get(f"/v1/lots/{sale}/trace?direction=up", headers=stall_key)).status_code == 200
    assert (await client.get(f"/v1/lots/{m['FARMLOT0001']}", headers=stall_key)).status_code == 200
    # ... but not downstream, not other operators' lots that do not feed it, and no recall.
    assert (await client.get(f"/v1/lots/{stall_lot}/trace?direction=down", headers=stall_key)).status_code == 403
    # A lot an operator may not read answers as an unknown code does (contract section 7).
    assert (await client.get(f"/v1/lots/{m['CARCASS0002']}", headers=stall_key)).status_code == 404
    assert (await client.get(f"/v1/lots/{m['SLBATCH0001']}/recall", headers=stall_key)).status_code == 403
    # The slaughterhouse cannot follow its meat into the stall's books.
    assert (await client.get(f"/v1/lots/{stall_lot}", headers=slaughter_key)).status_code == 404
    assert (await client.get(f"/v1/lots/{sale}/trace?direction=up", headers=slaughter_key)).status_code == 404
    assert (await client.get(f"/v1/lots/NOSUCHLOT{random.randint(1000, 9999)}", headers=stall_key)).status_code == 404
    assert (await client.get("/v1/lots/bad-code", headers=stall_key)).status_code == 422
    assert (await client.get(f"/v1/lots/{sale}")).status_code == 401
