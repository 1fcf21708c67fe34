"""Every example in events/examples/ is accepted by the API and applied, each by its own operator's key."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support import Actors, register_operators, scenario_tag
from trace_service.chain import scenarios
from trace_service.contract.events import EventType

EXAMPLES = Path(__file__).resolve().parent.parent / "events" / "examples"

# The examples' operators, from the one registry of demo operators (no code names two operators).
OPERATORS = [
    scenarios.demo_operators()[code]
    for code in ("445321400001", "442000100001", "442000200001", "442000500001", "442000600001", "442000600012",
                 "442000800001", "442000700001", "442000702001")
]  # fmt: skip


async def test_every_example_is_accepted_and_applied(client: httpx.AsyncClient, actors: Actors, worker: None) -> None:
    events = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(EXAMPLES.glob("*.json"))]
    assert {e["event_type"] for e in events} == {t.value for t in EventType}
    # The stall's own stock, which the retail.sold and lot.disposed examples speak about: only a lot's holder
    # may report on it (contract section 7), so the stall must have received it first.
    events.append(
        {
            "event_id": "0b9d3c52-4c4e-4a55-9e0e-6f6d1f5a0c12",
            "event_type": "trade.received",
            "occurred_at": "2026-11-25T07:40:00+08:00",
            "operator": "442000600012",
            "data": {
                "voucher_number": "PF-20261125-0077",
                "seller": "442000500001",
                "lines": [{"lot": "ST2026112500012", "from_lot": "WS2026112500318", "weight_kg": 30.0}],
                "documents": {},
            },
        }
    )
    events.sort(key=lambda e: e["occurred_at"])
    sc = scenarios.instantiate({"operators": OPERATORS, "events": events, "expect": {}}, scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    keys = {op["code"]: await actors.key(op["code"]) for op in sc["operators"]}
    regulator = await actors.staff_key("regulator")
    for event in sc["events"]:
        headers = regulator if event["event_type"].startswith("regulator.") else keys[event["operator"]]
        r = await client.post("/v1/events?wait=true", json=event, headers=headers)
        assert r.status_code == 200, (event["event_type"], r.text)
        assert r.json()["events"][0]["status"] == "applied", r.text
