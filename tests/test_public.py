"""The consumer's view of a receipt code: origin, slaughterhouse, statuses; nothing private."""

from __future__ import annotations

import csv
import io
import json
import uuid

import httpx

from tests.support import Actors, post_events, register_operators, scenario_tag, wait_for
from trace_service.chain import scenarios

PRIVATE_FRAGMENTS = [
    "李某某",  # the pig owner's name on the intake record
    "B4412031124001",  # origin quarantine certificate number
    "CQ-4420-2026-88001",  # product quarantine certificate number
    "ZQ-2026-1125-001",  # meat quality certificate number
    "ASF-100001-1125-01",  # ASF report number
    "JY-100001-20261125-01",  # voucher numbers
    "PF-200101-0001",
    "24.5",  # the slaughterhouse's price to the wholesaler
    "28.0",  # the wholesaler's price to the stall
    "鼎湖区示范生猪养殖场",  # the farm (may be a family)
    "粤H12345",  # vehicle plate
    "4412030001",  # farm code
]


async def test_public_view_of_a_pork_sale(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    m = sc["mapping"]

    r = await client.get(f"/v1/public/trace/{m['SALE2026112500001']}")  # no key
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["type"] == "sale"
    assert view["product"]["name"] == "猪胴体(白条)"
    assert view["weight_kg"] == 1.25
    assert view["sold_at"].startswith("2026-11-25T08:15:00+08:00")
    assert view["market"]["name"] == "中山市石岐综合市场"
    assert view["stall"] == "105号摊"  # the label the sale gave, not an operator code
    assert view["stocked_at"].startswith("2026-11-25T06:10")
    assert view["supplier"]["kind"] == "wholesaler"
    assert view["supplier"]["name"] == "批发商A101"  # a wholesaler's registered trade name is public
    assert view["seller"]["name"] is None  # a stall keeper may be a person: kind only
    assert view["slaughterhouse"]["name"] == "中山市定点屠宰厂"
    assert view["slaughtered_at"].startswith("2026-11-25T03:20")
    assert view["checks"] == {"quarantine": "pass", "quality": "pass", "asf": "pass", "ractopamine": "pass"}
    assert view["origin"]["region"]["code"] == "441203"
    assert "肇庆" in view["origin"]["region"]["name"]
    assert view["origin"]["name"] is None
    assert view["warning"] is None
    assert view["status"] == "passed"

    text = json.dumps(view, ensure_ascii=False)
    leaked = [p for p in PRIVATE_FRAGMENTS if m.get(p, p) in text or p in text]
    assert leaked == [], leaked


async def test_public_view_of_vegetables_and_unknown_codes(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    sc = scenarios.instantiate(scenarios.load("produce_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    m = sc["mapping"]
    view = (await client.get(f"/v1/public/trace/{m['SALEV2026112500001']}")).json()
    assert view["product"]["name"] == "菜心"
    assert view["market"]["name"] == "中山市民众超市"
    assert view["checks"]["pesticide"] == "pass"
    assert view["checks"]["compliance_certificate"] == "pass"
    assert view["origin"]["name"] == "开平市绿源蔬菜种植基地"  # a planting base is a business
    assert "江门" in view["origin"]["region"]["name"]
    assert "HG-440783" not in json.dumps(view)
    assert "4.2" not in json.dumps(view) and "5.6" not in json.dumps(view)  # noqa: PT018

    r = await client.get("/v1/public/trace/NOSUCHCODE123")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/public/trace/<script>")).status_code in (404, 422)


async def test_public_view_is_cacheable_and_a_hold_changes_it_at_once(
    client: httpx.AsyncClient, actors: Actors, worker: None
) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    m = sc["mapping"]
    sale = m["SALE2026112500001"]

    for path in (f"/v1/public/trace/{sale}", f"/t/{sale}"):
        r = await client.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "public, max-age=5"
        etag = r.headers["etag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.headers["etag"] == etag
        assert again.content == b""
        assert (await client.get(path, headers={"If-None-Match": f"W/{etag}"})).status_code == 304
        assert (await client.get(path, headers={"If-None-Match": '"other"'})).status_code == 200
    page_zh = (await client.get(f"/t/{sale}")).headers["etag"]
    assert (await client.get(f"/t/{sale}?lang=en")).headers["etag"] != page_zh  # one version per language

    before = {path: (await client.get(path)).headers["etag"] for path in (f"/v1/public/trace/{sale}", f"/t/{sale}")}
    hold = {
        "event_id": str(uuid.uuid4()),
        "event_type": "regulator.lot_held",
        "occurred_at": "2026-11-25T09:30:00+08:00",
        "operator": m["442000100001"],
        "data": {"lot": m["CARCASS0001"], "reason": "抽检复核", "scope": "downstream"},
    }
    await post_events(client, actors.admin, [hold])  # waits until the worker applied it
    # Within a second of the hold being applied, a request with the old version gets the new one: a view is read
    # again at most every half second (chain.service.FRESH_SECONDS), and no other cache outlives a change.

    async def changed() -> httpx.Response | None:
        r = await client.get(f"/v1/public/trace/{sale}", headers={"If-None-Match": before[f"/v1/public/trace/{sale}"]})
        return r if r.status_code == 200 else None

    r = await wait_for(changed, timeout=3)
    assert r.headers["etag"] != before[f"/v1/public/trace/{sale}"]
    assert r.json()["warning"]["level"] == "stopped"
    assert r.json()["status"] == "stopped"
    page = await client.get(f"/t/{sale}", headers={"If-None-Match": before[f"/t/{sale}"]})
    assert page.status_code == 200
    assert "暂停销售" in page.text


async def test_recall_pages_with_totals_on_every_page(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    sc = scenarios.instantiate(scenarios.load("pig_chain"), scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    await post_events(client, actors.admin, sc["events"])
    m = sc["mapping"]
    regulator = await actors.staff_key("regulator")
    path = f"/v1/lots/{m['SLBATCH0001']}/recall"

    whole = (await client.get(path, headers=regulator)).json()
    assert whole["next_cursor"] is None
    assert len(whole["lots"]) >= 4

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=params, headers=regulator)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["totals"] == whole["totals"]
        assert body["holders"] == whole["holders"]
        assert len(body["lots"]) <= 2
        seen += [lot["code"] for lot in body["lots"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [lot["code"] for lot in whole["lots"]]

    r = await client.get(path, params={"cursor": "not a cursor"}, headers=regulator)
    assert r.status_code == 422

    r = await client.get(path, params={"format": "csv"}, headers=regulator)
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert [row["code"] for row in rows] == seen
