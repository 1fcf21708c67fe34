"""Workers applying batches that name the same lots at the same time."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import asyncpg
import pytest

from tests.support import code
from trace_service.chain import writes as chain_repo
from trace_service.chain.projection import EdgeRow, Plan
from trace_service.db.engine import create_engine
from trace_service.settings import Settings
from trace_service.worker import repository as worker_repo


async def test_a_lot_committed_by_another_worker_mid_statement_is_found(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """The other worker inserts a lot code and commits while this worker's insert of the same code waits on
    it: the insert skips the code and its snapshot cannot see it, so the id must be read again (before the
    fix this was a KeyError that stopped the worker)."""
    parent, child = code("RACEP"), code("RACEC")
    plan = Plan()
    plan.edge(EdgeRow(parent, child, uuid.uuid4(), Decimal("1.5"), None, "trade"))
    engine = create_engine(settings, pool_size=2, name="test-race")
    try:
        tx = db.transaction()
        await tx.start()
        await db.execute("INSERT INTO lots (code) VALUES ($1)", parent)  # the other worker, not committed yet

        async def apply() -> chain_repo.Applied:
            async with engine.begin() as conn:
                return await chain_repo.apply_plan(conn, plan)

        task = asyncio.create_task(apply())
        await asyncio.sleep(0.5)
        assert not task.done()  # waiting on the other worker's row
        await tx.commit()
        applied = await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()
    stored = dict(await db.fetch("SELECT code, id FROM lots WHERE code = ANY($1::text[])", [parent, child]))
    assert {c: applied.ids[c] for c in (parent, child)} == stored
    edge = await db.fetchrow(
        "SELECT kg FROM edges WHERE parent_id = $1 AND child_id = $2", stored[parent], stored[child]
    )
    assert edge is not None
    assert edge["kg"] == Decimal("1.500")


async def test_intake_rows_left_by_the_api_after_the_apply_are_swept(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """The API writes an event's intake row after the broker's ack; when the worker's applying transaction
    had not committed yet, the row outlives the event's apply. The worker's periodic sweep deletes it, and
    only it: a row whose event is not applied yet stays."""
    applied, in_flight = uuid.uuid4(), uuid.uuid4()
    await db.execute(
        """INSERT INTO events (event_id, event_type, occurred_at, operator, envelope, sha256, source,
                               kafka_partition, kafka_offset)
           VALUES ($1, 'lot.tested', now(), 'RACEOP01', '{}'::jsonb, '\\x00'::bytea, 'api', 0, 0)""",
        applied,
    )
    await db.executemany(
        "INSERT INTO intake (event_id, operator, sha256) VALUES ($1, 'RACEOP01', '\\x00'::bytea)",
        [(applied,), (in_flight,)],
    )
    engine = create_engine(settings, pool_size=1, name="test-intake-sweep")
    try:
        async with engine.begin() as conn:
            assert await worker_repo.clear_applied_intake(conn) >= 1
    finally:
        await engine.dispose()
    left = {r["event_id"] for r in await db.fetch("SELECT event_id FROM intake WHERE event_id = ANY($1::uuid[])",
                                                   [applied, in_flight])}  # fmt: skip
    assert left == {in_flight}


async def test_a_code_created_meanwhile_by_another_holder_is_never_taken_over(
    settings: Settings, db: asyncpg.Connection
) -> None:
    """Two workers create one code for two holders at once (each judged the code free). The one that commits
    second must not overwrite the first's holder, even with an earlier occurred_at: its batch fails as an
    ownership race, which the worker retries and then refuses as lot_taken."""
    from tests.support import harvested_event
    from trace_service.chain import projection
    from trace_service.contract.events import build_catalogue

    lot = code("TAKE", 16)
    catalogue = build_catalogue()
    first, second = (
        harvested_event("OPFIRST001"),
        harvested_event("OPSECOND01", occurred_at="2026-11-24T05:00:00+08:00"),
    )
    for e in (first, second):
        e["data"]["lot"] = lot
        e["data"]["base_code"] = e["operator"]
    plans = [projection.plan([catalogue.event.validate_python(e, strict=False)]) for e in (first, second)]
    engine = create_engine(settings, pool_size=2, name="test-take")
    try:
        async with engine.connect() as one:
            tx = await one.begin()
            await chain_repo.apply_plan(one, plans[0])  # the first worker, not committed yet

            async def other() -> chain_repo.Applied:
                async with engine.begin() as conn:
                    return await chain_repo.apply_plan(conn, plans[1])

            task = asyncio.create_task(other())
            await asyncio.sleep(0.5)
            assert not task.done()  # waiting on the first worker's row
            await tx.commit()
            with pytest.raises(chain_repo.OwnershipRace, match=lot):
                await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()
    assert await db.fetchval("SELECT holder FROM lots WHERE code = $1", lot) == "OPFIRST001"
