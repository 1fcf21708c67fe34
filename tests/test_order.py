"""Property: whatever order a chain's events arrive in through the broker, the graph ends the same."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Actors, post_events, register_operators, scenario_tag, wait_for
from trace_service.chain import scenarios

SCENARIO = {name: scenarios.load(name) for name in ("pig_chain", "produce_chain")}
_reference: dict[str, dict] = {}


async def _snapshot(db: asyncpg.Connection, sc: dict) -> dict:
    """The graph of one replay with its tag removed, so replays can be compared."""
    back = {v: k for k, v in sc["mapping"].items()}
    original_id = {
        uuid.UUID(new["event_id"]): old["event_id"] for new, old in zip(sc["events"], sc["source_events"], strict=True)
    }
    codes = [c for c in sc["mapping"].values() if c in back]
    lots = await db.fetch(
        """SELECT id, code, kind, product_code, product_name, holder, status, kg_in, kg_out, kg_sold, head_in, head_out,
                  created_by_event, origin_region FROM lots WHERE code = ANY($1::text[])""",
        codes,
    )
    ids = {r["id"]: r["code"] for r in lots}
    edges = await db.fetch(
        "SELECT parent_id, child_id, event_id, kg, head, kind FROM edges WHERE parent_id = ANY($1::bigint[])", list(ids)
    )
    return {
        "lots": {
            back[r["code"]]: (
                r["kind"], r["product_code"], r["product_name"], back.get(r["holder"]), r["status"], r["kg_in"],
                r["kg_out"], r["kg_sold"], r["head_in"], r["head_out"], original_id.get(r["created_by_event"]),
                r["origin_region"],
            )
            for r in lots
        },
        "edges": sorted(
            (back[ids[e["parent_id"]]], back[ids[e["child_id"]]], original_id[e["event_id"]],
             e["kg"], e["head"], e["kind"])
            for e in edges
        ),
    }  # fmt: skip


async def _replay(
    client: httpx.AsyncClient, actors: Actors, db: asyncpg.Connection, name: str, order: list[int], chunks: int
) -> dict:
    source = SCENARIO[name]
    sc = scenarios.instantiate(source, scenario_tag())
    sc["source_events"] = source["events"]
    await register_operators(client, actors.admin, sc["operators"])
    events = [sc["events"][i] for i in order]
    size = max(1, len(events) // chunks)
    for start in range(0, len(events), size):
        # Each request waits until applied, so every chunk is its own worker batch: what a later batch
        # finds already stored is exactly what arrived earlier.
        await post_events(client, actors.admin, events[start : start + size], wait=True)
    ids = [uuid.UUID(e["event_id"]) for e in events]

    async def applied() -> bool:
        return await db.fetchval("SELECT count(*) FROM events WHERE event_id = ANY($1::uuid[])", ids) == len(ids)

    await wait_for(applied, timeout=30)
    return await _snapshot(db, sc)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_any_order_gives_the_same_graph(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(SCENARIO)), label="scenario")
    n = len(SCENARIO[name]["events"])
    if name not in _reference:
        _reference[name] = await _replay(client, actors, db, name, list(range(n)), 1)
        assert all(lot[4] != "unresolved" for lot in _reference[name]["lots"].values())
    order = data.draw(st.permutations(range(n)), label="order")
    chunks = data.draw(st.integers(min_value=1, max_value=n), label="requests")
    got = await _replay(client, actors, db, name, list(order), chunks)
    assert got == _reference[name]
    await asyncio.sleep(0)


# The running sums a batch adds to (issue 11) against the sums of the stored rows, for every lot.
_SUMS_DRIFT = """
SELECT l.code FROM lots l
WHERE l.code = ANY($1::text[]) AND (
    l.kg_traded_in <> COALESCE((SELECT sum(e.kg) FROM edges e WHERE e.child_id = l.id AND e.kind = 'trade'), 0)
 OR l.kg_sold <> COALESCE((SELECT sum(e.kg) FROM edges e WHERE e.parent_id = l.id AND e.kind = 'sale'), 0)
 OR l.kg_shipped <> COALESCE((SELECT sum(s.kg) FROM shipment_lines s WHERE s.lot_id = l.id), 0)
 OR l.head_intake_out <> COALESCE(
        (SELECT sum(e.head) FROM edges e WHERE e.parent_id = l.id AND e.kind = 'intake' AND NOT e.pending), 0))
"""


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_running_sums_match_the_stored_rows_in_any_order_and_on_redelivery(
    client: httpx.AsyncClient, actors: Actors, worker: None, db: asyncpg.Connection, data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(SCENARIO)), label="scenario")
    sc = scenarios.instantiate(SCENARIO[name], scenario_tag())
    await register_operators(client, actors.admin, sc["operators"])
    order = data.draw(st.permutations(range(len(sc["events"]))), label="order")
    events = [sc["events"][i] for i in order]
    for start in range(0, len(events), 3):
        await post_events(client, actors.admin, events[start : start + 3], wait=True)
    await post_events(client, actors.admin, events, wait=True)  # the same events again: nothing is added twice
    assert await db.fetch(_SUMS_DRIFT, list(sc["mapping"].values())) == []
